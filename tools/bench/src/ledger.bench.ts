/**
 * The workspace-service's usage ledger, each figure next to a baseline measured in the same run:
 *
 * 1. Append throughput: `POST /internal/v1/usage` over HTTP in batches (idempotency check, ledger
 *    insert and rollups in one transaction), against the driver inserting the same documents
 *    into a scratch collection (the floor: what writing the rows alone costs).
 * 2. Usage by day over 1,000,000 ledger rows: `GET /v1/workspaces/:wid/usage?groupBy=day` for a
 *    month, against the same answer computed by aggregating the ledger rows directly.
 * 3. Export of a workspace with 200,000 ledger rows: time, size, and the process's peak memory
 *    above its idle level while the document streams, against the document's size.
 *
 * Usage: pnpm run bench:ledger [-- --json] [--rows 1000000] [--export-rows 200000]
 *        [--append-records 50000] [--phases append,usage,export]
 * MongoDB and Redis: MONGO_URL/REDIS_URL when set, otherwise @platform/local-infra's (stopped after).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildApp as buildAuthApp } from '@platform/auth-service/app'
import { loadConfig as loadAuthConfig } from '@platform/auth-service/config'
import { findFreePort, provideInfrastructure } from '@platform/local-infra'
import type { UsageRecord } from '@platform/shared-types'
import { buildApp } from '@platform/workspace-service/app'
import { loadConfig } from '@platform/workspace-service/config'
import type { FastifyInstance } from 'fastify'

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    rows: { type: 'string', default: '1000000' },
    'export-rows': { type: 'string', default: '200000' },
    'append-records': { type: 'string', default: '50000' },
    phases: { type: 'string', default: 'append,usage,export' },
  },
})
const phases = new Set(args.phases.split(','))
const reportRows = Number(args.rows)
const exportRows = Number(args['export-rows'])
const appendRecords = Number(args['append-records'])
const APPEND_BATCH = 500
const APPEND_CONCURRENCY = 4
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`)
const secret = () => randomBytes(32).toString('base64url')

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN

async function timed(operation: () => Promise<unknown>, count: number) {
  const samples: number[] = []
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    await operation()
    samples.push(performance.now() - started)
  }
  const sorted = samples.sort((a, b) => a - b)
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: samples.length }
}

const MODELS = [
  ['oai', 'gpt-4o-mini'],
  ['oai', 'gpt-4o'],
  ['claude', 'claude-sonnet-4'],
  ['claude', 'claude-haiku-4'],
  ['ollama', 'llama3:70b'],
  ['ollama', 'qwen2.5:32b'],
] as const
const TOOLS = [
  ['github', 'search_code'],
  ['workspace-tools', 'summarize'],
] as const

/** A plausible settled call somewhere in `[from, from + spanMs)`. */
function record(
  scope: { tenantId: string; workspaceId: string },
  from: number,
  spanMs: number,
): UsageRecord {
  const startedAt = from + Math.floor(Math.random() * spanMs)
  const durationMs = 200 + Math.floor(Math.random() * 20_000)
  const userId = `bench-user-${Math.floor(Math.random() * 20)}`
  const base = {
    callId: randomUUID(),
    tenantId: scope.tenantId,
    workspaceId: scope.workspaceId,
    userId,
    durationMs,
    startedAt: new Date(startedAt).toISOString(),
    endedAt: new Date(startedAt + durationMs).toISOString(),
    status: 'completed' as const,
  }
  if (Math.random() < 0.1) {
    const [server, tool] = TOOLS[Math.floor(Math.random() * TOOLS.length)] ?? TOOLS[0]
    return { ...base, kind: 'mcp', server, tool, inputTokens: 0, outputTokens: 0, costUsd: 0 }
  }
  const [provider, model] = MODELS[Math.floor(Math.random() * MODELS.length)] ?? MODELS[0]
  const inputTokens = 50 + Math.floor(Math.random() * 4000)
  const outputTokens = 10 + Math.floor(Math.random() * 1500)
  return {
    ...base,
    kind: 'model',
    provider,
    model,
    inputTokens,
    outputTokens,
    costUsd: (inputTokens * 0.15 + outputTokens * 0.6) / 1e6,
  }
}

/** The record as the ledger stores it (the bulk loads skip the HTTP path). */
const ledgerRow = (row: UsageRecord, recordedAt: Date) => {
  const { callId, startedAt, endedAt, ...rest } = row
  return {
    ...rest,
    _id: callId,
    startedAt: new Date(startedAt),
    endedAt: new Date(endedAt),
    recordedAt,
  }
}

interface Stack {
  auth: FastifyInstance
  app: FastifyInstance
  url: string
  gatewayToken: string
}

async function startStack(mongoUrl: string, redisUrl: string): Promise<Stack> {
  const secrets = {
    AUTH_KEY_ENCRYPTION_KEY: secret(),
    SERVICE_SECRET_AUTH: secret(),
    SERVICE_SECRET_WORKSPACE: secret(),
    SERVICE_SECRET_GATEWAY: secret(),
    SERVICE_SECRET_RUNTIME: secret(),
  }
  const common = { MONGO_URL: mongoUrl, REDIS_URL: redisUrl, LOG_LEVEL: 'warn', ...secrets }
  const workspacePort = await findFreePort()
  const publicUrl = 'http://bench.platform.test'
  const auth = await buildAuthApp(
    loadAuthConfig({
      ...common,
      PUBLIC_URL: publicUrl,
      WORKSPACE_SERVICE_URL: `http://127.0.0.1:${workspacePort}`,
    }),
    { dbName: `bench_auth_${randomBytes(3).toString('hex')}` },
  )
  const authUrl = await auth.listen({ host: '127.0.0.1', port: 0 })
  const app = await buildApp(
    loadConfig({
      ...common,
      PUBLIC_URL: publicUrl,
      AUTH_SERVICE_URL: authUrl,
      EXPORT_MAX_ROWS: '10000000',
    }),
    { dbName: `bench_workspace_${randomBytes(3).toString('hex')}` },
  )
  await app.listen({ host: '127.0.0.1', port: workspacePort })
  const gatewayToken = await auth.identity.tokens.serviceToken('api-gateway')
  return { auth, app, url: `http://127.0.0.1:${workspacePort}`, gatewayToken }
}

async function json<T>(response: Response): Promise<T> {
  if (!response.ok)
    throw new Error(`${response.url} answered ${response.status}: ${await response.text()}`)
  return (await response.json()) as T
}

async function newTenant(stack: Stack) {
  const email = `bench-${randomBytes(4).toString('hex')}@example.com`
  const registered = await stack.auth.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email, password: 'correct horse battery staple', name: 'Bench' },
  })
  const userId = registered.json<{ user: { id: string } }>().user.id
  const token = await stack.auth.identity.tokens.accessToken(userId, randomUUID(), null)
  const created = await json<{ tenant: { id: string }; workspace: { id: string } }>(
    await fetch(`${stack.url}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Bench', timeZone: 'Europe/Berlin' }),
    }),
  )
  return { token, tenantId: created.tenant.id, workspaceId: created.workspace.id }
}

async function appendThroughput(stack: Stack) {
  log(`appending ${appendRecords} records over HTTP`)
  const scope = await newTenant(stack)
  // Settled calls arrive as they end: each batch spans the last minute or so.
  const from = Date.now() - 60_000
  const batches = Array.from({ length: Math.ceil(appendRecords / APPEND_BATCH) }, () =>
    Array.from({ length: APPEND_BATCH }, () => record(scope, from, 60_000)),
  )
  const post = (records: unknown[]) =>
    fetch(`${stack.url}/internal/v1/usage`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${stack.gatewayToken}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ records }),
    }).then((response) => json<{ appended: number }>(response))
  // Warm-up on a batch of its own.
  await post([record(scope, from, 3600_000)])

  const queue = [...batches]
  let appended = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: APPEND_CONCURRENCY }, async () => {
      for (let batch = queue.shift(); batch !== undefined; batch = queue.shift()) {
        const answer = await post(batch)
        appended += answer.appended
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  if (appended !== batches.length * APPEND_BATCH) throw new Error(`appended ${appended}`)

  // Retrying every batch counts nothing twice and costs one lookup per batch.
  const retryStarted = performance.now()
  let duplicates = 0
  for (const batch of batches.slice(0, 20)) {
    const answer = await post(batch)
    if (answer.appended === 0) duplicates += APPEND_BATCH
  }
  const retrySeconds = (performance.now() - retryStarted) / 1000

  const db = stack.app.mongo.db
  if (db === undefined) throw new Error('no database handle')
  // Created up front: concurrent first inserts race to create it, and the loser's exception
  // crashes mongod under Wine.
  const scratch = await db.createCollection<ReturnType<typeof ledgerRow>>(
    `bench_scratch_${randomBytes(3).toString('hex')}`,
  )
  const recordedAt = new Date()
  const rawBatches = batches.map((batch) =>
    batch.map((row) => ledgerRow({ ...row, callId: randomUUID() }, recordedAt)),
  )
  const rawQueue = [...rawBatches]
  const rawStarted = performance.now()
  await Promise.all(
    Array.from({ length: APPEND_CONCURRENCY }, async () => {
      for (let batch = rawQueue.shift(); batch !== undefined; batch = rawQueue.shift())
        await scratch.insertMany(batch, { ordered: false })
    }),
  )
  const rawSeconds = (performance.now() - rawStarted) / 1000
  await scratch.drop()

  return {
    records: appended,
    batchSize: APPEND_BATCH,
    concurrency: APPEND_CONCURRENCY,
    recordsPerSecond: appended / seconds,
    rawInsertRecordsPerSecond: appended / rawSeconds,
    ratioToRawInsert: appended / seconds / (appended / rawSeconds),
    retriedRecordsPerSecond: duplicates / retrySeconds,
  }
}

/** Loads `count` rows spread over November 2026 straight into the ledger, then its rollups. */
async function bulkLoad(
  stack: Stack,
  scope: { tenantId: string; workspaceId: string },
  count: number,
) {
  const { Ledger } = stack.app.tenancy.models
  const from = Date.UTC(2026, 9, 31, 23)
  const span = 30 * 24 * 3600_000
  const recordedAt = new Date()
  const chunk = 10_000
  const started = performance.now()
  for (let done = 0; done < count; done += chunk) {
    const rows = Array.from({ length: Math.min(chunk, count - done) }, () =>
      ledgerRow(record(scope, from, span), recordedAt),
    )
    await Ledger.insertMany(rows, { ordered: false, lean: true })
    if ((done / chunk) % 20 === 0) log(`  loaded ${done + rows.length} rows`)
  }
  const loadSeconds = (performance.now() - started) / 1000
  const rebuildStarted = performance.now()
  await stack.app.tenancy.ledger.rebuildRollups(scope.workspaceId)
  return { loadSeconds, rebuildSeconds: (performance.now() - rebuildStarted) / 1000 }
}

async function usageByDay(stack: Stack) {
  const scope = await newTenant(stack)
  log(`loading ${reportRows} ledger rows`)
  const load = await bulkLoad(stack, scope, reportRows)
  const query = 'groupBy=day&from=2026-11-01&to=2026-11-30'
  const url = `${stack.url}/v1/workspaces/${scope.workspaceId}/usage?${query}`
  const get = async () =>
    json<{ totals: { calls: number }; items: unknown[] }>(
      await fetch(url, { headers: { authorization: `Bearer ${scope.token}` } }),
    )
  const answer = await get()
  const viaHttp = await timed(get, 30)

  // The baseline: the same month grouped by day straight from the ledger rows.
  const { Ledger } = stack.app.tenancy.models
  const from = new Date('2026-10-31T23:00:00Z')
  const to = new Date('2026-11-30T23:00:00Z')
  const direct = () =>
    Ledger.aggregate<{ calls: number }>([
      { $match: { workspaceId: scope.workspaceId, startedAt: { $gte: from, $lt: to } } },
      {
        $group: {
          _id: {
            $dateToString: { date: '$startedAt', format: '%Y-%m-%d', timezone: 'Europe/Berlin' },
          },
          inputTokens: { $sum: '$inputTokens' },
          outputTokens: { $sum: '$outputTokens' },
          costUsd: { $sum: '$costUsd' },
          calls: { $sum: 1 },
        },
      },
    ]).allowDiskUse(true)
  const directRows = await direct()
  const directCalls = directRows.reduce((sum, row) => sum + row.calls, 0)
  if (directCalls !== answer.totals.calls)
    throw new Error(`rollups say ${answer.totals.calls} calls, the ledger ${directCalls}`)
  const fromLedger = await timed(direct, 3)
  return {
    rows: reportRows,
    days: answer.items.length,
    ...load,
    viaHttp,
    ledgerAggregation: fromLedger,
    speedupOverLedgerAggregation: fromLedger.p50 / viaHttp.p50,
  }
}

const memory = () => process.memoryUsage()

async function exportMemory(stack: Stack) {
  const scope = await newTenant(stack)
  log(`loading ${exportRows} ledger rows for the export`)
  await bulkLoad(stack, scope, exportRows)
  const url = `${stack.url}/v1/workspaces/${scope.workspaceId}/export`
  const headers = { authorization: `Bearer ${scope.token}` }
  // A small export first, so code paths are loaded before the baseline is taken.
  await (
    await fetch(`${url}?from=2026-11-01T00:00:00Z&to=2026-11-01T00:15:00Z`, { headers })
  ).text()
  const collect = globalThis.gc
  if (collect === undefined) throw new Error('run with --expose-gc (npm run bench:ledger does)')
  collect()
  const idle = memory()
  let peakRss = idle.rss
  let peakHeap = idle.heapUsed
  let peakLiveHeap = idle.heapUsed
  // Raw peaks include garbage V8 has not collected yet; the live heap (after a forced
  // collection, every 250 ms) is what the export actually holds on to.
  const sampler = setInterval(() => {
    const now = memory()
    peakRss = Math.max(peakRss, now.rss)
    peakHeap = Math.max(peakHeap, now.heapUsed)
  }, 10)
  const liveSampler = setInterval(() => {
    collect()
    peakLiveHeap = Math.max(peakLiveHeap, memory().heapUsed)
  }, 250)
  const started = performance.now()
  const response = await fetch(url, { headers })
  if (!response.ok || response.body === null) throw new Error(`export answered ${response.status}`)
  let bytes = 0
  let tail = ''
  // The client keeps nothing but a count and the last bytes (to check the document is closed).
  for await (const chunk of response.body) {
    bytes += chunk.byteLength
    tail = (tail + Buffer.from(chunk).toString('utf8')).slice(-16)
  }
  const seconds = (performance.now() - started) / 1000
  clearInterval(sampler)
  clearInterval(liveSampler)
  if (!tail.endsWith(']}')) throw new Error('the export did not end as a JSON document')
  const mib = (value: number) => value / 1024 / 1024
  return {
    ledgerRows: exportRows,
    seconds,
    documentMiB: mib(bytes),
    rowsPerSecond: exportRows / seconds,
    idleRssMiB: mib(idle.rss),
    peakRssAboveIdleMiB: mib(peakRss - idle.rss),
    peakHeapAboveIdleMiB: mib(peakHeap - idle.heapUsed),
    peakLiveHeapAboveIdleMiB: mib(peakLiveHeap - idle.heapUsed),
    peakRssGrowthOverDocumentSize: (peakRss - idle.rss) / bytes,
  }
}

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'ai-platform-bench-'))
  const infrastructure = await provideInfrastructure({
    env: process.env,
    purpose: 'test',
    dataDir,
    report: log,
  })
  let stack: Stack | undefined
  try {
    stack = await startStack(infrastructure.mongoUrl, infrastructure.redisUrl)
    const append = phases.has('append') ? await appendThroughput(stack) : undefined
    const usage = phases.has('usage') ? await usageByDay(stack) : undefined
    const exported = phases.has('export') ? await exportMemory(stack) : undefined
    const results = { append, usage, export: exported }
    if (args.json) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`)
      return
    }
    const n = (value: number, digits = 0) =>
      value.toLocaleString('en-US', {
        maximumFractionDigits: digits,
        minimumFractionDigits: digits,
      })
    const lines: string[] = []
    if (append !== undefined)
      lines.push(
        `Ledger append over HTTP (${append.batchSize} per batch, ${append.concurrency} in flight)`,
        `  ${n(append.recordsPerSecond)} records/s (target >= 5,000); driver insert alone ${n(append.rawInsertRecordsPerSecond)} records/s; ratio ${n(append.ratioToRawInsert, 2)}x`,
        `  a retried batch: ${n(append.retriedRecordsPerSecond)} records/s recognised as duplicates`,
        '',
      )
    if (usage !== undefined)
      lines.push(
        `Usage by day over ${n(usage.rows)} ledger rows (a month, ${usage.days} days)`,
        `  GET /usage?groupBy=day: p50 ${n(usage.viaHttp.p50, 1)} ms, p99 ${n(usage.viaHttp.p99, 1)} ms (target <= 200 ms)`,
        `  aggregating the ledger rows instead: p50 ${n(usage.ledgerAggregation.p50, 1)} ms (${n(usage.speedupOverLedgerAggregation, 1)}x slower)`,
        `  bulk load ${n(usage.loadSeconds, 1)} s, rollup rebuild from the ledger ${n(usage.rebuildSeconds, 1)} s`,
        '',
      )
    if (exported !== undefined)
      lines.push(
        `Export of a workspace with ${n(exported.ledgerRows)} ledger rows`,
        `  ${n(exported.documentMiB, 1)} MiB in ${n(exported.seconds, 1)} s (${n(exported.rowsPerSecond)} rows/s)`,
        `  peak above idle: live heap ${n(exported.peakLiveHeapAboveIdleMiB, 1)} MiB (what the export holds), heap with garbage ${n(exported.peakHeapAboveIdleMiB, 1)} MiB, RSS ${n(exported.peakRssAboveIdleMiB, 1)} MiB (${n(exported.peakRssGrowthOverDocumentSize * 100, 1)}% of the document)`,
        '',
      )
    process.stdout.write(lines.join('\n'))
  } finally {
    await stack?.app.close()
    await stack?.auth.close()
    await infrastructure.stop()
  }
}

await main()
