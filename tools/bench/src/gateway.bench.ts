/**
 * What the api-gateway costs on the LibreChat path, each figure next to the same thing done
 * directly against the upstream in the same run:
 *
 * 1. Added latency of a small JSON route (`GET /api/user`) at 1,000 requests/s, through the
 *    gateway as a workspace member (platform token verified with its revocation check in Redis,
 *    membership and policy from the gateway's caches, the LibreChat identity bridge and its
 *    minted token; the requests-per-minute limits count only requests that start a generation,
 *    so they are not in this path), against the same route called directly with a LibreChat
 *    token and a browser User-Agent. Twice: autocannon with `overallRate`, which paces
 *    each connection per second (it sends its share back to back, then waits for the next second,
 *    so the servers see bursts of `connections` concurrent requests), and an open-loop generator
 *    that sends one request every millisecond. Then one request at a time: the gateway's own
 *    cost without any queueing. The upstream is a LibreChat stand-in that checks the minted token
 *    as LibreChat does and answers from memory: the contract double looks the user up in MongoDB
 *    on every request, which caps it near 600 requests/s on this machine, below the rate
 *    measured (`--upstream double` measures against it anyway).
 * 2. Added time to the first SSE byte: `GET /api/agents/chat/stream/:streamId` of a generation
 *    that has emitted its first frames and waits on the model (the fake provider holds it), one
 *    at a time, through the gateway (which holds a stream slot in Redis for it) and directly to
 *    the contract double, interleaved. The workspace's limits are set high enough never to
 *    refuse (requests per minute) or unlimited (budgets, concurrent streams).
 * 3. The gateway's memory with 2,000 open idle streams: RSS and live heap (after a forced
 *    collection) of the gateway's process above its idle level, while that many SSE connections
 *    wait on two generations the fake provider holds back.
 * 4. Added latency of the model egress: a non-streaming chat completion (the fake provider
 *    answers a short reply at once) through the egress listener as LibreChat makes it (egress
 *    secret, caller resolved from the LibreChat user id, model allowlist, quota reserved in
 *    Redis, the call forwarded, its usage settled and journaled), against the same call made
 *    directly to the fake provider. The member's policy has monthly token and cost budgets and
 *    tokens-per-minute limits, all too high to refuse, so reserve and settle run their whole
 *    scripts against seeded counters. One call at a time, interleaved, then evenly paced at
 *    `--egress-rate`, the member's calls admitted from quota leases as they come back to back;
 *    then one at a time again through a gateway with `EGRESS_QUOTA_LEASES=false`, every call
 *    reserved in Redis. The Redis counters are read afterwards: every call must have been
 *    settled and every lease given back.
 *
 * Each part starts a fresh gateway process (`services/api-gateway/src/server.ts`); the
 * auth-service, workspace-service, LibreChat double, stand-in and fake provider run in this
 * process, the load generators and every timed request in a worker thread of it.
 *
 * Usage: pnpm run bench:gateway [-- --json] [--quick] [--phases latency,ttfb,memory,egress]
 *        [--rate 1000] [--connections 10] [--duration 20] [--warmup 5] [--sequential 1000]
 *        [--upstream standin|double] [--samples 200] [--streams 2000] [--egress-rate 200]
 * MongoDB and Redis: MONGO_URL/REDIS_URL when set, otherwise @platform/local-infra's (stopped after).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker } from 'node:worker_threads'
import { buildApp as buildAuthApp } from '@platform/auth-service/app'
import { loadConfig as loadAuthConfig } from '@platform/auth-service/config'
import { type FakeProvider, startFakeProvider } from '@platform/fake-provider'
import {
  isBrowserUserAgent,
  type LibreChatDouble,
  NO_PARENT,
  startLibreChatDouble,
} from '@platform/librechat-double'
import {
  findFreePort,
  provideInfrastructure,
  stopChild,
  waitUntilReady,
} from '@platform/local-infra'
import type { Quota } from '@platform/shared-types'
import { buildApp as buildWorkspaceApp } from '@platform/workspace-service/app'
import { loadConfig as loadWorkspaceConfig } from '@platform/workspace-service/config'
import autocannon from 'autocannon'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { jwtVerify, SignJWT } from 'jose'
import { keysMatching } from './redis-keys.js'

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const GATEWAY_DIR = join(REPO_ROOT, 'services/api-gateway')
/** A Chrome on Linux: LibreChat refuses its browser-only routes to anything else. */
const BROWSER_USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const PROVIDER = 'oai'
const PROVIDER_API_KEY = 'sk-fake-provider-key'
const MODEL = 'fake-small'
const PASSWORD = 'correct horse battery staple'
/** High enough never to refuse, but set, so a chat POST meets the limit's Redis round trip. */
const BENCH_RATE_LIMIT = 1_000_000
/** Budgets and tokens per minute the egress bench never reaches, set so every check runs. */
const BENCH_TOKEN_LIMIT = 1_000_000_000_000
const BENCH_COST_LIMIT_USD = 1_000_000
/** Dollars per million tokens: priced, so the cost budget is reserved and settled too. */
const MODEL_PRICE = { inputPerMTok: 1, outputPerMTok: 2 }
/** The egress's settle is not awaited by the call it ends; this long is plenty for it to land. */
const SETTLE_WAIT_MS = 5_000
/** Opening streams is over when no more reach LibreChat for this long. */
const STREAM_OPEN_STALL_MS = 10_000
const MIB = 1024 * 1024
/** USER_HZ: the unit of /proc's CPU times on every Linux Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)
const secret = () => randomBytes(32).toString('base64url')

const percentile = (sorted: ArrayLike<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN

function summary(samples: ArrayLike<number>) {
  const sorted = Float64Array.from(samples).sort()
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length }
}
type Summary = ReturnType<typeof summary>

const added = (through: Summary, direct: Summary) => ({
  p50: through.p50 - direct.p50,
  p99: through.p99 - direct.p99,
})

/** Each path's figures, and what the bare relay and the gateway add to the direct path. */
const comparedPaths = (of: (path: (typeof PATHS_WITH_RELAY)[number]) => Summary) => ({
  direct: of('direct'),
  relay: of('relay'),
  gateway: of('gateway'),
  addedByRelay: added(of('relay'), of('direct')),
  added: added(of('gateway'), of('direct')),
})

async function waitFor(what: string, condition: () => boolean, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(1)
  }
}

/** CPU seconds a process has used so far, user and system, all threads. */
async function cpuSecondsOf(pid: number) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
}

/** The gateway process's CPU while `work` runs: cores in use, and CPU per request. */
async function gatewayCpu<T>(
  gateway: GatewayProcess,
  requests: (result: T) => number,
  work: () => Promise<T>,
) {
  const pid = gateway.child.pid
  if (pid === undefined) throw new Error('the gateway has no process id')
  const cpuBefore = await cpuSecondsOf(pid)
  const started = performance.now()
  const result = await work()
  const cpu = (await cpuSecondsOf(pid)) - cpuBefore
  const seconds = (performance.now() - started) / 1000
  return {
    result,
    cpu: { cores: cpu / seconds, msPerRequest: (cpu * 1000) / requests(result) },
  }
}

function gate() {
  let open: () => void = () => undefined
  const opened = new Promise<void>((resolveGate) => {
    open = resolveGate
  })
  return { opened, open }
}

// ---------------------------------------------------------------------------------------------
// The load generators, in a worker thread of this same file so that their event loop is not the
// upstream's. Latencies are kept at full resolution (autocannon's own histogram keeps whole
// milliseconds, too coarse for a 1 ms target).

interface LoadRun {
  generator: 'autocannon' | 'paced'
  url: string
  /** GET without a body unless told. */
  method?: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  /** autocannon's connections; the paced generator's most requests in flight. */
  connections: number
  rate: number
  durationSeconds: number
}

interface LoadResult {
  latenciesMs: Float64Array
  statusCounts: Record<string, number>
  errors: number
  requestsPerSecond: number
}

function runAutocannon(run: LoadRun): Promise<LoadResult> {
  const latencies: number[] = []
  const statusCounts: Record<string, number> = {}
  let responses = 0
  return new Promise((resolveRun, reject) => {
    const instance = autocannon(
      {
        url: run.url,
        method: run.method ?? 'GET',
        headers: run.headers,
        ...(run.body === undefined ? {} : { body: run.body }),
        connections: run.connections,
        overallRate: run.rate,
        duration: run.durationSeconds,
        // Its correction assumes an even spacing it does not produce; the raw times are kept.
        ignoreCoordinatedOmission: true,
      },
      (error: unknown, result) => {
        if (error !== null && error !== undefined) {
          reject(error)
          return
        }
        resolveRun({
          latenciesMs: Float64Array.from(latencies),
          statusCounts,
          errors: result.errors + result.timeouts,
          requestsPerSecond: responses / (result.duration > 0 ? result.duration : 1),
        })
      },
    )
    // The tracker passes the client first (the type definitions leave it out).
    instance.on(
      'response',
      (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
        responses += 1
        statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1
        if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs)
      },
    )
  })
}

/**
 * Open loop: request `i` is due at `i / rate` seconds and is sent then, whether or not earlier
 * ones have been answered, over keep-alive connections (at most `connections`; beyond that a
 * request waits for one, and that wait counts in its latency).
 */
async function runPaced(run: LoadRun): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: run.connections })
  const latencies: number[] = []
  const statusCounts: Record<string, number> = {}
  let errors = 0
  const inFlight = new Set<Promise<void>>()
  const send = () => {
    const started = performance.now()
    const answered = new Promise<void>((resolveRequest) => {
      const options = { method: run.method ?? 'GET', headers: run.headers, agent }
      const outgoing = httpRequest(run.url, options, (response) => {
        response.resume()
        response.on('end', () => {
          const status = response.statusCode ?? 0
          statusCounts[status] = (statusCounts[status] ?? 0) + 1
          if (status >= 200 && status < 300) latencies.push(performance.now() - started)
          resolveRequest()
        })
      })
      outgoing.on('error', () => {
        errors += 1
        resolveRequest()
      })
      outgoing.end(run.body)
    })
    inFlight.add(answered)
    void answered.then(() => inFlight.delete(answered))
  }
  const total = Math.round(run.rate * run.durationSeconds)
  const intervalMs = 1000 / run.rate
  const start = performance.now()
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - start) / intervalMs) + 1)
    for (; sent < due; sent++) send()
    await sleep(1)
  }
  await Promise.all(inFlight)
  const seconds = (performance.now() - start) / 1000
  agent.destroy()
  return {
    latenciesMs: Float64Array.from(latencies),
    statusCounts,
    errors,
    requestsPerSecond: total / seconds,
  }
}

/** A request the worker sends and times, over a keep-alive agent it keeps by name. */
interface RemoteCall {
  url: string
  method?: string
  headers: Record<string, string>
  json?: unknown
  /** Requests naming the same agent share its connections (kept alive unless told). */
  agent: string
  keepAlive?: boolean
}

type ToWorker =
  | { id: number; kind: 'load'; run: LoadRun }
  | { id: number; kind: 'call'; call: RemoteCall }
  | { id: number; kind: 'closeAgents' }

type FromWorker =
  | { id: number; kind: 'done'; answer: unknown }
  | { id: number; kind: 'failed'; error: string }
  | { id: number; kind: 'firstByte' }

function serveLoadRuns() {
  const port = parentPort
  if (port === null) throw new Error('the load generator runs in a worker thread')
  const agents = new Map<string, Agent>()
  const agentNamed = (name: string, keepAlive = true) => {
    let agent = agents.get(name)
    if (agent === undefined) {
      agent = new Agent({ keepAlive })
      agents.set(name, agent)
    }
    return agent
  }
  const answer = (id: number, work: Promise<unknown>) =>
    work.then(
      (result) => port.postMessage({ id, kind: 'done', answer: result } satisfies FromWorker),
      (error: unknown) =>
        port.postMessage({ id, kind: 'failed', error: String(error) } satisfies FromWorker),
    )
  port.on('message', (message: ToWorker) => {
    if (message.kind === 'load') {
      const { run } = message
      void answer(message.id, run.generator === 'autocannon' ? runAutocannon(run) : runPaced(run))
    } else if (message.kind === 'call') {
      const { call: remote, id } = message
      void answer(
        id,
        call(remote.url, {
          ...(remote.method === undefined ? {} : { method: remote.method }),
          headers: remote.headers,
          agent: agentNamed(remote.agent, remote.keepAlive),
          json: remote.json,
          onFirstByte: () => port.postMessage({ id, kind: 'firstByte' } satisfies FromWorker),
        }),
      )
    } else {
      for (const agent of agents.values()) agent.destroy()
      agents.clear()
      void answer(message.id, Promise.resolve(null))
    }
  })
}

/**
 * The worker thread every measured request is sent from: load runs, and single requests timed
 * one at a time. A client on the upstream's own event loop would skip the wake-up every real
 * client pays on its way to a server in another process, and so flatter the direct path.
 */
function startLoadGenerator() {
  const worker = new Worker(new URL(import.meta.url))
  let nextId = 0
  const waiting = new Map<
    number,
    { resolve: (answer: unknown) => void; reject: (error: Error) => void; onFirstByte?: () => void }
  >()
  worker.on('message', (message: FromWorker) => {
    const entry = waiting.get(message.id)
    if (entry === undefined) return
    if (message.kind === 'firstByte') {
      entry.onFirstByte?.()
      return
    }
    waiting.delete(message.id)
    if (message.kind === 'done') entry.resolve(message.answer)
    else entry.reject(new Error(`load generator: ${message.error}`))
  })
  const ask = <T>(message: ToWorker, onFirstByte?: () => void) =>
    new Promise<T>((resolve, reject) => {
      waiting.set(message.id, {
        resolve: resolve as (answer: unknown) => void,
        reject,
        ...(onFirstByte === undefined ? {} : { onFirstByte }),
      })
      worker.postMessage(message)
    })
  return {
    run: (run: LoadRun) => ask<LoadResult>({ id: nextId++, kind: 'load', run }),
    /** One request sent and timed by the worker; `onFirstByte` hears of its first body byte. */
    call: (remote: RemoteCall, onFirstByte?: () => void) =>
      ask<Answer>({ id: nextId++, kind: 'call', call: remote }, onFirstByte),
    closeAgents: () => ask<null>({ id: nextId++, kind: 'closeAgents' }),
    close: () => worker.terminate(),
  }
}
type LoadGenerator = ReturnType<typeof startLoadGenerator>

// ---------------------------------------------------------------------------------------------
// HTTP as a client sees it: node:http, so the first body byte can be timed.

interface Answer {
  status: number
  firstByteMs: number
  totalMs: number
  body: string
}

interface CallOptions {
  method?: string
  headers: Record<string, string>
  agent: Agent
  json?: unknown
  onFirstByte?: () => void
}

function call(url: string, options: CallOptions): Promise<Answer> {
  const body = options.json === undefined ? undefined : JSON.stringify(options.json)
  const headers =
    body === undefined
      ? options.headers
      : { ...options.headers, 'content-type': 'application/json' }
  return new Promise((resolveAnswer, reject) => {
    const started = performance.now()
    const outgoing = httpRequest(
      url,
      { method: options.method ?? 'GET', headers, agent: options.agent },
      (response) => {
        let firstByteMs = Number.NaN
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => {
          if (chunks.length === 0) {
            firstByteMs = performance.now() - started
            options.onFirstByte?.()
          }
          chunks.push(chunk)
        })
        response.on('error', reject)
        response.on('end', () =>
          resolveAnswer({
            status: response.statusCode ?? 0,
            firstByteMs,
            totalMs: performance.now() - started,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        )
      },
    )
    outgoing.on('error', reject)
    outgoing.end(body)
  })
}

function expectStatus(answer: Answer, status: number, what: string) {
  if (answer.status !== status)
    throw new Error(`${what} answered ${answer.status}: ${answer.body.slice(0, 500)}`)
  return answer
}

async function json<T>(response: Response): Promise<T> {
  if (!response.ok)
    throw new Error(`${response.url} answered ${response.status}: ${await response.text()}`)
  return (await response.json()) as T
}

/** Sends each target's request once per round, alternating which goes first; warm-up rounds first. */
async function interleaved<Target extends string>(
  targets: readonly Target[],
  rounds: number,
  warmupRounds: number,
  sample: (target: Target) => Promise<number>,
) {
  const samples = new Map<Target, number[]>(targets.map((target) => [target, []]))
  for (let round = 0; round < warmupRounds + rounds; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse()
    for (const target of order) {
      const value = await sample(target)
      if (round >= warmupRounds) samples.get(target)?.push(value)
    }
  }
  return (target: Target) => summary(samples.get(target) ?? [])
}

// ---------------------------------------------------------------------------------------------
// The platform: real services, the double with its fake provider, and gateways in processes.

interface Platform {
  auth: FastifyInstance
  workspace: FastifyInstance
  authUrl: string
  workspaceUrl: string
  publicUrl: string
  gatewaySecret: string
  provider: FakeProvider
  double: LibreChatDouble
  libreChatMongoUrl: string
  libreChatJwtSecret: string
  mongoUrl: string
  redisUrl: string
}

/** A MongoDB URL naming `dbName`, as `LIBRECHAT_MONGO_URL` does in a deployment. */
function withDatabase(url: string, dbName: string) {
  const parsed = new URL(url)
  parsed.pathname = `/${dbName}`
  return parsed.toString()
}

async function startPlatform(mongoUrl: string, redisUrl: string): Promise<Platform> {
  const secrets = {
    AUTH_KEY_ENCRYPTION_KEY: secret(),
    SERVICE_SECRET_AUTH: secret(),
    SERVICE_SECRET_WORKSPACE: secret(),
    SERVICE_SECRET_GATEWAY: secret(),
    SERVICE_SECRET_RUNTIME: secret(),
  }
  const run = randomBytes(3).toString('hex')
  const common = { MONGO_URL: mongoUrl, REDIS_URL: redisUrl, LOG_LEVEL: 'warn', ...secrets }
  const publicUrl = 'http://bench.platform.test'
  const workspacePort = await findFreePort()
  const workspaceUrl = `http://127.0.0.1:${workspacePort}`
  const auth = await buildAuthApp(
    loadAuthConfig({
      ...common,
      PUBLIC_URL: publicUrl,
      WORKSPACE_SERVICE_URL: workspaceUrl,
      // Outlives the run, so no token expires half way through a measurement.
      ACCESS_TOKEN_TTL_SECONDS: '7200',
    }),
    { dbName: `bench_auth_${run}` },
  )
  const authUrl = await auth.listen({ host: '127.0.0.1', port: 0 })
  const workspace = await buildWorkspaceApp(
    loadWorkspaceConfig({ ...common, PUBLIC_URL: publicUrl, AUTH_SERVICE_URL: authUrl }),
    { dbName: `bench_workspace_${run}` },
  )
  await workspace.listen({ host: '127.0.0.1', port: workspacePort })

  const provider = await startFakeProvider({ apiKey: PROVIDER_API_KEY, models: [MODEL] })
  const libreChatDbName = `bench_librechat_${run}`
  const libreChatJwtSecret = secret()
  const double = await startLibreChatDouble({
    mongoUrl,
    dbName: libreChatDbName,
    jwtSecret: libreChatJwtSecret,
    endpoints: [
      { name: PROVIDER, baseURL: provider.url, apiKey: PROVIDER_API_KEY, models: [MODEL] },
    ],
  })
  return {
    auth,
    workspace,
    authUrl,
    workspaceUrl,
    publicUrl,
    gatewaySecret: secrets.SERVICE_SECRET_GATEWAY,
    provider,
    double,
    libreChatMongoUrl: withDatabase(mongoUrl, libreChatDbName),
    libreChatJwtSecret,
    mongoUrl,
    redisUrl,
  }
}

async function closePlatform(platform: Platform) {
  await platform.double.close()
  await platform.provider.close()
  await platform.workspace.close()
  await platform.auth.close()
}

/**
 * LibreChat's `GET /api/user` without its database: the token checked as LibreChat's JWT
 * strategy does (bearer only, HS256 with JWT_SECRET, `id` read), the browser User-Agent required,
 * the user answered from memory.
 */
async function startLibreChatStandIn(jwtSecret: string) {
  const key = new TextEncoder().encode(jwtSecret)
  const app = Fastify()
  app.get('/api/user', async (request, reply) => {
    const token = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
    const verified =
      token === undefined
        ? undefined
        : await jwtVerify<{ id?: unknown }>(token, key, { algorithms: ['HS256'] }).catch(
            () => undefined,
          )
    const id = verified?.payload.id
    if (typeof id !== 'string') return reply.code(401).send({ message: 'Unauthorized' })
    if (!isBrowserUserAgent(request.headers['user-agent']))
      return reply.code(403).send({ message: 'Illegal request' })
    return { _id: id, id, username: 'bench', email: 'bench@example.com', role: 'USER' }
  })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { url, close: () => app.close() }
}

interface GatewayProcess {
  url: string
  child: ChildProcess
  /** The gateway process's memory; `live` collects garbage first. */
  memory(live: boolean): Promise<NodeJS.MemoryUsage>
  /** What the gateway printed (its log at warn and above), for a failure's explanation. */
  output(): string
  stop(): Promise<void>
}

/**
 * The gateway's own `server.ts` in a process of its own, started through a few lines that answer
 * memory questions over IPC (`gc` exposed so the live heap can be read). `env` adds settings (the
 * egress's).
 */
async function startGateway(
  platform: Platform,
  libreChatUrl: string,
  env: Record<string, string> = {},
): Promise<GatewayProcess> {
  const port = await findFreePort()
  const url = `http://127.0.0.1:${port}`
  const server = pathToFileURL(join(GATEWAY_DIR, 'src/server.ts')).href
  const preamble = [
    "process.on('message', (question) => {",
    "  if (question === 'live') globalThis.gc()",
    '  process.send(process.memoryUsage())',
    '})',
    `await import(${JSON.stringify(server)})`,
  ].join('\n')
  const child = spawn(
    process.execPath,
    // The gateway's own flags, as the launcher and its `start` script run it.
    [
      '--max-semi-space-size=4',
      '--expose-gc',
      '--import',
      'tsx',
      '--input-type=module',
      '--eval',
      preamble,
    ],
    {
      cwd: GATEWAY_DIR,
      env: {
        ...process.env,
        GATEWAY_PORT: String(port),
        LISTEN_HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        MONGO_URL: platform.mongoUrl,
        REDIS_URL: platform.redisUrl,
        PUBLIC_URL: platform.publicUrl,
        AUTH_SERVICE_URL: platform.authUrl,
        WORKSPACE_SERVICE_URL: platform.workspaceUrl,
        SERVICE_SECRET_GATEWAY: platform.gatewaySecret,
        LIBRECHAT_URL: libreChatUrl,
        LIBRECHAT_MONGO_URL: platform.libreChatMongoUrl,
        LIBRECHAT_JWT_SECRET: platform.libreChatJwtSecret,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    },
  )
  let printed = ''
  const keep = (chunk: Buffer) => {
    printed = (printed + chunk.toString()).slice(-20_000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  await waitUntilReady({
    what: 'api-gateway',
    child,
    output: () => printed,
    probe: async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok === true,
    timeoutMs: 60_000,
  })
  let pending: Promise<unknown> = Promise.resolve()
  return {
    url,
    child,
    memory(live) {
      const answer = pending.then(async () => {
        child.send(live ? 'live' : 'raw')
        const [usage] = (await once(child, 'message')) as [NodeJS.MemoryUsage]
        return usage
      })
      pending = answer.catch(() => undefined)
      return answer
    },
    output: () => printed,
    stop: () => stopChild(child, 'SIGTERM', 15_000),
  }
}

/** Runs `part` against a fresh gateway process, with its output shown if the part fails. */
async function withGateway<T>(
  platform: Platform,
  libreChatUrl: string,
  part: (gateway: GatewayProcess) => Promise<T>,
  env: Record<string, string> = {},
): Promise<T> {
  const gateway = await startGateway(platform, libreChatUrl, env)
  try {
    return await part(gateway)
  } catch (error) {
    log(`gateway output:\n${gateway.output()}`)
    throw error
  } finally {
    await gateway.stop()
  }
}

/** `bare-relay.ts` in a process of its own, relaying to `upstreamUrl` as `libreChatToken`. */
async function startBareRelay(upstreamUrl: string, libreChatToken: string) {
  const port = await findFreePort()
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'tools/bench/src/bare-relay.ts')],
    {
      env: {
        ...process.env,
        RELAY_PORT: String(port),
        UPSTREAM_URL: upstreamUrl,
        LIBRECHAT_TOKEN: libreChatToken,
        USER_AGENT: BROWSER_USER_AGENT,
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  )
  await once(child, 'message')
  return { url: `http://127.0.0.1:${port}`, stop: () => stopChild(child, 'SIGTERM', 5_000) }
}

interface Member {
  workspaceId: string
  /** A platform access token scoped to the member's workspace: what a browser sends the gateway. */
  platformToken: string
  /** The member's LibreChat user, as the bridge made it: what LibreChat names on the egress. */
  libreChatUserId: string
  /** A LibreChat token for the member's LibreChat user, for the direct calls. */
  libreChatToken: string
}

/**
 * A tenant owner whose workspace allows the fake provider's models, with rate limits too high to
 * refuse anything, no budgets and no cap on concurrent streams (`quota` overrides these);
 * bridged to LibreChat through the gateway.
 */
async function newMember(
  platform: Platform,
  gateway: GatewayProcess,
  quota: Partial<Quota> = {},
): Promise<Member> {
  const email = `bench-${randomBytes(4).toString('hex')}@example.com`
  const registered = await platform.auth.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email, password: PASSWORD, name: 'Bench' },
  })
  if (registered.statusCode !== 201)
    throw new Error(`register answered ${registered.statusCode}: ${registered.body}`)
  const userId = registered.json<{ user: { id: string } }>().user.id
  const ownerToken = await platform.auth.identity.tokens.accessToken(userId, 'bench-session', null)
  const asOwner = { authorization: `Bearer ${ownerToken}`, 'content-type': 'application/json' }
  const created = await json<{ workspace: { id: string } }>(
    await fetch(`${platform.workspaceUrl}/v1/tenants`, {
      method: 'POST',
      headers: asOwner,
      body: JSON.stringify({ name: 'Bench', timeZone: 'Europe/Berlin' }),
    }),
  )
  const workspaceId = created.workspace.id
  const policyUrl = `${platform.workspaceUrl}/v1/workspaces/${workspaceId}/policy`
  const policy = await json<{ quota: object }>(await fetch(policyUrl, { headers: asOwner }))
  await json(
    await fetch(policyUrl, {
      method: 'PUT',
      headers: asOwner,
      body: JSON.stringify({
        ...policy,
        models: { allow: [`${PROVIDER}:*`] },
        quota: {
          ...policy.quota,
          monthlyTokens: null,
          monthlyCostUsd: null,
          memberMonthlyTokens: null,
          rpm: BENCH_RATE_LIMIT,
          memberRpm: BENCH_RATE_LIMIT,
          tpm: null,
          memberTpm: null,
          maxConcurrentStreams: null,
          ...quota,
        },
      }),
    }),
  )
  const login = await platform.auth.inject({
    method: 'POST',
    url: '/auth/v1/login',
    payload: { email, password: PASSWORD, workspaceId },
  })
  if (login.statusCode !== 200) throw new Error(`login answered ${login.statusCode}: ${login.body}`)
  const platformToken = login.json<{ accessToken: string }>().accessToken

  // The first call through the gateway provisions the member's LibreChat user.
  const agent = new Agent({ keepAlive: false })
  const user = expectStatus(
    await call(`${gateway.url}/api/user`, {
      headers: { authorization: `Bearer ${platformToken}` },
      agent,
    }),
    200,
    'GET /api/user through the gateway',
  )
  const libreChatUserId = (JSON.parse(user.body) as { id: string }).id
  const libreChatToken = await new SignJWT({ id: libreChatUserId })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(new TextEncoder().encode(platform.libreChatJwtSecret))
  return { workspaceId, platformToken, libreChatUserId, libreChatToken }
}

/** The same user on both paths: the member at the gateway, its LibreChat user upstream. */
function pathsTo(upstreamUrl: string, gatewayUrl: string, member: Member, relayUrl = '') {
  return {
    direct: {
      base: upstreamUrl,
      headers: {
        authorization: `Bearer ${member.libreChatToken}`,
        'user-agent': BROWSER_USER_AGENT,
      },
    },
    relay: {
      base: relayUrl,
      headers: {
        authorization: `Bearer ${member.platformToken}`,
        'user-agent': BROWSER_USER_AGENT,
      },
    },
    gateway: {
      base: gatewayUrl,
      headers: {
        authorization: `Bearer ${member.platformToken}`,
        'user-agent': BROWSER_USER_AGENT,
      },
    },
  }
}
const PATHS_WITH_RELAY = ['direct', 'relay', 'gateway'] as const

interface Settings {
  rate: number
  connections: number
  durationSeconds: number
  warmupSeconds: number
  sequential: number
  upstream: 'standin' | 'double'
  samples: number
  streams: number
  /** Model calls per second through the egress, evenly paced. */
  egressRate: number
}

// ---------------------------------------------------------------------------------------------
// 1. Added latency of a small JSON route.

const notSuccessful = (result: LoadResult) =>
  Object.entries(result.statusCounts)
    .filter(([status]) => !status.startsWith('2'))
    .reduce((sum, [, count]) => sum + count, result.errors)

const successful = (result: LoadResult) =>
  Object.entries(result.statusCounts)
    .filter(([status]) => status.startsWith('2'))
    .reduce((sum, [, count]) => sum + count, 0)

const answered = (result: LoadResult) =>
  Object.values(result.statusCounts).reduce((sum, count) => sum + count, 0)

const loadFigures = (result: LoadResult) => ({
  ...summary(result.latenciesMs),
  requestsPerSecond: result.requestsPerSecond,
  notSuccessful: notSuccessful(result),
  statusCounts: result.statusCounts,
})

async function addedLatency(
  platform: Platform,
  upstreamUrl: string,
  gateway: GatewayProcess,
  settings: Settings,
) {
  const member = await newMember(platform, gateway)
  const relay = await startBareRelay(upstreamUrl, member.libreChatToken)
  const paths = pathsTo(upstreamUrl, gateway.url, member, relay.url)
  const load = startLoadGenerator()
  try {
    const runAt = (
      generator: LoadRun['generator'],
      path: keyof typeof paths,
      durationSeconds: number,
    ) => {
      platform.double.requests.length = 0
      return load.run({
        generator,
        url: `${paths[path].base}/api/user`,
        headers: paths[path].headers,
        connections: settings.connections,
        rate: settings.rate,
        durationSeconds,
      })
    }
    const atRate = async (generator: LoadRun['generator']) => {
      const results = {
        direct: await runAt(generator, 'direct', settings.durationSeconds),
        relay: await runAt(generator, 'relay', settings.durationSeconds),
      }
      log(`  ${generator}: direct and bare relay done, now through the gateway`)
      const through = await gatewayCpu(gateway, answered, () =>
        runAt(generator, 'gateway', settings.durationSeconds),
      )
      const direct = loadFigures(results.direct)
      const relayFigures = loadFigures(results.relay)
      const gatewayFigures = loadFigures(through.result)
      return {
        direct,
        relay: relayFigures,
        gateway: gatewayFigures,
        addedByRelay: added(relayFigures, direct),
        added: added(gatewayFigures, direct),
        gatewayCpu: through.cpu,
      }
    }

    log(`warming up: ${settings.warmupSeconds} s each way at ${settings.rate} requests/s`)
    for (const path of PATHS_WITH_RELAY) await runAt('autocannon', path, settings.warmupSeconds)
    log(`GET /api/user at ${settings.rate} requests/s, ${settings.durationSeconds} s each way`)
    const autocannonFigures = await atRate('autocannon')
    const pacedFigures = await atRate('paced')

    log(`GET /api/user one at a time, ${settings.sequential} each way, interleaved`)
    const sequentially = await gatewayCpu(
      gateway,
      () => settings.sequential + 50,
      () =>
        interleaved(PATHS_WITH_RELAY, settings.sequential, 50, async (path) => {
          const answer = await load.call({
            url: `${paths[path].base}/api/user`,
            headers: paths[path].headers,
            agent: path,
          })
          return expectStatus(answer, 200, `GET /api/user (${path})`).totalMs
        }),
    )
    const oneAtATime = sequentially.result
    await load.closeAgents()
    return {
      upstream: settings.upstream,
      rate: settings.rate,
      connections: settings.connections,
      durationSeconds: settings.durationSeconds,
      autocannon: autocannonFigures,
      paced: pacedFigures,
      oneAtATime: { ...comparedPaths(oneAtATime), gatewayCpu: sequentially.cpu },
    }
  } finally {
    await load.close()
    await relay.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Added time to the first SSE byte.

const chatBody = () => ({
  text: 'Hello there',
  endpoint: PROVIDER,
  endpointType: 'custom',
  model: MODEL,
  conversationId: null,
  parentMessageId: NO_PARENT,
  messageId: randomBytes(8).toString('hex'),
  sender: 'User',
  isCreatedByUser: true,
})

/** Starts a generation and answers its stream id once LibreChat is waiting on the model. */
async function startChat(
  platform: Platform,
  load: LoadGenerator,
  target: { base: string; headers: Record<string, string>; agent: string; keepAlive?: boolean },
) {
  const callsBefore = platform.provider.calls.length
  const answer = expectStatus(
    await load.call({
      url: `${target.base}/api/agents/chat/${PROVIDER}`,
      method: 'POST',
      headers: target.headers,
      agent: target.agent,
      ...(target.keepAlive === undefined ? {} : { keepAlive: target.keepAlive }),
      json: chatBody(),
    }),
    200,
    `chat POST to ${target.base}`,
  )
  // LibreChat calls the provider once it has emitted `created`: from then on the stream's first
  // frames wait for their subscriber.
  await waitFor('the provider call', () => platform.provider.calls.length > callsBefore, 10_000)
  return (JSON.parse(answer.body) as { streamId: string }).streamId
}

async function firstSseByte(platform: Platform, gateway: GatewayProcess, settings: Settings) {
  const member = await newMember(platform, gateway)
  const relay = await startBareRelay(platform.double.url, member.libreChatToken)
  const paths = pathsTo(platform.double.url, gateway.url, member, relay.url)
  const load = startLoadGenerator()
  try {
    log(`first SSE byte: ${settings.samples} streams each way, interleaved`)
    const firstByte = await interleaved(PATHS_WITH_RELAY, settings.samples, 10, async (path) => {
      const { base, headers } = paths[path]
      // The model holds its first token until the stream's first byte is in: what is timed is
      // the path to frames already waiting, not LibreChat's work on the generation.
      const held = gate()
      platform.provider.reset()
      platform.provider.behave({ reply: 'a short answer', beforeChunk: () => held.opened })
      // The bare relay only relays GETs: its member's chat starts at LibreChat itself.
      const starter = path === 'relay' ? 'direct' : path
      const streamId = await startChat(platform, load, { ...paths[starter], agent: starter })
      const stream = expectStatus(
        await load.call(
          {
            url: `${base}/api/agents/chat/stream/${encodeURIComponent(streamId)}`,
            headers,
            agent: path,
          },
          held.open,
        ),
        200,
        `chat stream (${path})`,
      )
      if (!stream.body.includes('"final":true'))
        throw new Error(`the ${path} stream ended without its final frame`)
      return stream.firstByteMs
    })
    platform.double.requests.length = 0

    log(`GET /api/user on the LibreChat double, one at a time, ${settings.sequential} each way`)
    const oneAtATime = await interleaved(
      PATHS_WITH_RELAY,
      settings.sequential,
      50,
      async (path) => {
        const answer = await load.call({
          url: `${paths[path].base}/api/user`,
          headers: paths[path].headers,
          agent: path,
        })
        return expectStatus(answer, 200, `GET /api/user (${path})`).totalMs
      },
    )
    platform.provider.reset()
    platform.double.requests.length = 0
    return {
      firstByte: comparedPaths(firstByte),
      userOnDouble: comparedPaths(oneAtATime),
    }
  } finally {
    await load.close()
    await relay.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 3. The gateway's memory with many open idle streams.

interface OpenStream {
  status: number
  firstByte: boolean
  ended: boolean
  failed: boolean
  destroy(): void
}

/** A stream on a connection of its own, as a browser tab has; resolves once connected. */
function openStream(url: string, headers: Record<string, string>): Promise<OpenStream> {
  const outgoing = httpRequest(url, { headers, agent: false })
  const state: OpenStream = {
    status: 0,
    firstByte: false,
    ended: false,
    failed: false,
    destroy: () => outgoing.destroy(),
  }
  outgoing.on('response', (response) => {
    state.status = response.statusCode ?? 0
    response.on('data', () => {
      state.firstByte = true
    })
    response.on('end', () => {
      state.ended = true
    })
    response.on('error', () => {
      state.failed = true
    })
  })
  outgoing.on('error', () => {
    state.failed = true
  })
  outgoing.end()
  return new Promise((resolveOpen) => {
    outgoing.once('socket', (socket) => {
      socket.once('connect', () => resolveOpen(state))
      socket.once('error', () => resolveOpen(state))
    })
  })
}

async function streamMemory(platform: Platform, gateway: GatewayProcess, settings: Settings) {
  const member = await newMember(platform, gateway)
  const { headers } = pathsTo(platform.double.url, gateway.url, member).gateway
  const load = startLoadGenerator()

  // Warm-up: a stream's whole life, a few times, before the idle level is read.
  platform.provider.reset()
  platform.provider.behave({ reply: 'a short answer' })
  const warmUp = { base: gateway.url, headers, agent: 'warm-up' }
  for (let i = 0; i < 20; i++) {
    const streamId = await startChat(platform, load, warmUp)
    expectStatus(
      await load.call({
        url: `${gateway.url}/api/agents/chat/stream/${streamId}`,
        headers,
        agent: 'warm-up',
      }),
      200,
      'warm-up stream',
    )
  }
  await load.closeAgents()
  await sleep(1000)
  const idle = await gateway.memory(true)
  log(
    `  idle: RSS ${(idle.rss / MIB).toFixed(1)} MiB, live heap ${(idle.heapUsed / MIB).toFixed(1)} MiB`,
  )

  // Two generations (LibreChat runs at most two per user at once), held by the provider: one
  // chunk once every stream is open, then nothing until the measurement is over.
  const firstChunk = gate()
  const lastChunks = gate()
  platform.provider.reset()
  platform.provider.behave({
    reply: 'held open until the bench lets go',
    beforeChunk: (index) => {
      if (index === 0) return firstChunk.opened
      if (index === 1) return lastChunks.opened
      return Promise.resolve()
    },
  })
  const chats = { base: gateway.url, headers, agent: 'chats', keepAlive: false }
  const streamIds = [await startChat(platform, load, chats), await startChat(platform, load, chats)]
  await load.close()
  const subscribers = () =>
    streamIds.reduce(
      (sum, streamId) => sum + (platform.double.streamStats(streamId)?.subscribers ?? 0),
      0,
    )

  let peakRss = idle.rss
  let peakHeap = idle.heapUsed
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const now = await gateway.memory(false)
      peakRss = Math.max(peakRss, now.rss)
      peakHeap = Math.max(peakHeap, now.heapUsed)
      await sleep(250)
    }
  })()

  log(`  opening ${settings.streams} streams through the gateway`)
  const openedAt = performance.now()
  const streams: OpenStream[] = []
  for (let i = 0; i < settings.streams; i++) {
    const streamId = streamIds[i % streamIds.length] ?? ''
    streams.push(await openStream(`${gateway.url}/api/agents/chat/stream/${streamId}`, headers))
  }
  // A stream is open once LibreChat has its subscriber: the request went all the way through.
  let reached = subscribers()
  let lastProgress = performance.now()
  while (reached < settings.streams && performance.now() - lastProgress < STREAM_OPEN_STALL_MS) {
    await sleep(200)
    const now = subscribers()
    if (now > reached) lastProgress = performance.now()
    reached = now
  }
  const openSeconds = (performance.now() - openedAt) / 1000
  if (reached < settings.streams)
    log(
      `  ${reached} of ${settings.streams} streams reached LibreChat, then none for ${STREAM_OPEN_STALL_MS / 1000} s: the others wait inside the gateway`,
    )
  firstChunk.open()
  const receiving = () => streams.filter((stream) => stream.firstByte).length
  const flowDeadline = performance.now() + 20_000
  while (receiving() < reached && performance.now() < flowDeadline) await sleep(100)
  const flowing = receiving()
  // Idle again: every open stream has had a frame and waits for the next one.
  await sleep(2000)
  const open = await gateway.memory(false)
  const openLive = await gateway.memory(true)
  sampling = false
  await sampler
  log(
    `  streams open: RSS ${(open.rss / MIB).toFixed(1)} MiB, live heap ${(openLive.heapUsed / MIB).toFixed(1)} MiB`,
  )

  lastChunks.open()
  const endDeadline = performance.now() + 30_000
  while (
    streams.some((stream) => !stream.ended && !stream.failed) &&
    performance.now() < endDeadline
  )
    await sleep(100)
  const completed = streams.filter((stream) => stream.ended && stream.status === 200).length
  for (const stream of streams) stream.destroy()
  platform.provider.reset()
  platform.double.requests.length = 0

  const perConnection = (bytes: number) => bytes / settings.streams / 1024
  return {
    connections: settings.streams,
    reachedLibreChat: reached,
    receivedFirstFrame: flowing,
    endedWithFinalFrame: completed,
    openSeconds,
    idleRssMiB: idle.rss / MIB,
    idleLiveHeapMiB: idle.heapUsed / MIB,
    openRssAboveIdleMiB: (open.rss - idle.rss) / MIB,
    openLiveHeapAboveIdleMiB: (openLive.heapUsed - idle.heapUsed) / MIB,
    openRssAfterCollectionAboveIdleMiB: (openLive.rss - idle.rss) / MIB,
    peakRssAboveIdleMiB: (Math.max(peakRss, open.rss) - idle.rss) / MIB,
    peakHeapAboveIdleMiB: (peakHeap - idle.heapUsed) / MIB,
    rssPerConnectionKiB: perConnection(open.rss - idle.rss),
    liveHeapPerConnectionKiB: perConnection(openLive.heapUsed - idle.heapUsed),
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Added latency of the model egress.

const EGRESS_PATHS = ['direct', 'egress'] as const
const EGRESS_REPLY = 'A short answer.'

/** The egress as `server.ts` binds it: LibreChat's secret, a port, the fake provider configured. */
async function egressListener(platform: Platform) {
  const port = await findFreePort()
  const egressSecret = secret()
  return {
    url: `http://127.0.0.1:${port}`,
    secret: egressSecret,
    env: {
      EGRESS_SECRET: egressSecret,
      GATEWAY_EGRESS_PORT: String(port),
      LLM_PROVIDERS: JSON.stringify([
        {
          name: PROVIDER,
          baseURL: platform.provider.url,
          apiKey: PROVIDER_API_KEY,
          models: [MODEL],
          prices: { [MODEL]: MODEL_PRICE },
        },
      ]),
    },
  }
}
type EgressListener = Awaited<ReturnType<typeof egressListener>>

/**
 * What the workspace's quota counters in Redis say after the runs: reservations still open
 * (every call settled leaves none) and the tokens counted this month (every call settled adds
 * what the provider reported).
 */
async function quotaCountersOf(redisUrl: string, workspaceId: string) {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  try {
    const openReservations = async () => {
      let open = 0
      for (const key of await keysMatching(redis, `gw:quota-reservations:*:${workspaceId}`))
        open += await redis.hlen(key)
      return open
    }
    const deadline = performance.now() + SETTLE_WAIT_MS
    let open = await openReservations()
    while (open > 0 && performance.now() < deadline) {
      await sleep(100)
      open = await openReservations()
    }
    let countedTokens = 0
    for (const key of await keysMatching(redis, `gw:quota-used:*:${workspaceId}:*`))
      countedTokens += Number((await redis.hget(key, 'tokens')) ?? 0)
    return { openReservations: open, countedTokens }
  } finally {
    redis.disconnect()
  }
}

async function egressLatency(
  platform: Platform,
  gateway: GatewayProcess,
  listener: EgressListener,
  settings: Settings,
  { paced = true } = {},
) {
  const member = await newMember(platform, gateway, {
    monthlyTokens: BENCH_TOKEN_LIMIT,
    memberMonthlyTokens: BENCH_TOKEN_LIMIT,
    monthlyCostUsd: BENCH_COST_LIMIT_USD,
    tpm: BENCH_TOKEN_LIMIT,
    memberTpm: BENCH_TOKEN_LIMIT,
    overage: 'block',
  })
  // The same body both ways: the egress passes `user` on to the provider.
  const completion = {
    model: MODEL,
    messages: [{ role: 'user', content: 'Say something short' }],
    max_tokens: 16,
    user: member.libreChatUserId,
  }
  const targets = {
    direct: {
      url: `${platform.provider.url}/chat/completions`,
      headers: { authorization: `Bearer ${PROVIDER_API_KEY}` },
    },
    egress: {
      url: `${listener.url}/llm/${PROVIDER}/v1/chat/completions`,
      headers: {
        authorization: `Bearer ${listener.secret}`,
        'x-librechat-user-id': member.libreChatUserId,
      },
    },
  }
  // The provider keeps every call it answers: emptied between runs.
  const freshProvider = () => {
    platform.provider.reset()
    platform.provider.behave({ reply: EGRESS_REPLY })
  }
  freshProvider()
  const load = startLoadGenerator()
  try {
    const completionCall = async (path: (typeof EGRESS_PATHS)[number]) =>
      expectStatus(
        await load.call({
          url: targets[path].url,
          method: 'POST',
          headers: targets[path].headers,
          agent: path,
          json: completion,
        }),
        200,
        `chat completion (${path})`,
      )

    // The first call seeds the month's counters from the ledger; every later one finds them.
    const first = await completionCall('egress')
    const tokensPerCall = (JSON.parse(first.body) as { usage: { total_tokens: number } }).usage
      .total_tokens
    let egressCalls = 1

    log(`model egress: one call at a time, ${settings.sequential} each way, interleaved`)
    const sequentially = await gatewayCpu(
      gateway,
      () => settings.sequential + 50,
      () =>
        interleaved(EGRESS_PATHS, settings.sequential, 50, async (path) => {
          const answer = await completionCall(path)
          if (path === 'egress') egressCalls += 1
          return answer.totalMs
        }),
    )
    const oneAtATimeSamples = sequentially.result
    await load.closeAgents()
    const oneAtATime = {
      direct: oneAtATimeSamples('direct'),
      egress: oneAtATimeSamples('egress'),
      added: added(oneAtATimeSamples('egress'), oneAtATimeSamples('direct')),
      gatewayCpu: sequentially.cpu,
    }
    const settlement = async () => {
      const counters = await quotaCountersOf(platform.redisUrl, member.workspaceId)
      return {
        egressCalls,
        tokensPerCall,
        expectedTokens: egressCalls * tokensPerCall,
        ...counters,
      }
    }
    if (!paced) return { oneAtATime, settlement: await settlement() }

    const body = JSON.stringify(completion)
    const runAt = async (path: (typeof EGRESS_PATHS)[number], durationSeconds: number) => {
      freshProvider()
      const result = await load.run({
        generator: 'paced',
        url: targets[path].url,
        method: 'POST',
        headers: { ...targets[path].headers, 'content-type': 'application/json' },
        body,
        connections: settings.connections,
        rate: settings.egressRate,
        durationSeconds,
      })
      if (path === 'egress') egressCalls += successful(result)
      return result
    }
    log(`model egress: warming up ${settings.warmupSeconds} s each way at ${settings.egressRate}/s`)
    for (const path of EGRESS_PATHS) await runAt(path, settings.warmupSeconds)
    log(`model egress: ${settings.egressRate} calls/s, ${settings.durationSeconds} s each way`)
    const direct = loadFigures(await runAt('direct', settings.durationSeconds))
    const through = await gatewayCpu(gateway, answered, () =>
      runAt('egress', settings.durationSeconds),
    )
    const egress = loadFigures(through.result)
    freshProvider()

    return {
      oneAtATime,
      paced: {
        rate: settings.egressRate,
        connections: settings.connections,
        durationSeconds: settings.durationSeconds,
        direct,
        egress,
        added: added(egress, direct),
        gatewayCpu: through.cpu,
      },
      settlement: await settlement(),
    }
  } finally {
    await load.close()
    platform.provider.reset()
  }
}

// ---------------------------------------------------------------------------------------------

function parseSettings() {
  const { values: args } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      phases: { type: 'string', default: 'latency,ttfb,memory,egress' },
      rate: { type: 'string', default: '1000' },
      connections: { type: 'string', default: '10' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      sequential: { type: 'string' },
      upstream: { type: 'string', default: 'standin' },
      samples: { type: 'string' },
      streams: { type: 'string' },
      'egress-rate': { type: 'string', default: '200' },
    },
  })
  const quick = args.quick
  if (args.upstream !== 'standin' && args.upstream !== 'double')
    throw new Error('--upstream is standin or double')
  const settings: Settings = {
    rate: Number(args.rate),
    connections: Number(args.connections),
    durationSeconds: Number(args.duration ?? (quick ? 5 : 20)),
    warmupSeconds: Number(args.warmup ?? (quick ? 2 : 5)),
    sequential: Number(args.sequential ?? (quick ? 300 : 1000)),
    upstream: args.upstream,
    samples: Number(args.samples ?? (quick ? 50 : 200)),
    streams: Number(args.streams ?? (quick ? 500 : 2000)),
    egressRate: Number(args['egress-rate']),
  }
  return { json: args.json, phases: new Set(args.phases.split(',')), settings }
}

const ms = (value: number) => `${value.toFixed(2)} ms`
const signedMs = (value: number) => `${value >= 0 ? '+' : ''}${value.toFixed(2)} ms`
const signedMib = (value: number) => `${value >= 0 ? '+' : ''}${value.toFixed(1)} MiB`
const row = (label: string, values: string[]) =>
  `  ${label.padEnd(30)} ${values.map((value) => value.padStart(11)).join(' ')}`

const cpuRow = (cpu: { cores: number; msPerRequest: number }) =>
  `  gateway process CPU: ${cpu.cores.toFixed(2)} cores, ${cpu.msPerRequest.toFixed(2)} ms per request`

const PATH_LABELS = {
  direct: 'direct to the upstream',
  relay: 'through a bare Node relay',
  gateway: 'through the gateway',
}
const ratio = (gateway: number, relay: number) =>
  relay > 0 ? `${(gateway / relay).toFixed(2)}x` : '-'
/** What the gateway adds, what one bare hop adds on this machine, and the one over the other. */
const addedRows = (figures: {
  added: { p50: number; p99: number }
  addedByRelay: { p50: number; p99: number }
}) => [
  row('added by a bare relay', [
    signedMs(figures.addedByRelay.p50),
    signedMs(figures.addedByRelay.p99),
  ]),
  row('added by the gateway', [signedMs(figures.added.p50), signedMs(figures.added.p99)]),
  row('gateway / bare relay', [
    ratio(figures.added.p50, figures.addedByRelay.p50),
    ratio(figures.added.p99, figures.addedByRelay.p99),
  ]),
]

type Comparison = {
  direct: Summary
  relay: Summary
  gateway: Summary
  added: { p50: number; p99: number }
  addedByRelay: { p50: number; p99: number }
}
const comparisonRows = (comparison: Comparison, upstreamLabel: string) => [
  row('', ['p50', 'p99', 'n']),
  ...(['direct', 'relay', 'gateway'] as const).map((path) =>
    row(path === 'direct' ? upstreamLabel : PATH_LABELS[path], [
      ms(comparison[path].p50),
      ms(comparison[path].p99),
      String(comparison[path].n),
    ]),
  ),
  ...addedRows(comparison),
]

async function main() {
  const { json: asJson, phases, settings } = parseSettings()
  const dataDir = await mkdtemp(join(tmpdir(), 'ai-platform-bench-'))
  const infrastructure = await provideInfrastructure({
    env: process.env,
    purpose: 'test',
    dataDir,
    report: log,
  })
  let platform: Platform | undefined
  try {
    const started = await startPlatform(infrastructure.mongoUrl, infrastructure.redisUrl)
    platform = started
    let latency: Awaited<ReturnType<typeof addedLatency>> | undefined
    if (phases.has('latency')) {
      const standIn = await startLibreChatStandIn(started.libreChatJwtSecret)
      try {
        const upstreamUrl = settings.upstream === 'double' ? started.double.url : standIn.url
        latency = await withGateway(started, upstreamUrl, (gateway) =>
          addedLatency(started, upstreamUrl, gateway, settings),
        )
      } finally {
        await standIn.close()
      }
    }
    const ttfb = phases.has('ttfb')
      ? await withGateway(started, started.double.url, (gateway) =>
          firstSseByte(started, gateway, settings),
        )
      : undefined
    const memory = phases.has('memory')
      ? await withGateway(started, started.double.url, (gateway) => {
          log('memory: a fresh gateway process')
          return streamMemory(started, gateway, settings)
        })
      : undefined
    let egress: Awaited<ReturnType<typeof egressLatency>> | undefined
    let egressWithoutLeases: Awaited<ReturnType<typeof egressLatency>> | undefined
    if (phases.has('egress')) {
      const listener = await egressListener(started)
      egress = await withGateway(
        started,
        started.double.url,
        (gateway) => egressLatency(started, gateway, listener, settings),
        listener.env,
      )
      // The same calls with every one reserved in Redis: what a member's first call after a
      // pause costs, and what a deployment that turns leases off pays on each.
      log('model egress without quota leases')
      const strictListener = await egressListener(started)
      egressWithoutLeases = await withGateway(
        started,
        started.double.url,
        (gateway) => egressLatency(started, gateway, strictListener, settings, { paced: false }),
        { ...strictListener.env, EGRESS_QUOTA_LEASES: 'false' },
      )
    }

    const results = { settings, latency, firstSseByte: ttfb, memory, egress, egressWithoutLeases }
    if (asJson) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
      return
    }
    const lines: string[] = [
      'api-gateway benchmark. One machine, 2 cores, shared by the load generator, the gateway, the',
      'LibreChat double or stand-in, the other services, MongoDB and Redis: every figure includes',
      'their contention.',
      '',
    ]
    if (latency !== undefined) {
      const upstream =
        latency.upstream === 'double' ? 'the LibreChat double' : 'a LibreChat stand-in'
      const atRateRows = (figures: typeof latency.autocannon) => [
        row('', ['p50', 'p99', 'req/s', 'not 2xx']),
        row('direct to the upstream', [
          ms(figures.direct.p50),
          ms(figures.direct.p99),
          figures.direct.requestsPerSecond.toFixed(0),
          String(figures.direct.notSuccessful),
        ]),
        row('through a bare Node relay', [
          ms(figures.relay.p50),
          ms(figures.relay.p99),
          figures.relay.requestsPerSecond.toFixed(0),
          String(figures.relay.notSuccessful),
        ]),
        row('through the gateway', [
          ms(figures.gateway.p50),
          ms(figures.gateway.p99),
          figures.gateway.requestsPerSecond.toFixed(0),
          String(figures.gateway.notSuccessful),
        ]),
        ...addedRows(figures),
        cpuRow(figures.gatewayCpu),
      ]
      lines.push(
        `GET /api/user (upstream: ${upstream}), targets: added p50 <= 1 ms, p99 <= 5 ms`,
        `autocannon, overallRate ${latency.rate}/s, ${latency.connections} connections, ${latency.durationSeconds} s (per-second bursts)`,
        ...atRateRows(latency.autocannon),
        `evenly paced, one request every ${(1000 / latency.rate).toFixed(1)} ms, ${latency.durationSeconds} s`,
        ...atRateRows(latency.paced),
        'one request at a time, interleaved',
        ...comparisonRows(latency.oneAtATime, PATH_LABELS.direct),
        cpuRow(latency.oneAtATime.gatewayCpu),
        '',
      )
    }
    if (ttfb !== undefined)
      lines.push(
        'First SSE byte of GET /api/agents/chat/stream/:id, one at a time (target: added <= 1 ms)',
        ...comparisonRows(ttfb.firstByte, 'direct to the LibreChat double'),
        'GET /api/user on the LibreChat double, one at a time',
        ...comparisonRows(ttfb.userOnDouble, 'direct to the LibreChat double'),
        '',
      )
    if (memory !== undefined)
      lines.push(
        `Gateway process with ${memory.connections} idle SSE connections (target: <= 100 MB above idle)`,
        `  reached LibreChat: ${memory.reachedLibreChat} of ${memory.connections} (${memory.openSeconds.toFixed(1)} s); received a frame: ${memory.receivedFirstFrame}; ended with the final frame: ${memory.endedWithFinalFrame}`,
        `  idle (baseline): RSS ${memory.idleRssMiB.toFixed(1)} MiB, live heap ${memory.idleLiveHeapMiB.toFixed(1)} MiB`,
        `  connections open: RSS ${signedMib(memory.openRssAboveIdleMiB)} (${signedMib(memory.openRssAfterCollectionAboveIdleMiB)} after a forced collection), live heap ${signedMib(memory.openLiveHeapAboveIdleMiB)}`,
        `  per connection: ${memory.rssPerConnectionKiB.toFixed(1)} KiB RSS, ${memory.liveHeapPerConnectionKiB.toFixed(1)} KiB live heap`,
        `  peak while opening: RSS ${signedMib(memory.peakRssAboveIdleMiB)}, heap with garbage ${signedMib(memory.peakHeapAboveIdleMiB)}`,
        '',
      )
    const settlementLine = ({ settlement }: NonNullable<typeof egress>) => {
      const allSettled =
        settlement.openReservations === 0 && settlement.countedTokens === settlement.expectedTokens
      return `  reserve + settle: ${settlement.egressCalls} calls through the egress, ${settlement.countedTokens} of ${settlement.expectedTokens} tokens counted in Redis, ${settlement.openReservations} reservations left open${allSettled ? '' : ' (NOT ALL SETTLED)'}`
    }
    const oneAtATimeRows = (oneAtATime: NonNullable<typeof egress>['oneAtATime']) => [
      row('', ['p50', 'p99', 'n']),
      row('direct to the fake provider', [
        ms(oneAtATime.direct.p50),
        ms(oneAtATime.direct.p99),
        String(oneAtATime.direct.n),
      ]),
      row('through the egress', [
        ms(oneAtATime.egress.p50),
        ms(oneAtATime.egress.p99),
        String(oneAtATime.egress.n),
      ]),
      row('added by the egress', [signedMs(oneAtATime.added.p50), signedMs(oneAtATime.added.p99)]),
      cpuRow(oneAtATime.gatewayCpu),
    ]
    if (egress?.paced !== undefined) {
      const { oneAtATime, paced } = egress
      lines.push(
        `Model egress: POST /llm/${PROVIDER}/v1/chat/completions, not streamed, the fake provider answering at once (target: added p50 <= 2 ms)`,
        'one call at a time, interleaved',
        ...oneAtATimeRows(oneAtATime),
        `evenly paced, one call every ${(1000 / paced.rate).toFixed(1)} ms, ${paced.durationSeconds} s`,
        row('', ['p50', 'p99', 'calls/s', 'not 2xx']),
        row('direct to the fake provider', [
          ms(paced.direct.p50),
          ms(paced.direct.p99),
          paced.direct.requestsPerSecond.toFixed(0),
          String(paced.direct.notSuccessful),
        ]),
        row('through the egress', [
          ms(paced.egress.p50),
          ms(paced.egress.p99),
          paced.egress.requestsPerSecond.toFixed(0),
          String(paced.egress.notSuccessful),
        ]),
        row('added by the egress', [signedMs(paced.added.p50), signedMs(paced.added.p99)]),
        cpuRow(paced.gatewayCpu),
        settlementLine(egress),
        '',
      )
    }
    if (egressWithoutLeases !== undefined) {
      const { oneAtATime } = egressWithoutLeases
      lines.push(
        'one call at a time, every call reserved in Redis (EGRESS_QUOTA_LEASES=false)',
        ...oneAtATimeRows(oneAtATime),
        settlementLine(egressWithoutLeases),
        '',
      )
    }
    process.stdout.write(`${lines.join('\n')}\n`)
  } finally {
    if (platform !== undefined) await closePlatform(platform)
    await infrastructure.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

if (isMainThread) await main()
else serveLoadRuns()
