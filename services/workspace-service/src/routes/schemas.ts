import { TenantRoleSchema, WorkspaceRoleSchema } from '@platform/shared-types'
import { z } from 'zod'

/** Response shapes more than one route file answers with. */
export const isoTime = z.iso.datetime({ offset: true })

export const idParam = z.string().min(1).max(64)

export const TenantViewSchema = z.object({
  id: z.string(),
  name: z.string(),
  timeZone: z.string(),
  branding: z.object({
    displayName: z.string().nullable(),
    logoUrl: z.string().nullable(),
    accentColor: z.string().nullable(),
  }),
  limits: z.object({ monthlyTokens: z.number().nullable() }),
  allowedEmailDomains: z.array(z.string()),
  auditRetentionDays: z.number().nullable(),
  createdAt: isoTime,
  updatedAt: isoTime,
  role: TenantRoleSchema,
})

export const WorkspaceViewSchema = z.object({
  id: z.string(),
  tenantId: z.string(),
  name: z.string(),
  role: WorkspaceRoleSchema,
})

export const MemberViewSchema = z.object({
  userId: z.string(),
  email: z.string(),
  name: z.string(),
  role: WorkspaceRoleSchema,
  addedAt: isoTime,
})

export const AuditItemSchema = z.object({
  id: z.string(),
  at: isoTime,
  action: z.string(),
  actor: z.object({ type: z.string(), id: z.string().nullable() }),
  target: z.object({ type: z.string(), id: z.string().nullable() }),
  before: z.record(z.string(), z.unknown()).nullable(),
  after: z.record(z.string(), z.unknown()).nullable(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
})

export const pageSchema = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() })

/** A display name: trimmed, 1–100 characters, no control characters. */
export const DisplayNameSchema = z
  .string()
  .trim()
  .min(1)
  .max(100)
  .regex(/^[^\p{Cc}\p{Cf}]*$/u, 'must not contain control or format characters')
