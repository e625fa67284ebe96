/**
 * Throughput of the egress's quota reservations (the api-gateway's `createQuotaReservations`)
 * against a local Redis, next to a baseline measured in the same run.
 *
 * One call is what the egress does for every model call: `reserve` (the RESERVE script: used
 * counters, every open reservation of the workspace, the minute's tokens, then the reservation
 * written) and, once it is admitted, `settle` (the SETTLE script). Calls spread over many
 * workspaces and members; every workspace has monthly token, member and cost budgets and
 * tokens-per-minute limits, all too high ever to refuse, so both scripts run whole. Each
 * member's counters are seeded (from a standing of zero) before anything is timed.
 *
 * The baseline makes the same Redis round trips with nothing in them: two EVALSHA of
 * `return 1` per call, sent the same way (the same script runner, client and concurrency). The
 * ratio is what the scripts' own work leaves of what the round trips alone allow.
 *
 * One ioredis client with the services' options (auto-pipelining on), as the gateway has one;
 * `--concurrency` calls in flight, each a reserve then its settle, for `--duration` seconds.
 *
 * Usage: pnpm run bench:quota [-- --json] [--quick] [--concurrency 64] [--duration 10]
 *        [--warmup 2] [--workspaces 100] [--members 10]
 * Redis: REDIS_URL when set, otherwise @platform/local-infra's (stopped after).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { provideInfrastructure } from '@platform/local-infra'
import { redisClientOptions } from '@platform/service-kit'
import type { EffectivePolicy, QuotaStatus } from '@platform/shared-types'
import { Redis } from 'ioredis'
import { defineLimitScript } from '../../../services/api-gateway/src/lib/limit-store.js'
import {
  createQuotaReservations,
  isRefusal,
  type QuotaReservations,
} from '../../../services/api-gateway/src/lib/quota-reservations.js'
import { keysMatching } from './redis-keys.js'
import { textTable } from './text-table.js'

const TARGET_CALLS_PER_SECOND = 5_000
/** Budgets and tokens per minute the run never reaches. */
const TOKEN_LIMIT = 1_000_000_000_000
const COST_LIMIT_USD = 1_000_000
/** What the egress reserves for a call: a prompt and its output cap. */
const PROMPT_TOKENS = 120
const OUTPUT_CAP_TOKENS = 512
/** The egress's default; no reservation is left to expire here. */
const RESERVATION_TTL_MS = 15 * 60_000
/** $1 per million tokens: a token costs one micro-dollar. */
const MICROS_PER_TOKEN = 1
const TRIVIAL_SCRIPT = 'return 1'

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)

const percentile = (sorted: ArrayLike<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN

function parseSettings() {
  const { values: args } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      concurrency: { type: 'string', default: '64' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      workspaces: { type: 'string', default: '100' },
      members: { type: 'string', default: '10' },
    },
  })
  const settings = {
    concurrency: Number(args.concurrency),
    durationSeconds: Number(args.duration ?? (args.quick ? 3 : 10)),
    warmupSeconds: Number(args.warmup ?? (args.quick ? 1 : 2)),
    workspaces: Number(args.workspaces),
    membersPerWorkspace: Number(args.members),
  }
  return { json: args.json, settings }
}
type Settings = ReturnType<typeof parseSettings>['settings']

/** Month to date: nothing used yet, as a new workspace's ledger says. */
function zeroStanding(): QuotaStatus {
  const unused = { limit: null, used: 0, reserved: 0, remaining: null }
  const now = new Date()
  return {
    monthlyTokens: unused,
    monthlyCostUsd: { limit: null, used: 0 },
    periodStart: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString(),
    resetAt: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString(),
    member: unused,
  }
}

function policyOf(run: string, index: number): EffectivePolicy {
  return {
    workspaceId: `bench-${run}-workspace-${index}`,
    workspaceName: `Bench ${index}`,
    tenantId: `bench-${run}-tenant-${index}`,
    timeZone: 'Europe/Berlin',
    version: 1,
    models: { allow: ['oai:*'] },
    mcp: { servers: [], tools: {} },
    params: { maxOutputTokens: OUTPUT_CAP_TOKENS, temperature: null },
    systemPrompt: null,
    quota: {
      monthlyTokens: TOKEN_LIMIT,
      monthlyCostUsd: COST_LIMIT_USD,
      memberMonthlyTokens: TOKEN_LIMIT,
      rpm: null,
      memberRpm: null,
      tpm: TOKEN_LIMIT,
      memberTpm: TOKEN_LIMIT,
      maxConcurrentStreams: null,
      overage: 'block',
    },
  }
}

/** The `index`th call's workspace and member: round robin over every member of every workspace. */
function callerOf(policies: EffectivePolicy[], membersPerWorkspace: number, index: number) {
  const policy = policies[index % policies.length]
  if (policy === undefined) throw new Error('no workspaces')
  const member = Math.floor(index / policies.length) % membersPerWorkspace
  return { policy, userId: `member-${member}` }
}

/** One call: what the egress does around a model call, which here uses a varying part of its cap. */
async function reserveAndSettle(
  quota: QuotaReservations,
  policies: EffectivePolicy[],
  membersPerWorkspace: number,
  index: number,
) {
  const { policy, userId } = callerOf(policies, membersPerWorkspace, index)
  const reserved = PROMPT_TOKENS + OUTPUT_CAP_TOKENS
  const admitted = await quota.reserve({
    callId: randomUUID(),
    policy,
    userId,
    tokens: reserved,
    costMicros: reserved * MICROS_PER_TOKEN,
  })
  if (isRefusal(admitted))
    throw new Error(`a call was refused (${admitted.limitName}): the limits are meant never to`)
  const used = PROMPT_TOKENS + (index % OUTPUT_CAP_TOKENS) + 1
  await quota.settle(admitted, { tokens: used, costMicros: used * MICROS_PER_TOKEN })
  return used
}

/** `concurrency` lanes, each one call after another, until `durationSeconds` have passed. */
async function run(
  call: (index: number) => Promise<unknown>,
  concurrency: number,
  durationSeconds: number,
) {
  const latencies: number[] = []
  let next = 0
  const deadline = performance.now() + durationSeconds * 1000
  const lane = async () => {
    while (performance.now() < deadline) {
      const started = performance.now()
      await call(next++)
      latencies.push(performance.now() - started)
    }
  }
  const cpuBefore = process.cpuUsage()
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, lane))
  const seconds = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  const sorted = Float64Array.from(latencies).sort()
  return {
    calls: latencies.length,
    callsPerSecond: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    benchCpuCores: (cpu.user + cpu.system) / 1e6 / seconds,
  }
}

/** Redis's own CPU seconds so far (`INFO cpu`): the server's share of the work. */
async function redisCpuSeconds(redis: Redis) {
  const info = await redis.info('cpu')
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1])
  return field('used_cpu_sys') + field('used_cpu_user')
}

async function measure(
  name: string,
  redis: Redis,
  call: (index: number) => Promise<unknown>,
  settings: Settings,
) {
  log(`${name}: warming up ${settings.warmupSeconds} s, measuring ${settings.durationSeconds} s`)
  await run(call, settings.concurrency, settings.warmupSeconds)
  const redisCpuBefore = await redisCpuSeconds(redis)
  const result = await run(call, settings.concurrency, settings.durationSeconds)
  const redisCpu = (await redisCpuSeconds(redis)) - redisCpuBefore
  return { ...result, redisCpuCores: redisCpu / settings.durationSeconds }
}

/**
 * What the run's counters say: reservations still open (none, when every call settled) and the
 * tokens counted (every settled call's, when none was lost).
 */
async function countersOf(redis: Redis, run: string) {
  let openReservations = 0
  for (const key of await keysMatching(redis, `gw:quota-reservations:{bench-${run}-*`))
    openReservations += await redis.hlen(key)
  let countedTokens = 0
  for (const key of await keysMatching(redis, `gw:quota-used:{bench-${run}-*`))
    countedTokens += Number((await redis.hget(key, 'tokens')) ?? 0)
  return { openReservations, countedTokens }
}

async function removeKeysOf(redis: Redis, run: string) {
  for (const prefix of ['gw:quota-reservations', 'gw:quota-used', 'gw:tpm']) {
    const keys = await keysMatching(redis, `${prefix}:{bench-${run}-*`)
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500))
  }
}

const thousands = (value: number) => Math.round(value).toLocaleString('en-US')
const ms = (value: number) => `${value.toFixed(2)} ms`

async function main() {
  const { json: asJson, settings } = parseSettings()
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
  const redis = new Redis(infrastructure.redisUrl, redisClientOptions())
  const run = randomBytes(4).toString('hex')
  try {
    await redis.ping()
    const quota = createQuotaReservations({
      redis,
      standing: async () => zeroStanding(),
      reservationTtlMs: RESERVATION_TTL_MS,
      // Both scripts on every call: a member's lease would admit most calls without them.
      leases: false,
    })
    const policies = Array.from({ length: settings.workspaces }, (_, index) => policyOf(run, index))
    const members = settings.workspaces * settings.membersPerWorkspace
    let settledTokens = 0
    const call = async (index: number) => {
      const used = await reserveAndSettle(quota, policies, settings.membersPerWorkspace, index)
      settledTokens += used
    }

    log(`seeding the counters of ${members} members in ${settings.workspaces} workspaces`)
    for (let index = 0; index < members; index++) await call(index)

    const trivial = defineLimitScript(redis, TRIVIAL_SCRIPT)
    const roundTrips = async () => {
      await trivial([], [])
      await trivial([], [])
    }
    const baseline = await measure('baseline: 2 x EVALSHA return 1', redis, roundTrips, settings)
    const reservations = await measure('reserve + settle', redis, call, settings)
    const counters = await countersOf(redis, run)
    const ratio = reservations.callsPerSecond / baseline.callsPerSecond
    const results = {
      settings,
      environment: { node: process.version, redis: infrastructure.redis },
      baseline,
      reservations,
      ratioToBaseline: ratio,
      target: { callsPerSecond: TARGET_CALLS_PER_SECOND },
      check: { ...counters, settledTokens },
    }
    if (asJson) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
      return
    }
    const row = (name: string, figures: typeof baseline, ratioCell: string, target: string) => [
      name,
      thousands(figures.callsPerSecond),
      ms(figures.p50),
      ms(figures.p99),
      ratioCell,
      figures.benchCpuCores.toFixed(2),
      figures.redisCpuCores.toFixed(2),
      target,
    ]
    const met = reservations.callsPerSecond >= TARGET_CALLS_PER_SECOND ? 'ok' : 'BELOW'
    const allSettled = counters.openReservations === 0 && counters.countedTokens === settledTokens
    process.stdout.write(
      [
        "Quota reservations (the egress's reserve + settle) against Redis, target >= " +
          `${thousands(TARGET_CALLS_PER_SECOND)} calls/s.`,
        'One call = one reserve + its settle; the baseline makes the same two round trips with',
        "`return 1`. One ioredis client with the services' options (auto-pipelining).",
        `${settings.concurrency} calls in flight, ${settings.durationSeconds} s each after ` +
          `${settings.warmupSeconds} s of warm-up; ${settings.workspaces} workspaces x ` +
          `${settings.membersPerWorkspace} members,`,
        'every budget and rate set and never reached.',
        `Node ${results.environment.node}; Redis: ${results.environment.redis}.`,
        "'bench cpu' is this process's CPU over wall time, 'redis cpu' the server's (INFO cpu).",
        '',
        ...textTable(
          ['variant', 'calls/s', 'p50', 'p99', 'x baseline', 'bench cpu', 'redis cpu', 'target'],
          [
            row('baseline: 2 x EVALSHA return 1', baseline, '1.00', ''),
            row(
              'reserve + settle',
              reservations,
              ratio.toFixed(2),
              `>= ${thousands(TARGET_CALLS_PER_SECOND)} ${met}`,
            ),
          ],
        ),
        '',
        `Check: ${counters.openReservations} reservations left open; ${thousands(counters.countedTokens)} of ` +
          `${thousands(settledTokens)} settled tokens counted${allSettled ? '' : ' (MISMATCH)'}.`,
        '',
      ].join('\n'),
    )
  } finally {
    await removeKeysOf(redis, run).catch(() => undefined)
    redis.disconnect()
    await infrastructure.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
