import { randomUUID } from 'node:crypto'
import type { UsageRecord, WorkspacePolicy } from '@platform/shared-types'
import { Redis } from 'ioredis'
import { expect } from 'vitest'
import type { LedgerDocument, RollupDocument } from '../../src/lib/models.js'
import type { TestStack } from './stack.js'

/** Whose call a record is: the tenant, workspace and user it is charged to. */
export interface CallScope {
  tenantId: string
  workspaceId: string
  userId: string
}

/** Record fields a test may set, with `at` as the start instant instead of ISO strings. */
export type CallFields = Partial<Omit<UsageRecord, 'startedAt' | 'endedAt'>> & {
  at?: Date
  startedAt?: string
  endedAt?: string
}

const callTimes = (fields: CallFields) => {
  const at = fields.at ?? new Date(Date.now() - 60_000)
  const durationMs = fields.durationMs ?? 1_200
  return {
    durationMs,
    startedAt: fields.startedAt ?? at.toISOString(),
    endedAt: fields.endedAt ?? new Date(at.getTime() + durationMs).toISOString(),
  }
}

/** A settled model call as the gateway reports it. */
export function modelCall(scope: CallScope, fields: CallFields = {}): UsageRecord {
  const { at: _at, ...rest } = fields
  return {
    callId: randomUUID(),
    kind: 'model',
    ...scope,
    provider: 'oai',
    model: 'gpt-4o-mini',
    inputTokens: 120,
    outputTokens: 45,
    costUsd: 0.0625,
    status: 'completed',
    ...rest,
    ...callTimes(fields),
  }
}

/** A settled MCP tool call as the gateway reports it. */
export function mcpCall(scope: CallScope, fields: CallFields = {}): UsageRecord {
  const { at: _at, ...rest } = fields
  return {
    callId: randomUUID(),
    kind: 'mcp',
    ...scope,
    server: 'github',
    tool: 'search_code',
    inputTokens: 30,
    outputTokens: 900,
    costUsd: 0,
    status: 'completed',
    ...rest,
    ...callTimes(fields),
  }
}

/** Appends records through `POST /internal/v1/usage` as the gateway does, 1000 per batch. */
export async function appendUsage(stack: TestStack, records: UsageRecord[]) {
  const token = await stack.serviceToken('api-gateway')
  let appended = 0
  for (let start = 0; start < records.length; start += 1000) {
    const response = await stack.call(token, 'POST', '/internal/v1/usage', {
      records: records.slice(start, start + 1000),
    })
    expect(response.statusCode, response.body).toBe(200)
    appended += response.json<{ appended: number }>().appended
  }
  expect(appended).toBe(records.length)
}

/** A small seeded generator (mulberry32): random data that is the same on every run. */
export function seededRandom(seed: number) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let value = state
    value = Math.imul(value ^ (value >>> 15), value | 1)
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61)
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296
  }
  const int = (below: number) => Math.floor(next() * below)
  const pick = <T>(items: readonly T[]): T => {
    const item = items[int(items.length)]
    if (item === undefined) throw new Error('pick from an empty list')
    return item
  }
  return { next, int, pick }
}

/**
 * A cost in whole 1/1024 dollars. Such sums are exact in binary floating point whatever order
 * they are added in, so the service's figures can be compared with `toEqual`.
 */
export const exactCost = (units: number) => units / 1024

export interface Figures {
  inputTokens: number
  outputTokens: number
  costUsd: number
  calls: number
}

export interface ExpectedItem extends Figures {
  key: string
  kind?: 'model' | 'mcp'
}

const zero = (): Figures => ({ inputTokens: 0, outputTokens: 0, costUsd: 0, calls: 0 })

/** `provider:model` for a model call, `server/tool` for an MCP call. */
export const callKeyOf = (record: UsageRecord) =>
  record.kind === 'model' ? `${record.provider}:${record.model}` : `${record.server}/${record.tool}`

/**
 * What a usage report over `records` must say, added up record by record: `groupOf` names a
 * record's item (or leaves it out with null). Items are sorted by key, as the service sorts them.
 */
export function expectedUsage(
  records: UsageRecord[],
  groupOf: (record: UsageRecord) => { key: string; kind?: 'model' | 'mcp' } | null,
) {
  const items = new Map<string, ExpectedItem>()
  const totals = zero()
  for (const record of records) {
    const group = groupOf(record)
    if (group === null) continue
    let item = items.get(group.key)
    if (item === undefined) {
      item = { ...group, ...zero() }
      items.set(group.key, item)
    }
    for (const figures of [item, totals]) {
      figures.inputTokens += record.inputTokens
      figures.outputTokens += record.outputTokens
      figures.costUsd += record.costUsd
      figures.calls += 1
    }
  }
  return {
    totals,
    items: [...items.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
  }
}

const BUCKET_MS = 15 * 60_000
const NUL = '\u0000'

/**
 * The rollup table a set of ledger rows must produce, worked out from the rows alone: per
 * 15-minute bucket, the total, the model or tool, the member, and member with model or tool.
 */
export function rollupsFromLedger(rows: LedgerDocument[]) {
  const sums = new Map<string, Figures>()
  for (const row of rows) {
    const bucket = Math.floor(row.startedAt.getTime() / BUCKET_MS) * BUCKET_MS
    const call = row.kind === 'model' ? `${row.provider}:${row.model}` : `${row.server}/${row.tool}`
    const model = row.kind === 'model'
    const keys: Array<[string, string]> = [
      ['total', ''],
      [model ? 'model' : 'tool', call],
      ['member', row.userId],
      [model ? 'member-model' : 'member-tool', `${row.userId}${NUL}${call}`],
    ]
    for (const [dimension, key] of keys) {
      const id = rollupId(dimension, key, bucket)
      const sum = sums.get(id) ?? zero()
      sum.inputTokens += row.inputTokens
      sum.outputTokens += row.outputTokens
      sum.costUsd += row.costUsd
      sum.calls += 1
      sums.set(id, sum)
    }
  }
  return sums
}

const rollupId = (dimension: string, key: string, bucket: number) =>
  `${dimension}|${key}|${new Date(bucket).toISOString()}`

/** The rollup rows as stored, in the shape `rollupsFromLedger` answers. */
export function storedRollups(rows: RollupDocument[]) {
  return new Map(
    rows.map((row) => [
      rollupId(row.dimension, row.key, row.bucket.getTime()),
      {
        inputTokens: row.inputTokens,
        outputTokens: row.outputTokens,
        costUsd: row.costUsd,
        calls: row.calls,
      },
    ]),
  )
}

/** A Redis client that sees the keys as the service does (its key prefix), as the gateway's would. */
export async function serviceRedis(stack: TestStack): Promise<Redis> {
  const redis = new Redis(stack.config.REDIS_URL, {
    keyPrefix: stack.redisKeyPrefix,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
  })
  await redis.connect()
  return redis
}

/** Reads a workspace's policy and writes it back changed, as an admin would. */
export async function changePolicy(
  stack: TestStack,
  token: string,
  workspaceId: string,
  change: (policy: WorkspacePolicy) => void,
) {
  const read = await stack.call(token, 'GET', `/v1/workspaces/${workspaceId}/policy`)
  expect(read.statusCode, read.body).toBe(200)
  const policy = read.json<WorkspacePolicy>()
  change(policy)
  const written = await stack.call(token, 'PUT', `/v1/workspaces/${workspaceId}/policy`, policy)
  expect(written.statusCode, written.body).toBe(200)
}

/** Changes tenant settings as its owner. */
export async function patchTenant(
  stack: TestStack,
  token: string,
  tenantId: string,
  settings: Record<string, unknown>,
) {
  const response = await stack.call(token, 'PATCH', `/v1/tenants/${tenantId}`, settings)
  expect(response.statusCode, response.body).toBe(200)
}
