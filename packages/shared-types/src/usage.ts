import { z } from 'zod'
import { McpServerNameSchema, PROVIDER_NAME_PATTERN } from './policy.js'

const tokens = z.number().int().nonnegative().max(1_000_000_000)

/**
 * One settled model or MCP call, as the gateway appends it to the workspace-service's ledger
 * (`POST /internal/v1/usage`, API.md §7). `callId` makes the append idempotent: a retried batch
 * never counts a call twice. A model call names its provider and model, an MCP call its server
 * and tool.
 */
export const UsageRecordSchema = z
  .strictObject({
    callId: z.string().min(1).max(128),
    kind: z.enum(['model', 'mcp']),
    tenantId: z.string().min(1).max(64),
    workspaceId: z.string().min(1).max(64),
    userId: z.string().min(1).max(64),
    provider: z.string().regex(PROVIDER_NAME_PATTERN).max(64).optional(),
    model: z.string().min(1).max(200).optional(),
    server: McpServerNameSchema.optional(),
    tool: z.string().min(1).max(128).optional(),
    inputTokens: tokens,
    outputTokens: tokens,
    costUsd: z.number().nonnegative().max(1_000_000),
    durationMs: z.number().int().nonnegative(),
    startedAt: z.iso.datetime({ offset: true }),
    endedAt: z.iso.datetime({ offset: true }),
    status: z.enum(['completed', 'cancelled', 'failed']),
  })
  .superRefine((record, ctx) => {
    const needs: Array<keyof typeof record> =
      record.kind === 'model' ? ['provider', 'model'] : ['server', 'tool']
    for (const field of needs)
      if (record[field] === undefined)
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `is required for a ${record.kind} call`,
        })
    const forbidden: Array<keyof typeof record> =
      record.kind === 'model' ? ['server', 'tool'] : ['provider', 'model']
    for (const field of forbidden)
      if (record[field] !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `is not part of a ${record.kind} call`,
        })
    if (Date.parse(record.endedAt) < Date.parse(record.startedAt))
      ctx.addIssue({ code: 'custom', path: ['endedAt'], message: 'is before startedAt' })
  })
export type UsageRecord = z.infer<typeof UsageRecordSchema>

/** The body of `POST /internal/v1/usage`. */
export const UsageBatchSchema = z.strictObject({
  records: z.array(UsageRecordSchema).min(1).max(1000),
})
export type UsageBatch = z.infer<typeof UsageBatchSchema>

/** The answer to a ledger append: how many records were new, how many were already there. */
export const UsageAppendResponseSchema = z.object({
  appended: z.number().int().nonnegative(),
  duplicates: z.number().int().nonnegative(),
})
export type UsageAppendResponse = z.infer<typeof UsageAppendResponseSchema>

/**
 * One in-flight reservation against a workspace's monthly token budget, as the gateway stores it
 * under `quotaReservationsKey` (field: the call id). The reservation counts until it is settled
 * (the field is deleted) or `expiresAt` (epoch ms) passes: an abandoned call stops counting.
 */
export const QuotaReservationSchema = z.object({
  userId: z.string().min(1),
  tokens: z.number().int().nonnegative(),
  expiresAt: z.number().int().positive(),
})
export type QuotaReservation = z.infer<typeof QuotaReservationSchema>

/** Where one budget stands this month: `remaining` is `null` when there is no limit. */
export const TokenBudgetSchema = z.object({
  limit: z.number().nullable(),
  used: z.number(),
  reserved: z.number(),
  remaining: z.number().nullable(),
})
export type TokenBudget = z.infer<typeof TokenBudgetSchema>

/**
 * A workspace's and one member's standing against this month's budgets, the month being the
 * tenant's calendar month: `GET /v1/workspaces/:wid/quota` for the member asking, and
 * `GET /internal/v1/workspaces/:wid/quota?userId=` for the gateway's check before a chat starts.
 */
export const QuotaStatusSchema = z.object({
  monthlyTokens: TokenBudgetSchema,
  monthlyCostUsd: z.object({ limit: z.number().nullable(), used: z.number() }),
  periodStart: z.iso.datetime({ offset: true }),
  resetAt: z.iso.datetime({ offset: true }),
  member: TokenBudgetSchema,
})
export type QuotaStatus = z.infer<typeof QuotaStatusSchema>
