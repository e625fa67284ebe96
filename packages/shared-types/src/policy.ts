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

/** A workspace's policy as admins write it (`PUT /v1/workspaces/:wid/policy`). */
export const WorkspacePolicySchema = z
  .strictObject({
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
  })
  .superRefine((policy, ctx) => {
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
