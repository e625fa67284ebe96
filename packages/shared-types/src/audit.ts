import { z } from 'zod'

/** Who did something: a signed-in user, a service acting on its own, or nobody known yet. */
export const AuditActorSchema = z.object({
  type: z.enum(['user', 'service', 'anonymous']),
  id: z.string().max(128).nullable(),
})
export type AuditActor = z.infer<typeof AuditActorSchema>

/** What an event is about (`{type: 'session', id: sid}`). */
export const AuditTargetSchema = z.object({
  type: z.string().min(1).max(64),
  id: z.string().max(256).nullable(),
})
export type AuditTarget = z.infer<typeof AuditTargetSchema>

/**
 * One audit event as services deliver it to the workspace-service's `POST /internal/v1/audit`
 * (idempotent by `eventId`). `action` is `<service area>.<what happened>`, e.g.
 * `auth.login.failed`. Tenant and workspace are present when the event belongs to one.
 */
export const AuditEventSchema = z.strictObject({
  eventId: z.string().min(1).max(128),
  at: z.iso.datetime({ offset: true }),
  action: z.string().regex(/^[a-z]+(\.[a-z_]+)+$/),
  actor: AuditActorSchema,
  target: AuditTargetSchema,
  tenantId: z.string().max(64).nullable(),
  workspaceId: z.string().max(64).nullable(),
  ip: z.string().max(64).nullable(),
  userAgent: z.string().max(512).nullable(),
  before: z.record(z.string(), z.unknown()).nullable(),
  after: z.record(z.string(), z.unknown()).nullable(),
})
export type AuditEvent = z.infer<typeof AuditEventSchema>

/** The body of `POST /internal/v1/audit`. */
export const AuditBatchSchema = z.strictObject({
  events: z.array(AuditEventSchema).min(1).max(500),
})
export type AuditBatch = z.infer<typeof AuditBatchSchema>
