import { readFileSync } from 'node:fs'
import { MCP_SERVER_NAME_PATTERN, PROVIDER_NAME_PATTERN } from '@platform/shared-types'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { isBuiltInEndpoint } from './allowlist.js'

const httpUrl = z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' })

/** Dollars per million tokens, as providers publish their prices. */
const PriceSchema = z.strictObject({
  inputPerMTok: z.number().nonnegative(),
  outputPerMTok: z.number().nonnegative(),
})

/**
 * One model provider (API.md §9 `LLM_PROVIDERS`): any OpenAI-compatible chat completions API.
 * Anthropic is configured through its own OpenAI-compatible endpoint
 * (`https://api.anthropic.com/v1/`), Ollama through `http://host:11434/v1`.
 */
export const LlmProviderSchema = z
  .strictObject({
    name: z
      .string()
      .regex(PROVIDER_NAME_PATTERN, 'must match ^[a-z][a-z0-9-]*$')
      .refine(
        (name) => !isBuiltInEndpoint(name),
        'is one of LibreChat’s built-in endpoint names (LibreChat refuses to start with it); use e.g. oai, claude',
      ),
    baseURL: httpUrl,
    /** Sent as `Authorization: Bearer`; empty for providers that take none (a local Ollama). */
    apiKey: z.string().default(''),
    /** The models the provider offers this deployment; workspaces allow subsets of them. */
    models: z.array(z.string().min(1).max(256)).min(1).max(1000),
    /** Per model; a model without a price costs 0 against `monthlyCostUsd`. */
    prices: z.record(z.string(), PriceSchema).default({}),
    /** Extra headers every call to this provider carries (an organisation id, a version). */
    headers: z.record(z.string(), z.string()).default({}),
  })
  .superRefine((provider, ctx) => {
    for (const model of Object.keys(provider.prices))
      if (!provider.models.includes(model))
        ctx.addIssue({
          code: 'custom',
          path: ['prices', model],
          message: `prices model ${model}, which models does not list`,
        })
  })
export type LlmProvider = z.infer<typeof LlmProviderSchema>
export type ModelPrice = z.infer<typeof PriceSchema>

/** One upstream MCP server (API.md §9 `MCP_SERVERS`), spoken to over Streamable HTTP. */
export const McpServerSchema = z.strictObject({
  name: z
    .string()
    .max(64)
    .regex(MCP_SERVER_NAME_PATTERN, 'must be lowercase letters, digits, - or _'),
  url: httpUrl,
  /** Headers every connection to this server carries (its own credentials). */
  headers: z.record(z.string(), z.string()).default({}),
})
export type McpServer = z.infer<typeof McpServerSchema>

const uniqueNames = (what: string) => (entries: { name: string }[], ctx: z.RefinementCtx) => {
  const seen = new Set<string>()
  entries.forEach((entry, index) => {
    const key = entry.name.toLowerCase()
    if (seen.has(key))
      ctx.addIssue({
        code: 'custom',
        path: [index, 'name'],
        message: `${what} ${entry.name} is listed twice`,
      })
    seen.add(key)
  })
}

export const LlmProvidersSchema = z
  .array(LlmProviderSchema)
  .max(100)
  .superRefine(uniqueNames('provider'))
export const McpServersSchema = z.array(McpServerSchema).max(100).superRefine(uniqueNames('server'))

/**
 * A setting given inline as JSON or as the path of a JSON or YAML file (API.md §9), read once
 * when the configuration is loaded. Unset means an empty list.
 */
export const jsonOrFileEnv = <Schema extends z.ZodType>(schema: Schema) =>
  z.preprocess((value, ctx) => {
    if (value === undefined || value === '') return []
    if (typeof value !== 'string') return value
    const text = value.trim()
    try {
      if (text.startsWith('[') || text.startsWith('{')) return JSON.parse(text)
      const content = readFileSync(text, 'utf8')
      return /\.ya?ml$/i.test(text) ? parseYaml(content) : JSON.parse(content)
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: `must be JSON or the path of a readable JSON or YAML file (${(error as Error).name})`,
      })
      return z.NEVER
    }
  }, schema)
