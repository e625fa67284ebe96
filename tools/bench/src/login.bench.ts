/**
 * Login latency of the real auth-service over HTTP (p50/p99), with the Argon2id cost it is
 * configured with, against the raw cost of one Argon2id verification in the same run. It also
 * times the refusals (wrong password, unknown email), which must cost the same as a success so
 * the answer's timing does not tell which emails have accounts, and a few other Argon2 settings
 * to show what the chosen cost buys.
 *
 * Usage: pnpm run bench:login [-- --json] [--logins 100]
 * MongoDB and Redis: MONGO_URL/REDIS_URL when set, otherwise @platform/local-infra's (stopped after).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  findFreePort,
  provideInfrastructure,
  stopChild,
  waitUntilReady,
} from '@platform/local-infra'
import argon2 from 'argon2'

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
/** The auth-service's defaults (RFC 9106's second recommended setting). */
const CHOSEN = { memoryKib: 64 * 1024, timeCost: 3, parallelism: 4 }
const ALTERNATIVES = [
  { label: 'OWASP minimum (19 MiB, t=2, p=1)', memoryKib: 19 * 1024, timeCost: 2, parallelism: 1 },
  { label: 'chosen: RFC 9106 #2 (64 MiB, t=3, p=4)', ...CHOSEN },
  {
    label: 'RFC 9106 #1 (2 GiB, t=1, p=4)',
    memoryKib: 2 * 1024 * 1024,
    timeCost: 1,
    parallelism: 4,
  },
]

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    logins: { type: 'string', default: '100' },
  },
})
const logins = Number(args.logins)
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b)
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: samples.length }
}

async function timed(operation: () => Promise<unknown>, count: number) {
  const samples: number[] = []
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    await operation()
    samples.push(performance.now() - started)
  }
  return summary(samples)
}

async function argon2VerifyCost(cost: typeof CHOSEN, count: number) {
  const options = {
    type: argon2.argon2id,
    memoryCost: cost.memoryKib,
    timeCost: cost.timeCost,
    parallelism: cost.parallelism,
  } as const
  const hash = await argon2.hash('correct horse battery staple', options)
  await argon2.verify(hash, 'correct horse battery staple')
  return timed(() => argon2.verify(hash, 'correct horse battery staple'), count)
}

async function startAuthService(
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; url: string }> {
  const port = await findFreePort()
  const url = `http://127.0.0.1:${port}`
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: join(REPO_ROOT, 'services/auth-service'),
    env: { ...env, AUTH_SERVICE_PORT: String(port), LISTEN_HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let output = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  await waitUntilReady({
    what: 'auth-service',
    child,
    output: () => output,
    probe: async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok === true,
    timeoutMs: 60_000,
  })
  return { child, url }
}

async function post(url: string, body: unknown) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  await response.arrayBuffer()
  return response.status
}

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'ai-platform-bench-'))
  const infrastructure = await provideInfrastructure({
    env: process.env,
    purpose: 'test',
    dataDir,
    report: log,
  })
  const secret = () => randomBytes(32).toString('base64url')
  let service: { child: ChildProcess; url: string } | undefined
  try {
    log('raw Argon2id verification cost')
    const raw = []
    for (const alternative of ALTERNATIVES) {
      const count = alternative.memoryKib > 1024 * 1024 ? 3 : 20
      raw.push({ label: alternative.label, ...(await argon2VerifyCost(alternative, count)) })
    }

    service = await startAuthService({
      ...process.env,
      MONGO_URL: infrastructure.mongoUrl,
      REDIS_URL: infrastructure.redisUrl,
      PUBLIC_URL: 'http://bench.platform.test',
      LOG_LEVEL: 'warn',
      AUTH_KEY_ENCRYPTION_KEY: secret(),
      SERVICE_SECRET_AUTH: secret(),
      SERVICE_SECRET_WORKSPACE: secret(),
      SERVICE_SECRET_GATEWAY: secret(),
      SERVICE_SECRET_RUNTIME: secret(),
      // The refusals are measured too; the limiter must not cut them short.
      LOGIN_MAX_FAILURES_PER_ACCOUNT: '1000000',
      LOGIN_MAX_FAILURES_PER_IP: '1000000',
      ARGON2_MEMORY_KIB: String(CHOSEN.memoryKib),
      ARGON2_TIME_COST: String(CHOSEN.timeCost),
      ARGON2_PARALLELISM: String(CHOSEN.parallelism),
    })
    const email = `bench-${randomBytes(4).toString('hex')}@example.com`
    const password = 'correct horse battery staple'
    const registered = await post(`${service.url}/auth/v1/register`, {
      email,
      password,
      name: 'Bench',
    })
    if (registered !== 201) throw new Error(`register answered ${registered}`)
    const login = (body: unknown, expected: number) => async () => {
      const status = await post(`${service?.url}/auth/v1/login`, body)
      if (status !== expected) throw new Error(`login answered ${status}, expected ${expected}`)
    }
    await timed(login({ email, password }, 200), 5)
    log(`${logins} sequential logins over HTTP`)
    const success = await timed(login({ email, password }, 200), logins)
    const wrongPassword = await timed(login({ email, password: 'wrong horse battery' }, 401), 30)
    const unknownEmail = await timed(login({ email: `nobody-${email}`, password }, 401), 30)

    const chosenRaw = raw.find((row) => row.label.startsWith('chosen'))?.p50 ?? NaN
    const results = {
      argon2: raw,
      login: {
        success,
        wrongPassword,
        unknownEmail,
        successP50OverArgon2P50: success.p50 / chosenRaw,
        unknownOverWrongPasswordP50: unknownEmail.p50 / wrongPassword.p50,
      },
    }
    if (args.json) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
      return
    }
    const ms = (value: number) => `${value.toFixed(1)} ms`
    const lines = [
      'Argon2id verify (in process)                 p50        p99',
      ...raw.map(
        (row) => `  ${row.label.padEnd(40)} ${ms(row.p50).padStart(9)} ${ms(row.p99).padStart(10)}`,
      ),
      '',
      'POST /auth/v1/login over HTTP (chosen cost)  p50        p99      n',
      ...(
        [
          ['success', success],
          ['wrong password (401)', wrongPassword],
          ['unknown email (401)', unknownEmail],
        ] as const
      ).map(
        ([label, row]) =>
          `  ${label.padEnd(40)} ${ms(row.p50).padStart(9)} ${ms(row.p99).padStart(10)} ${String(row.n).padStart(6)}`,
      ),
      '',
      `login p50 / Argon2 verify p50:           ${results.login.successP50OverArgon2P50.toFixed(2)}x`,
      `unknown email p50 / wrong password p50:  ${results.login.unknownOverWrongPasswordP50.toFixed(2)}x (1.00 = indistinguishable)`,
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
  } finally {
    if (service !== undefined) await stopChild(service.child, 'SIGTERM', 10_000)
    await infrastructure.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
