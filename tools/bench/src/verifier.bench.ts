/**
 * Throughput of the shared token verifier (service-kit's createTokenVerifier) in one Node
 * process: uncached and cached, with and without the Redis revocation check, against raw
 * jose.jwtVerify as the baseline.
 *
 * Usage: pnpm run bench:verifier [-- --json] [--seconds 3] [--concurrency 64]
 * Redis: REDIS_URL when set, otherwise whatever @platform/local-infra provides (and stops).
 */
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { provideInfrastructure } from '@platform/local-infra'
import { createTokenVerifier, type TokenVerifierOptions } from '@platform/service-kit'
import { PLATFORM_AUDIENCE, TOKEN_SIGNING_ALGORITHM } from '@platform/shared-types'
import { Redis } from 'ioredis'
import { type CryptoKey, generateKeyPair, jwtVerify, SignJWT } from 'jose'
import { textTable } from './text-table.js'

const ISSUER = 'https://bench.platform.test'
const KID = 'bench-key'
const UNCACHED_TOKENS = 10_000
const CACHED_TOKENS = 1_000
const UNCACHED_TARGET = 5_000
const CACHED_TARGET = 50_000

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '3' },
    'warmup-seconds': { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '64' },
  },
})
const measureMs = Number(args.seconds) * 1000
const warmupMs = Number(args['warmup-seconds']) * 1000
const concurrency = Number(args.concurrency)
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)

interface Result {
  name: string
  opsPerSec: number
  /** CPU time of the whole process over wall time: above 1 means libuv's pool did work too. */
  cpuCores: number
  ratioToBaseline: number
  target: number | null
}

type Operation = (index: number) => Promise<unknown>

/** Runs `operation` with `concurrency` calls in flight until `durationMs` has passed. */
async function run(operation: Operation, durationMs: number) {
  let next = 0
  let done = 0
  const deadline = performance.now() + durationMs
  const lane = async () => {
    while (performance.now() < deadline) {
      await operation(next++)
      done += 1
    }
  }
  const cpuBefore = process.cpuUsage()
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, lane))
  const seconds = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  return { opsPerSec: done / seconds, cpuCores: (cpu.user + cpu.system) / 1e6 / seconds }
}

async function measure(name: string, operation: Operation, target: number | null) {
  log(`${name}: warming up ${warmupMs} ms, measuring ${measureMs} ms`)
  await run(operation, warmupMs)
  const { opsPerSec, cpuCores } = await run(operation, measureMs)
  return { name, opsPerSec, cpuCores, ratioToBaseline: 0, target }
}

function signAll(privateKey: CryptoKey, count: number): Promise<string[]> {
  const iat = Math.floor(Date.now() / 1000)
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      new SignJWT({ sid: `bench-session-${randomUUID()}` })
        .setProtectedHeader({ alg: TOKEN_SIGNING_ALGORITHM, kid: KID, typ: 'JWT' })
        .setIssuer(ISSUER)
        .setAudience(PLATFORM_AUDIENCE)
        .setSubject(`user-${i}`)
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setExpirationTime(iat + 3600)
        .sign(privateKey),
    ),
  )
}

const pick = (tokens: string[], index: number) => tokens[index % tokens.length] ?? ''

function table(results: Result[]): string {
  const header = ['variant', 'ops/s', 'x jose', 'cpu cores', 'target', 'met']
  const rows = results.map((result) => [
    result.name,
    Math.round(result.opsPerSec).toLocaleString('en-US'),
    result.ratioToBaseline.toFixed(2),
    result.cpuCores.toFixed(2),
    result.target === null ? '' : `>= ${result.target.toLocaleString('en-US')}`,
    result.target === null ? '' : result.opsPerSec >= result.target ? 'ok' : 'BELOW',
  ])
  return textTable(header, rows).join('\n')
}

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'ai-platform-bench-'))
  // MongoDB is not needed: a URL in the environment is passed through untouched, never dialled.
  const infrastructure = await provideInfrastructure({
    env: { ...process.env, MONGO_URL: 'mongodb://127.0.0.1:1/not-used-by-the-bench' },
    purpose: 'test',
    dataDir,
    report: (line) => {
      if (!line.startsWith('MongoDB')) log(line)
    },
  })
  // Same failure policy as the service-kit redis plugin; only pipelining differs.
  const redis = new Redis(infrastructure.redisUrl, { maxRetriesPerRequest: 1 })
  const pipelined = new Redis(infrastructure.redisUrl, {
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
  })
  try {
    await Promise.all([redis.ping(), pipelined.ping()])
    const { privateKey, publicKey } = await generateKeyPair(TOKEN_SIGNING_ALGORITHM, {
      crv: 'Ed25519',
    })
    log(`signing ${UNCACHED_TOKENS} tokens`)
    const uncachedTokens = await signAll(privateKey, UNCACHED_TOKENS)
    const cachedTokens = uncachedTokens.slice(0, CACHED_TOKENS)

    // The JWKS is cached in production, so a resolver handing back the key is the hot path.
    const keys = async () => publicKey
    const verifier = (options: Partial<TokenVerifierOptions>) =>
      createTokenVerifier({ issuer: ISSUER, keys, redis: null, ...options })
    const uncached = (redisClient: Redis | null) => {
      const tokens = verifier({ redis: redisClient, cacheEntries: 0 })
      return (i: number) => tokens.verifyPlatformToken(pick(uncachedTokens, i))
    }
    const cached = (redisClient: Redis | null) => {
      const tokens = verifier({ redis: redisClient })
      return (i: number) => tokens.verifyPlatformToken(pick(cachedTokens, i))
    }

    const results: Result[] = []
    results.push(
      await measure(
        'baseline: jose.jwtVerify(token, publicKey)',
        (i) =>
          jwtVerify(pick(uncachedTokens, i), publicKey, {
            algorithms: [TOKEN_SIGNING_ALGORITHM],
            issuer: ISSUER,
            audience: PLATFORM_AUDIENCE,
          }),
        null,
      ),
      await measure('(a) uncached, no Redis', uncached(null), UNCACHED_TARGET),
      await measure('(b) uncached + Redis', uncached(redis), UNCACHED_TARGET),
      await measure('(b) uncached + Redis, auto-pipelining', uncached(pipelined), UNCACHED_TARGET),
      await measure('(c) cached, no Redis', cached(null), CACHED_TARGET),
      await measure('(d) cached + Redis', cached(redis), CACHED_TARGET),
      await measure('(d) cached + Redis, auto-pipelining', cached(pipelined), CACHED_TARGET),
    )
    const baseline = results[0]?.opsPerSec ?? 1
    for (const result of results) result.ratioToBaseline = result.opsPerSec / baseline

    const environment = {
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown',
      logicalCpus: cpus().length,
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
      redis: infrastructure.redis,
      seconds: measureMs / 1000,
      warmupSeconds: warmupMs / 1000,
      concurrency,
      keys: 'in-process resolver returning the CryptoKey (no HTTP JWKS in the hot loop)',
    }
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ environment, results }, null, 2)}\n`)
      return
    }
    process.stdout.write(
      [
        'Token verifier throughput: one process, no workers, sequential async loop with ' +
          `${concurrency} verifications in flight, ${environment.seconds} s each after ` +
          `${environment.warmupSeconds} s of warm-up.`,
        `Node ${environment.node} on ${environment.cpu} (${environment.logicalCpus} logical CPUs, ` +
          `libuv pool ${environment.uvThreadpoolSize}); Redis: ${environment.redis}.`,
        'Keys: a resolver returning the CryptoKey, no HTTP JWKS in the hot loop (the JWKS is ' +
          'cached by the verifier anyway).',
        `Uncached: ${UNCACHED_TOKENS.toLocaleString('en-US')} distinct tokens, cacheEntries 0. ` +
          `Cached: the same ${CACHED_TOKENS.toLocaleString('en-US')} tokens over and over.`,
        "'cpu cores' is process CPU time over wall time: WebCrypto verifies on libuv's pool, so " +
          'it can exceed 1 (pin with taskset -c 0 for one core).',
        '',
        table(results),
        '',
      ].join('\n'),
    )
  } finally {
    redis.disconnect()
    pipelined.disconnect()
    await infrastructure.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
