import { randomUUID } from 'node:crypto'
import { type AuditEvent, AuditEventSchema } from '@platform/shared-types'
import type { FastifyBaseLogger } from 'fastify'
import { type Connection, Schema } from 'mongoose'

interface OutboxDocument {
  _id: string
  event: AuditEvent
  createdAt: Date
  attempts: number
  nextAttemptAt: Date
}

const outboxSchema = new Schema<OutboxDocument>(
  {
    _id: { type: String },
    event: { type: Schema.Types.Mixed, required: true },
    createdAt: { type: Date, required: true },
    attempts: { type: Number, default: 0 },
    nextAttemptAt: { type: Date, required: true },
  },
  { collection: 'audit_outbox', versionKey: false },
)
outboxSchema.index({ nextAttemptAt: 1, createdAt: 1 })
// An outbox that cannot be delivered for 90 days is a deployment without a workspace-service.
outboxSchema.index({ createdAt: 1 }, { expireAfterSeconds: 90 * 24 * 3600 })

/** An event as the code that raises it describes it; id and time are filled in. */
export type AuditEventInput = Omit<
  AuditEvent,
  'eventId' | 'at' | 'tenantId' | 'workspaceId' | 'ip' | 'userAgent' | 'before' | 'after'
> &
  Partial<Pick<AuditEvent, 'tenantId' | 'workspaceId' | 'ip' | 'userAgent' | 'before' | 'after'>>

export interface AuditLogOptions {
  connection: Connection
  log: FastifyBaseLogger
  /** Where events go; while unset they wait in the outbox. */
  workspaceServiceUrl: string | undefined
  serviceToken: () => Promise<string>
  batchSize?: number
  /** How often the outbox is drained. */
  intervalMs?: number
}

export interface AuditLog {
  /** Logs the event and stores it for delivery; it is never dropped. */
  record(input: AuditEventInput): Promise<AuditEvent>
  /** Delivers one batch of due events; answers how many were delivered. */
  deliverDue(): Promise<number>
  start(): void
  stop(): Promise<void>
}

const MAX_BACKOFF_MS = 5 * 60_000
/** The `nextAttemptAt` of an event the workspace-service refused as invalid. */
const PARKED = new Date('9999-12-31T00:00:00Z')

/**
 * Audit events through a transactional outbox: written to MongoDB with the change they describe,
 * then delivered in batches to the workspace-service's `POST /internal/v1/audit`, which is
 * idempotent by `eventId`, so a retry after a lost answer never duplicates an event.
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  const outbox = options.connection.model<OutboxDocument>('AuditOutbox', outboxSchema)
  const batchSize = options.batchSize ?? 100
  let timer: NodeJS.Timeout | null = null
  let draining: Promise<number> | null = null

  /** Posts events; 'rejected' means the workspace-service refused them as invalid (a 4xx). */
  async function post(entries: OutboxDocument[]): Promise<'delivered' | 'rejected'> {
    const url = new URL('/internal/v1/audit', options.workspaceServiceUrl)
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await options.serviceToken()}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ events: entries.map((entry) => entry.event) }),
      signal: AbortSignal.timeout(10_000),
    })
    await response.body?.cancel()
    if (response.ok) return 'delivered'
    if ([400, 413, 422].includes(response.status)) return 'rejected'
    throw new Error(`the workspace-service answered ${response.status}`)
  }

  async function deliverBatch(): Promise<number> {
    if (options.workspaceServiceUrl === undefined) return 0
    const now = new Date()
    const due = await outbox
      .find({ nextAttemptAt: { $lte: now } })
      .sort({ createdAt: 1 })
      .limit(batchSize)
      .lean()
    if (due.length === 0) return 0
    try {
      const outcome = await post(due)
      if (outcome === 'delivered') {
        await outbox.deleteMany({ _id: { $in: due.map((entry) => entry._id) } })
        return due.length
      }
      // One bad event must not hold back the others: they go one by one, and an event refused
      // on its own is parked (kept for an operator, never retried) instead of blocking the queue.
      let delivered = 0
      for (const entry of due) {
        if ((await post([entry])) === 'delivered') {
          await outbox.deleteOne({ _id: entry._id })
          delivered++
          continue
        }
        options.log.error(
          { eventId: entry._id },
          'audit event refused by the workspace-service; parked',
        )
        await outbox.updateOne({ _id: entry._id }, { nextAttemptAt: PARKED, $inc: { attempts: 1 } })
      }
      return delivered
    } catch (error) {
      const attempts = Math.max(...due.map((entry) => entry.attempts)) + 1
      const backoffMs = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(attempts, 20))
      await outbox.updateMany(
        { _id: { $in: due.map((entry) => entry._id) }, nextAttemptAt: { $ne: PARKED } },
        { $inc: { attempts: 1 }, nextAttemptAt: new Date(Date.now() + backoffMs) },
      )
      options.log.warn(
        { err: error, events: due.length, attempts },
        'audit delivery failed; will retry',
      )
      return 0
    }
  }

  async function drain() {
    let total = 0
    for (;;) {
      const delivered = await deliverBatch()
      total += delivered
      if (delivered < batchSize) return total
    }
  }

  return {
    async record(input) {
      const event = AuditEventSchema.parse({
        tenantId: null,
        workspaceId: null,
        ip: null,
        userAgent: null,
        before: null,
        after: null,
        ...input,
        eventId: randomUUID(),
        at: new Date().toISOString(),
      })
      options.log.info({ audit: event }, event.action)
      const at = new Date()
      await outbox.create({
        _id: event.eventId,
        event,
        createdAt: at,
        attempts: 0,
        nextAttemptAt: at,
      })
      return event
    },
    async deliverDue() {
      draining ??= drain().finally(() => {
        draining = null
      })
      return draining
    },
    start() {
      if (timer !== null || options.workspaceServiceUrl === undefined) return
      timer = setInterval(() => {
        this.deliverDue().catch((error: unknown) =>
          options.log.error({ err: error }, 'audit outbox drain failed'),
        )
      }, options.intervalMs ?? 2_000)
      timer.unref()
    },
    async stop() {
      if (timer !== null) clearInterval(timer)
      timer = null
      await draining?.catch(() => undefined)
    },
  }
}
