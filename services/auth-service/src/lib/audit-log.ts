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

  async function deliverBatch(): Promise<number> {
    if (options.workspaceServiceUrl === undefined) return 0
    const now = new Date()
    const due = await outbox
      .find({ nextAttemptAt: { $lte: now } })
      .sort({ createdAt: 1 })
      .limit(batchSize)
      .lean()
    if (due.length === 0) return 0
    const ids = due.map((entry) => entry._id)
    try {
      const response = await fetch(new URL('/internal/v1/audit', options.workspaceServiceUrl), {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await options.serviceToken()}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ events: due.map((entry) => entry.event) }),
        signal: AbortSignal.timeout(10_000),
      })
      await response.body?.cancel()
      if (!response.ok) throw new Error(`the workspace-service answered ${response.status}`)
    } catch (error) {
      const attempts = Math.max(...due.map((entry) => entry.attempts)) + 1
      const backoffMs = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(attempts, 20))
      await outbox.updateMany(
        { _id: { $in: ids } },
        { $inc: { attempts: 1 }, nextAttemptAt: new Date(Date.now() + backoffMs) },
      )
      options.log.warn(
        { err: error, events: ids.length, attempts },
        'audit delivery failed; will retry',
      )
      return 0
    }
    await outbox.deleteMany({ _id: { $in: ids } })
    return ids.length
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
