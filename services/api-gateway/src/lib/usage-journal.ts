import type { InternalClient } from '@platform/service-kit'
import {
  UsageAppendResponseSchema,
  type UsageRecord,
  UsageRecordSchema,
} from '@platform/shared-types'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { parseJson } from './json.js'

/** The stream every replica journals settled calls to, and its one consumer group. */
const JOURNAL = 'gw:usage-journal'
const GROUP = 'ledger'
/** Records the ledger accepts in one append (`UsageBatchSchema`). */
const DEFAULT_BATCH_SIZE = 500
/** Records kept in memory while Redis itself cannot take them. */
const MAX_BACKLOG = 100_000

export interface UsageJournalOptions {
  redis: Redis
  workspaceService: InternalClient
  log: FastifyBaseLogger
  /** This process's name in the consumer group; unique per replica. */
  consumer: string
  batchSize?: number
  /** The first wait after a failed delivery; doubled up to 30 s while failures go on. */
  retryMs?: number
  /** A record another replica took and has not delivered for this long is taken over. */
  claimIdleMs?: number
  /** How long a settled call waits for others to go to the ledger with it. */
  batchDelayMs?: number
}

type StreamEntry = [id: string, fields: string[]]

/**
 * Every settled call on its way to the ledger (`POST /internal/v1/usage`, API.md §7), journaled
 * first in a Redis stream so nothing is lost while the workspace-service is down, a replica
 * crashes, or a delivery fails half-way: an entry leaves the stream only once the ledger has
 * acknowledged it. The ledger is idempotent by `callId`, so a batch delivered twice (a replica
 * that died after appending, before acknowledging) still counts each call once. Entries another
 * replica left pending are claimed after `claimIdleMs`.
 */
export function createUsageJournal(options: UsageJournalOptions) {
  const { redis, log } = options
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
  const baseRetryMs = options.retryMs ?? 1_000
  const claimIdleMs = options.claimIdleMs ?? 30_000
  const batchDelayMs = options.batchDelayMs ?? 100
  const backlog: UsageRecord[] = []
  let groupReady = false
  let delivering: Promise<void> | null = null
  let again = false
  let retryMs = baseRetryMs
  let retryTimer: NodeJS.Timeout | undefined
  let batchTimer: NodeJS.Timeout | undefined
  let closed = false

  async function ensureGroup() {
    if (groupReady) return
    try {
      // ioredis leaves XGROUP's key unprefixed (a subcommand's key): the prefix is added here.
      await redis.xgroup(
        'CREATE',
        `${redis.options.keyPrefix ?? ''}${JOURNAL}`,
        GROUP,
        '0',
        'MKSTREAM',
      )
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error
    }
    groupReady = true
  }

  /** Moves records Redis could not take earlier into the stream. */
  async function drainBacklog() {
    while (backlog.length > 0) {
      const record = backlog[0]
      await redis.xadd(JOURNAL, '*', 'record', JSON.stringify(record))
      backlog.shift()
    }
  }

  const recordsOf = (entries: StreamEntry[]) =>
    entries.map(([id, fields]) => {
      const index = fields.indexOf('record')
      const parsed = UsageRecordSchema.safeParse(parseJson(fields[index + 1] ?? ''))
      return { id, record: parsed.success ? parsed.data : null }
    })

  /** Up to a batch of entries: `0` this consumer's pending ones, `>` ones nobody was given. */
  async function readGroup(from: '0' | '>'): Promise<StreamEntry[]> {
    const reply = (await redis.xreadgroup(
      'GROUP',
      GROUP,
      options.consumer,
      'COUNT',
      batchSize,
      'STREAMS',
      JOURNAL,
      from,
    )) as [string, StreamEntry[]][] | null
    return reply?.[0]?.[1] ?? []
  }

  /** Delivers one batch; answers whether there may be more. */
  async function deliverBatch(): Promise<boolean> {
    // This consumer's own pending entries first (a failed delivery), then new ones.
    let entries = await readGroup('0')
    if (entries.length === 0) entries = await readGroup('>')
    if (entries.length === 0) return false
    const parsed = recordsOf(entries)
    const unreadable = parsed.filter((entry) => entry.record === null).map((entry) => entry.id)
    if (unreadable.length > 0)
      log.error({ ids: unreadable }, 'usage journal entries unreadable; dropped')
    const records = parsed.flatMap((entry) => (entry.record === null ? [] : [entry.record]))
    if (records.length > 0)
      await options.workspaceService.post(
        '/internal/v1/usage',
        { records },
        UsageAppendResponseSchema,
      )
    const ids = entries.map(([id]) => id)
    await redis.xack(JOURNAL, GROUP, ...ids)
    await redis.xdel(JOURNAL, ...ids)
    return entries.length === batchSize
  }

  /** Takes over entries a replica that went away left undelivered. */
  async function claimAbandoned() {
    await ensureGroup()
    try {
      await redis.xautoclaim(
        JOURNAL,
        GROUP,
        options.consumer,
        claimIdleMs,
        '0-0',
        'COUNT',
        batchSize,
      )
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOGROUP')) groupReady = false
      throw error
    }
  }

  async function deliverAll() {
    await ensureGroup()
    await drainBacklog()
    try {
      while (await deliverBatch()) {
        // Full batches: more may be waiting.
      }
    } catch (error) {
      // Redis lost the stream (restarted without persistence): its group is made again next time.
      if (error instanceof Error && error.message.startsWith('NOGROUP')) groupReady = false
      throw error
    }
  }

  /** Calls settling close together share one delivery: one append to the ledger per batch. */
  function deliverSoon() {
    if (closed || batchTimer !== undefined) return
    batchTimer = setTimeout(() => {
      batchTimer = undefined
      void deliver()
    }, batchDelayMs)
    batchTimer.unref()
  }

  function scheduleRetry() {
    if (closed || retryTimer !== undefined) return
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      void deliver()
    }, retryMs)
    retryTimer.unref()
    retryMs = Math.min(retryMs * 2, 30_000)
  }

  /** Starts a delivery, or asks the running one to go round once more. */
  function deliver(): Promise<void> {
    if (delivering !== null) {
      again = true
      return delivering
    }
    delivering = (async () => {
      do {
        again = false
        try {
          await deliverAll()
          retryMs = baseRetryMs
        } catch (error) {
          log.warn({ err: error }, 'usage not delivered to the ledger yet; retrying')
          scheduleRetry()
          return
        }
      } while (again)
    })().finally(() => {
      delivering = null
    })
    return delivering
  }

  // Anything this or another replica journaled before a restart is delivered from the start.
  const sweep = setInterval(
    () =>
      void claimAbandoned()
        .then(deliver)
        .catch((error: unknown) => {
          log.warn({ err: error }, 'could not look for abandoned usage records; retrying')
        }),
    Math.max(claimIdleMs, 1_000),
  )
  sweep.unref()
  void deliver()

  return {
    /** Journals one settled call and starts delivering it. Never throws: a record is never lost. */
    async append(record: UsageRecord): Promise<void> {
      try {
        // Straight to the stream in this tick when nothing waits before it, so the command
        // shares a round trip with the settlement issued just before (auto-pipelining).
        if (backlog.length > 0) await drainBacklog()
        await redis.xadd(JOURNAL, '*', 'record', JSON.stringify(record))
      } catch (error) {
        if (backlog.length >= MAX_BACKLOG) {
          log.error({ record }, 'usage backlog full while Redis is away; record dropped')
          return
        }
        backlog.push(record)
        log.warn({ err: error }, 'usage journal unreachable; record kept in memory')
        scheduleRetry()
        return
      }
      deliverSoon()
    },
    /** Delivers everything journaled so far (tests, shutdown); throws if the ledger refuses. */
    async flush(): Promise<void> {
      await deliver()
      await claimAbandoned()
      await deliverAll()
    },
    async close(): Promise<void> {
      closed = true
      clearInterval(sweep)
      clearTimeout(retryTimer)
      clearTimeout(batchTimer)
      await delivering
      await deliverAll().catch((error: unknown) => {
        log.warn(
          { err: error },
          'usage left in the journal at shutdown; another replica delivers it',
        )
      })
    },
  }
}

export type UsageJournal = ReturnType<typeof createUsageJournal>
