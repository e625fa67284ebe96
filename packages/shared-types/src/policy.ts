import { z } from 'zod'

/** A provider name as configured in `LLM_PROVIDERS` (API.md §6). */
export const PROVIDER_NAME_PATTERN = /^[a-z][a-z0-9-]*$/
/** An MCP server name as configured in `MCP_SERVERS`. */
export const MCP_SERVER_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]*$/

/**
 * `<provider>:<model>`, split on the first colon (model ids may contain colons); `*` matches any
 * run of characters on either side.
 */
export const ModelPatternSchema = z
  .string()
  .max(200)
  .regex(
    /^[a-z0-9*][a-z0-9*-]*:[^\s]+$/,
    'must be <provider>:<model>, e.g. oai:gpt-4o-mini or claude:claude-*',
  )
export type ModelPattern = z.infer<typeof ModelPatternSchema>

export const McpServerNameSchema = z
  .string()
  .max(64)
  .regex(MCP_SERVER_NAME_PATTERN, 'must be lowercase letters, digits, - or _')

/** A tool name, or a pattern over tool names with `*`. */
export const ToolPatternSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_*.-]+$/, 'must be a tool name or a pattern with *')

const limit = z.number().int().nonnegative().nullable()

/** Budgets and rate limits; `null` means no limit (API.md §4). */
export const QuotaSchema = z.strictObject({
  monthlyTokens: limit,
  monthlyCostUsd: z.number().nonnegative().nullable(),
  memberMonthlyTokens: limit,
  rpm: limit,
  memberRpm: limit,
  tpm: limit,
  memberTpm: limit,
  maxConcurrentStreams: limit,
  overage: z.enum(['block', 'allow']),
})
export type Quota = z.infer<typeof QuotaSchema>

const policyShape = {
  models: z.strictObject({ allow: z.array(ModelPatternSchema).max(200) }),
  mcp: z.strictObject({
    servers: z.array(McpServerNameSchema).max(100),
    tools: z.record(McpServerNameSchema, z.array(ToolPatternSchema).max(200)).default({}),
  }),
  params: z
    .strictObject({
      maxOutputTokens: z.number().int().positive().nullable().default(null),
      temperature: z
        .strictObject({ max: z.number().min(0).max(2) })
        .nullable()
        .default(null),
    })
    .default({ maxOutputTokens: null, temperature: null }),
  systemPrompt: z.string().max(20_000).nullable().default(null),
  quota: QuotaSchema,
}

/** A workspace's policy as admins write it (`PUT /v1/workspaces/:wid/policy`). */
export const WorkspacePolicySchema = z.strictObject(policyShape).superRefine((policy, ctx) => {
  for (const server of Object.keys(policy.mcp.tools)) {
    if (!policy.mcp.servers.includes(server)) {
      ctx.addIssue({
        code: 'custom',
        path: ['mcp', 'tools', server],
        message: `narrows server ${server}, which mcp.servers does not allow`,
      })
    }
  }
})
export type WorkspacePolicy = z.infer<typeof WorkspacePolicySchema>

/** An IANA time zone name the runtime knows (`Europe/Berlin`, `UTC`); offsets are not zones. */
export const TimeZoneSchema = z
  .string()
  .max(64)
  .regex(/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/, 'must be an IANA time zone')
  .refine((name) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: name })
      return true
    } catch {
      return false
    }
  }, 'is not a time zone this server knows')

/**
 * What the gateway enforces for one workspace (`GET /internal/v1/workspaces/:wid/effective-policy`):
 * its policy with the tenant's caps applied, the policy version (compare with
 * `PolicyInvalidation.version`) and the time zone its monthly budgets reset in.
 */
export const EffectivePolicySchema = z.object({
  ...policyShape,
  workspaceId: z.string().min(1),
  workspaceName: z.string(),
  tenantId: z.string().min(1),
  timeZone: z.string().min(1),
  version: z.number().int().positive(),
})
export type EffectivePolicy = z.infer<typeof EffectivePolicySchema>

/**
 * The message on `POLICY_INVALIDATE_CHANNEL` after a workspace's effective policy may have
 * changed: its own policy, its tenant's caps or time zone, or the workspace was deleted or
 * restored. Every message means "drop the cached copy"; `version` is the workspace's policy
 * version at the time, which tenant-level changes and deletions leave as it was.
 */
export const PolicyInvalidationSchema = z.object({
  workspaceId: z.string().min(1),
  version: z.number().int().nonnegative(),
})
export type PolicyInvalidation = z.infer<typeof PolicyInvalidationSchema>
