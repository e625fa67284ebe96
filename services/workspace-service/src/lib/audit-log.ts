import { randomUUID } from 'node:crypto'
import { type ClientContext, clientOf, userOf } from '@platform/service-kit'
import type { AuditEvent, AuditTarget } from '@platform/shared-types'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { ClientSession, QueryFilter } from 'mongoose'
import { type CursorPosition, decodeCursor, pageOf } from './cursor.js'
import type { AuditDocument, WorkspaceModels } from './models.js'

const DAY_MS = 24 * 3600 * 1000

/** Who changed something, from where: the signed-in user and the client the gateway forwarded. */
export interface Actor {
  userId: string
  client: ClientContext
}

/** A change this service makes, described for the audit log. */
export interface Change {
  action: string
  target: AuditTarget
  tenantId: string
  workspaceId: string | null
  before?: Record<string, unknown> | null
  after?: Record<string, unknown> | null
}

/** The events a list reads: one workspace's, or a tenant's own (not its workspaces'). */
export type AuditScope = { workspaceId: string } | { tenantId: string }

export interface AuditLogOptions {
  models: WorkspaceModels
  log: FastifyBaseLogger
  defaultRetentionDays: number
}

export interface AuditPageItem {
  id: string
  at: Date
  action: string
  actor: AuditDocument['actor']
  target: AuditDocument['target']
  before: AuditDocument['before']
  after: AuditDocument['after']
  ip: string | null
  userAgent: string | null
}

/**
 * The audit log: changes this service makes are written in the transaction that makes them;
 * events from other services arrive in batches and are stored once per `eventId`.
 */
export function createAuditLog(options: AuditLogOptions) {
  const { Audit, Tenant } = options.models

  async function retentionDays(tenantIds: Array<string | null>) {
    const ids = [...new Set(tenantIds.filter((id): id is string => id !== null))]
    const tenants = await Tenant.find({ _id: { $in: ids } }, { auditRetentionDays: 1 }).lean()
    const days = new Map(tenants.map((tenant) => [tenant._id, tenant.auditRetentionDays]))
    return (tenantId: string | null) =>
      (tenantId === null ? null : days.get(tenantId)) ?? options.defaultRetentionDays
  }

  /** Records a change made by `actor`, inside the caller's transaction. */
  async function record(actor: Actor | 'service', change: Change, session: ClientSession) {
    const at = new Date()
    const days = (await retentionDays([change.tenantId]))(change.tenantId)
    const document: AuditDocument = {
      _id: randomUUID(),
      at,
      action: change.action,
      actor:
        actor === 'service'
          ? { type: 'service', id: 'workspace-service' }
          : { type: 'user', id: actor.userId },
      target: change.target,
      tenantId: change.tenantId,
      workspaceId: change.workspaceId,
      ip: actor === 'service' ? null : actor.client.ip,
      userAgent: actor === 'service' ? null : actor.client.userAgent,
      before: change.before ?? null,
      after: change.after ?? null,
      receivedAt: at,
      expiresAt: new Date(at.getTime() + days * DAY_MS),
    }
    await Audit.create([document], { session })
    options.log.info(
      { audit: { action: document.action, target: document.target, actor: document.actor } },
      'audit event',
    )
  }

  /** Stores events delivered by other services; an `eventId` already stored is left as it is. */
  async function ingest(events: AuditEvent[]) {
    const receivedAt = new Date()
    const days = await retentionDays(events.map((event) => event.tenantId))
    const result = await Audit.bulkWrite(
      events.map((event) => {
        const at = new Date(event.at)
        const { eventId, ...rest } = event
        return {
          updateOne: {
            filter: { _id: eventId },
            update: {
              $setOnInsert: {
                ...rest,
                at,
                receivedAt,
                expiresAt: new Date(at.getTime() + days(event.tenantId) * DAY_MS),
              },
            },
            upsert: true,
          },
        }
      }),
      { ordered: false },
    )
    return { stored: result.upsertedCount, duplicates: events.length - result.upsertedCount }
  }

  /** The filter and order of one page of a scope's events, newest first. */
  function pageQuery(scope: AuditScope, after: CursorPosition | null) {
    const filter: QueryFilter<AuditDocument> =
      'workspaceId' in scope
        ? { workspaceId: scope.workspaceId }
        : { tenantId: scope.tenantId, workspaceId: null }
    if (after !== null) {
      const at = new Date(after[0])
      filter.$or = [{ at: { $lt: at } }, { at, _id: { $lt: after[1] } }]
    }
    return Audit.find(filter).sort({ at: -1, _id: -1 })
  }

  async function list(scope: AuditScope, limit: number, cursor: string | undefined) {
    const rows = await pageQuery(scope, decodeCursor(cursor))
      .limit(limit + 1)
      .lean()
    const page = pageOf(rows, limit, (row) => [row.at.getTime(), row._id])
    return {
      items: page.items.map(
        (row): AuditPageItem => ({
          id: row._id,
          at: row.at,
          action: row.action,
          actor: row.actor,
          target: row.target,
          before: row.before,
          after: row.after,
          ip: row.ip,
          userAgent: row.userAgent,
        }),
      ),
      nextCursor: page.nextCursor,
    }
  }

  /** Re-dates a tenant's events for a new retention period. */
  async function applyRetention(tenantId: string, days: number | null) {
    const keepMs = (days ?? options.defaultRetentionDays) * DAY_MS
    await Audit.updateMany({ tenantId }, [{ $set: { expiresAt: { $add: ['$at', keepMs] } } }], {
      updatePipeline: true,
    })
  }

  return { record, ingest, pageQuery, list, applyRetention }
}

export type AuditLog = ReturnType<typeof createAuditLog>

/** The signed-in user of a `requireUser` route and the client it came from. */
export const actorOf = (request: FastifyRequest): Actor => ({
  userId: userOf(request).sub,
  client: clientOf(request),
})
