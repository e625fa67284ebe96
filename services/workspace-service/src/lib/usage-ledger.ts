import { isDuplicateKeyError, zonedDayKey } from '@platform/service-kit'
import type { UsageRecord } from '@platform/shared-types'
import type { AnyBulkWriteOperation, Connection, PipelineStage } from 'mongoose'
import type { LedgerDocument, RollupDimension, RollupDocument, WorkspaceModels } from './models.js'

/** Rollup buckets are 15 minutes: every time zone's offset is a multiple of it. */
export const BUCKET_MS = 15 * 60_000

export type UsageGroupBy = 'day' | 'model' | 'member'

export interface UsageFigures {
  inputTokens: number
  outputTokens: number
  costUsd: number
  calls: number
}

export interface UsageItem extends UsageFigures {
  key: string
  /** For `groupBy=model`: a model call's `provider:model` or an MCP call's `server/tool`. */
  kind?: 'model' | 'mcp'
}

export interface UsageQuery {
  workspaceId: string
  from: Date
  to: Date
  groupBy: UsageGroupBy
  timeZone: string
  /** Only this member's calls (a member reading its own usage). */
  userId?: string | undefined
}

const SEPARATOR = '\u0000'
const zero = (): UsageFigures => ({ inputTokens: 0, outputTokens: 0, costUsd: 0, calls: 0 })

const callKey = (
  record: Pick<LedgerDocument, 'kind' | 'provider' | 'model' | 'server' | 'tool'>,
) =>
  record.kind === 'model' ? `${record.provider}:${record.model}` : `${record.server}/${record.tool}`

/** The rollup rows one call adds to: the total, its model or tool, its member, and both. */
function rollupKeys(record: LedgerDocument): Array<[RollupDimension, string]> {
  const call = callKey(record)
  const model = record.kind === 'model'
  return [
    ['total', ''],
    [model ? 'model' : 'tool', call],
    ['member', record.userId],
    [model ? 'member-model' : 'member-tool', `${record.userId}${SEPARATOR}${call}`],
  ]
}

const bucketOf = (date: Date) => new Date(Math.floor(date.getTime() / BUCKET_MS) * BUCKET_MS)

export const toLedgerDocument = (record: UsageRecord, recordedAt: Date): LedgerDocument => {
  const { callId, startedAt, endedAt, ...rest } = record
  return {
    ...rest,
    _id: callId,
    startedAt: new Date(startedAt),
    endedAt: new Date(endedAt),
    recordedAt,
  }
}

export interface LedgerOptions {
  connection: Connection
  models: WorkspaceModels
}

/**
 * The usage ledger, the source of truth for what every workspace used, and its rollups: sums
 * per 15-minute bucket written in the same transaction as the rows they sum, so a report over a
 * month reads a few thousand rollup rows instead of every call, and can always be rebuilt.
 */
export function createUsageLedger(options: LedgerOptions) {
  const { connection, models } = options
  const { Ledger, Rollup } = models

  function rollupWrites(documents: LedgerDocument[]): AnyBulkWriteOperation<RollupDocument>[] {
    const sums = new Map<string, RollupDocument>()
    for (const document of documents) {
      const bucket = bucketOf(document.startedAt)
      for (const [dimension, key] of rollupKeys(document)) {
        const id = `${document.workspaceId}${SEPARATOR}${dimension}${SEPARATOR}${key}${SEPARATOR}${bucket.getTime()}`
        let sum = sums.get(id)
        if (sum === undefined) {
          sum = { workspaceId: document.workspaceId, dimension, key, bucket, ...zero() }
          sums.set(id, sum)
        }
        sum.inputTokens += document.inputTokens
        sum.outputTokens += document.outputTokens
        sum.costUsd += document.costUsd
        sum.calls += 1
      }
    }
    return [...sums.values()].map((sum) => ({
      updateOne: {
        filter: {
          workspaceId: sum.workspaceId,
          dimension: sum.dimension,
          key: sum.key,
          bucket: sum.bucket,
        },
        update: {
          $inc: {
            inputTokens: sum.inputTokens,
            outputTokens: sum.outputTokens,
            costUsd: sum.costUsd,
            calls: sum.calls,
          },
        },
        upsert: true,
      },
    }))
  }

  /**
   * Appends settled calls. A call id already in the ledger (a retried batch, a duplicate inside
   * the batch) is counted once: new rows and their rollups commit together, and a concurrent
   * append of the same id makes this transaction start over without it.
   */
  /**
   * Appends run one at a time in this process: concurrent transactions all increment the same
   * current-bucket rollup rows, and MongoDB answers such overlaps with write conflicts that
   * restart whole transactions, which costs far more than waiting. Other replicas' appends still
   * conflict now and then; the transaction retries those.
   */
  let appendQueue: Promise<unknown> = Promise.resolve()
  function append(records: UsageRecord[]) {
    const next = appendQueue.then(() => appendNow(records))
    appendQueue = next.catch(() => undefined)
    return next
  }

  async function appendNow(records: UsageRecord[]) {
    const recordedAt = new Date()
    const unique = new Map<string, LedgerDocument>()
    for (const record of records)
      if (!unique.has(record.callId))
        unique.set(record.callId, toLedgerDocument(record, recordedAt))
    for (let attempt = 1; ; attempt += 1) {
      const known = await Ledger.find({ _id: { $in: [...unique.keys()] } }, { _id: 1 }).lean()
      const knownIds = new Set(known.map((row) => row._id))
      const fresh = [...unique.values()].filter((document) => !knownIds.has(document._id))
      if (fresh.length === 0) return { appended: 0, duplicates: records.length }
      try {
        await connection.transaction(async (session) => {
          await Ledger.insertMany(fresh, { session, ordered: true, lean: true })
          await Rollup.bulkWrite(rollupWrites(fresh), { session, ordered: false })
        })
        return { appended: fresh.length, duplicates: records.length - fresh.length }
      } catch (error) {
        if (!isDuplicateKeyError(error) || attempt >= 5) throw error
      }
    }
  }

  /** The rollup filter for a query's dimension (and, for one member, its keys). */
  function rollupScope(query: UsageQuery): Array<{ dimension: RollupDimension; key?: unknown }> {
    const own = query.userId
    const prefix = own === undefined ? null : `${own}${SEPARATOR}`
    switch (query.groupBy) {
      case 'day':
        return [
          own === undefined ? { dimension: 'total', key: '' } : { dimension: 'member', key: own },
        ]
      case 'member':
        return [own === undefined ? { dimension: 'member' } : { dimension: 'member', key: own }]
      case 'model':
        return prefix === null
          ? [{ dimension: 'model' }, { dimension: 'tool' }]
          : [
              { dimension: 'member-model', key: { $gte: prefix, $lt: `${own}\u0001` } },
              { dimension: 'member-tool', key: { $gte: prefix, $lt: `${own}\u0001` } },
            ]
    }
  }

  /** The aggregation over rollups in `[from, to)` (both on bucket boundaries). */
  function rollupPipeline(query: UsageQuery, from: Date, to: Date): PipelineStage[] {
    const scopes = rollupScope(query)
    const group =
      query.groupBy === 'day'
        ? { $dateToString: { date: '$bucket', format: '%Y-%m-%d', timezone: query.timeZone } }
        : { dimension: '$dimension', key: '$key' }
    return [
      {
        $match: {
          workspaceId: query.workspaceId,
          $or: scopes.map((scope) => ({ ...scope, bucket: { $gte: from, $lt: to } })),
        },
      },
      {
        $group: {
          _id: group,
          inputTokens: { $sum: '$inputTokens' },
          outputTokens: { $sum: '$outputTokens' },
          costUsd: { $sum: '$costUsd' },
          calls: { $sum: '$calls' },
        },
      },
    ]
  }

  /** The ledger rows of `[from, to)`: the partial buckets at a range's edges. */
  function ledgerQuery(query: Pick<UsageQuery, 'workspaceId' | 'userId'>, from: Date, to: Date) {
    const filter: Record<string, unknown> = {
      workspaceId: query.workspaceId,
      startedAt: { $gte: from, $lt: to },
    }
    if (query.userId !== undefined) filter.userId = query.userId
    return Ledger.find(filter, {
      kind: 1,
      userId: 1,
      provider: 1,
      model: 1,
      server: 1,
      tool: 1,
      inputTokens: 1,
      outputTokens: 1,
      costUsd: 1,
      startedAt: 1,
    })
  }

  /** Totals and groups over `[from, to)`, exact to the call: rollups inside, the ledger at the edges. */
  async function usage(query: UsageQuery) {
    const alignedFrom = new Date(Math.ceil(query.from.getTime() / BUCKET_MS) * BUCKET_MS)
    const alignedTo = new Date(Math.floor(query.to.getTime() / BUCKET_MS) * BUCKET_MS)
    const groups = new Map<string, UsageItem>()
    const add = (key: string, figures: UsageFigures, kind?: 'model' | 'mcp') => {
      let item = groups.get(key)
      if (item === undefined) {
        item = { key, ...zero(), ...(kind === undefined ? {} : { kind }) }
        groups.set(key, item)
      }
      item.inputTokens += figures.inputTokens
      item.outputTokens += figures.outputTokens
      item.costUsd += figures.costUsd
      item.calls += figures.calls
    }

    const edges: Array<[Date, Date]> = []
    if (alignedFrom < alignedTo) {
      const rows = await Rollup.aggregate<
        UsageFigures & { _id: string | { dimension: RollupDimension; key: string } }
      >(rollupPipeline(query, alignedFrom, alignedTo))
      for (const row of rows) {
        if (typeof row._id === 'string') add(row._id, row)
        else {
          const { dimension, key } = row._id
          const visible = key.includes(SEPARATOR) ? key.slice(key.indexOf(SEPARATOR) + 1) : key
          const kind =
            dimension === 'model' || dimension === 'member-model'
              ? 'model'
              : dimension === 'tool' || dimension === 'member-tool'
                ? 'mcp'
                : undefined
          add(visible, row, kind)
        }
      }
      edges.push([query.from, alignedFrom], [alignedTo, query.to])
    } else edges.push([query.from, query.to])

    for (const [from, to] of edges) {
      if (from >= to) continue
      for await (const row of ledgerQuery(query, from, to).lean().cursor()) {
        const figures = { ...row, calls: 1 }
        if (query.groupBy === 'day') add(zonedDayKey(row.startedAt, query.timeZone), figures)
        else if (query.groupBy === 'member') add(row.userId, figures)
        else add(callKey(row), figures, row.kind)
      }
    }

    const items = [...groups.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    const totals = zero()
    for (const item of items) {
      totals.inputTokens += item.inputTokens
      totals.outputTokens += item.outputTokens
      totals.costUsd += item.costUsd
      totals.calls += item.calls
    }
    return { totals, items }
  }

  /**
   * Rebuilds a workspace's rollups from its ledger rows inside MongoDB, for repairs and for data
   * loaded around the append path. The ledger stays the source of truth.
   */
  async function rebuildRollups(workspaceId: string) {
    await Rollup.deleteMany({ workspaceId })
    const call = {
      $cond: [
        { $eq: ['$kind', 'model'] },
        { $concat: ['$provider', ':', '$model'] },
        { $concat: ['$server', '/', '$tool'] },
      ],
    }
    const byKind = (model: RollupDimension, tool: RollupDimension) => ({
      $cond: [{ $eq: ['$kind', 'model'] }, model, tool],
    })
    const groupings = [
      { dimension: 'total', key: '' },
      { dimension: byKind('model', 'tool'), key: call },
      { dimension: 'member', key: '$userId' },
      {
        dimension: byKind('member-model', 'member-tool'),
        key: { $concat: ['$userId', SEPARATOR, call] },
      },
    ]
    for (const { dimension, key } of groupings)
      await Ledger.aggregate([
        { $match: { workspaceId } },
        {
          $group: {
            _id: {
              dimension: typeof dimension === 'string' ? { $literal: dimension } : dimension,
              key: typeof key === 'string' && !key.startsWith('$') ? { $literal: key } : key,
              bucket: { $dateTrunc: { date: '$startedAt', unit: 'minute', binSize: 15 } },
            },
            inputTokens: { $sum: '$inputTokens' },
            outputTokens: { $sum: '$outputTokens' },
            costUsd: { $sum: '$costUsd' },
            calls: { $sum: 1 },
          },
        },
        {
          $project: {
            _id: 0,
            workspaceId: { $literal: workspaceId },
            dimension: '$_id.dimension',
            key: '$_id.key',
            bucket: '$_id.bucket',
            inputTokens: 1,
            outputTokens: 1,
            costUsd: 1,
            calls: 1,
          },
        },
        {
          $merge: {
            into: Rollup.collection.collectionName,
            on: ['workspaceId', 'dimension', 'key', 'bucket'],
            whenMatched: 'replace',
            whenNotMatched: 'insert',
          },
        },
      ]).allowDiskUse(true)
  }

  return { append, usage, rollupPipeline, ledgerQuery, rebuildRollups }
}

export type UsageLedger = ReturnType<typeof createUsageLedger>
