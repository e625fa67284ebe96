import { type EffectivePolicy, PROVIDER_NAME_PATTERN } from '@platform/shared-types'

/** LibreChat's persisted/ephemeral agent endpoint: not a model provider, never matched by patterns. */
export const AGENTS_ENDPOINT = 'agents'

/**
 * LibreChat's built-in endpoint names (`EModelEndpoint` in librechat-data-provider, v0.8.1 and
 * v0.8.7), lowercased. A model call through any of them would bypass the platform's egress, so
 * none is ever allowed, whatever the patterns say. LibreChat compares endpoint names
 * case-sensitively, but `*:*` must not reach `openAI` either, hence the case-insensitive set.
 */
const BUILT_IN_ENDPOINTS = new Set([
  'azureopenai',
  'openai',
  'google',
  'anthropic',
  'assistants',
  'azureassistants',
  'agents',
  'custom',
  'bedrock',
  'chatgptbrowser',
  'gptplugins',
])

/** Whether `name` is one of LibreChat's built-in endpoints (`agents` included), in any case. */
export function isBuiltInEndpoint(name: string): boolean {
  return BUILT_IN_ENDPOINTS.has(name.toLowerCase())
}

/** Longer ids than this are refused before any matching; real model ids are far shorter. */
export const MAX_MODEL_ID_LENGTH = 256
/** Longer tool names than this are refused before any matching. */
export const MAX_TOOL_NAME_LENGTH = 256

// Whitespace, control and format characters (zero-width, bidi overrides) never occur in a real
// model or tool id; refusing them keeps `*` from matching look-alike or padded variants.
const INVISIBLE_OR_SPACE = /[\s\p{C}]/u

/**
 * Compiles a pattern where `*` matches any run of characters (the empty one included) and every
 * other character is literal. Matching is anchored and needs no backtracking: the literal pieces
 * between stars are found left to right with `indexOf`, so the cost is bounded by
 * pieces × text length, never exponential (unlike a `^…$` regex with several `.*`).
 */
export function compileWildcard(pattern: string): (text: string) => boolean {
  const pieces = pattern.split('*')
  if (pieces.length === 1) return (text) => text === pattern
  const head = pieces[0] ?? ''
  const tail = pieces[pieces.length - 1] ?? ''
  const middle = pieces.slice(1, -1).filter((piece) => piece.length > 0)
  const minLength = head.length + tail.length + middle.reduce((sum, piece) => sum + piece.length, 0)
  return (text) => {
    if (text.length < minLength || !text.startsWith(head) || !text.endsWith(tail)) return false
    const end = text.length - tail.length
    let position = head.length
    for (const piece of middle) {
      const found = text.indexOf(piece, position)
      if (found === -1 || found + piece.length > end) return false
      position = found + piece.length
    }
    return true
  }
}

/** The parts of an effective policy the ingress rules read. */
export type IngressPolicy = Pick<EffectivePolicy, 'workspaceName' | 'models' | 'mcp' | 'params'>

export interface CompileOptions {
  /**
   * The provider names this deployment configures (`LLM_PROVIDERS`). When given, no other
   * endpoint name is ever allowed, even if a pattern such as `*:*` would match it.
   */
  providers?: readonly string[]
}

/** A workspace policy compiled once for fast, allocation-free checks; safe to cache and share. */
export interface PolicyMatcher {
  readonly workspaceName: string
  /** `params.maxOutputTokens`, or `null` for no cap. */
  readonly maxOutputTokens: number | null
  /** `params.temperature.max`, or `null` for no cap. */
  readonly maxTemperature: number | null
  /** Whether `<provider>:<model>` is allowed; anything but two plain strings is not. */
  isModelAllowed(provider: unknown, model: unknown): boolean
  /** Whether some pattern could allow a model of this provider (an endpoint worth showing). */
  isProviderInPlay(provider: unknown): boolean
  /** The entries of `models` allowed for `provider`, in their order; non-strings are dropped. */
  allowedModelsOf(provider: unknown, models: readonly unknown[]): string[]
  isServerAllowed(server: unknown): boolean
  /** Whether `tool` of `server` is allowed: the server is, and `mcp.tools.<server>` (if any) matches. */
  isToolAllowed(server: unknown, tool: unknown): boolean
}

interface CompiledModelPattern {
  provider: (provider: string) => boolean
  model: (model: string) => boolean
}

const isPlainId = (value: unknown, maxLength: number): value is string =>
  typeof value === 'string' &&
  value.length > 0 &&
  value.length <= maxLength &&
  !INVISIBLE_OR_SPACE.test(value)

/** Compiles a workspace policy into a {@link PolicyMatcher}. Malformed patterns never match. */
export function compilePolicy(policy: IngressPolicy, options: CompileOptions = {}): PolicyMatcher {
  const exactModels = new Map<string, Set<string>>()
  const wildcardModels: CompiledModelPattern[] = []
  for (const pattern of policy.models.allow) {
    if (typeof pattern !== 'string') continue
    const colon = pattern.indexOf(':')
    if (colon <= 0 || colon === pattern.length - 1) continue
    const providerPart = pattern.slice(0, colon)
    const modelPart = pattern.slice(colon + 1)
    if (!providerPart.includes('*') && !modelPart.includes('*')) {
      const models = exactModels.get(providerPart) ?? new Set<string>()
      models.add(modelPart)
      exactModels.set(providerPart, models)
    } else {
      wildcardModels.push({
        provider: compileWildcard(providerPart),
        model: compileWildcard(modelPart),
      })
    }
  }

  const servers = new Set(policy.mcp.servers.filter((server) => typeof server === 'string'))
  const toolRules = new Map<string, ((tool: string) => boolean)[]>()
  for (const [server, patterns] of Object.entries(policy.mcp.tools)) {
    if (!Array.isArray(patterns)) continue
    toolRules.set(
      server,
      patterns.filter((pattern) => typeof pattern === 'string').map(compileWildcard),
    )
  }

  const configuredProviders = options.providers ? new Set(options.providers) : undefined
  const isProvider = (provider: unknown): provider is string =>
    typeof provider === 'string' &&
    PROVIDER_NAME_PATTERN.test(provider) &&
    !isBuiltInEndpoint(provider) &&
    (configuredProviders === undefined || configuredProviders.has(provider))

  const modelAllowed = (provider: string, model: string): boolean => {
    if (exactModels.get(provider)?.has(model)) return true
    return wildcardModels.some((pattern) => pattern.provider(provider) && pattern.model(model))
  }

  const serverAllowed = (server: unknown): server is string =>
    typeof server === 'string' && servers.has(server)

  return Object.freeze({
    workspaceName: policy.workspaceName,
    maxOutputTokens: policy.params.maxOutputTokens,
    maxTemperature: policy.params.temperature?.max ?? null,
    isModelAllowed: (provider: unknown, model: unknown) =>
      isProvider(provider) &&
      isPlainId(model, MAX_MODEL_ID_LENGTH) &&
      modelAllowed(provider, model),
    isProviderInPlay: (provider: unknown) =>
      isProvider(provider) &&
      (exactModels.has(provider) || wildcardModels.some((pattern) => pattern.provider(provider))),
    allowedModelsOf: (provider: unknown, models: readonly unknown[]) => {
      if (!isProvider(provider)) return []
      return models.filter(
        (model): model is string =>
          isPlainId(model, MAX_MODEL_ID_LENGTH) && modelAllowed(provider, model),
      )
    },
    isServerAllowed: serverAllowed,
    isToolAllowed: (server: unknown, tool: unknown) => {
      if (!serverAllowed(server) || !isPlainId(tool, MAX_TOOL_NAME_LENGTH)) return false
      const rules = toolRules.get(server)
      return rules === undefined || rules.some((matches) => matches(tool))
    },
  })
}

const compiledPolicies = new WeakMap<IngressPolicy, PolicyMatcher>()

/**
 * The policy's matcher, compiled on first use: the policy cache hands out one object per
 * workspace until the policy changes, so each version is compiled once.
 */
export function matcherFor(policy: IngressPolicy): PolicyMatcher {
  let matcher = compiledPolicies.get(policy)
  if (matcher === undefined) {
    matcher = compilePolicy(policy)
    compiledPolicies.set(policy, matcher)
  }
  return matcher
}

/** Why the gateway refuses a request at its door; the caller throws the matching error. */
export type PolicyRefusal =
  | {
      ok: false
      code: 'GW_MODEL_NOT_ALLOWED' | 'GW_MCP_NOT_ALLOWED'
      /** What is refused, as the `%s` of `ModelNotAllowed` / `McpNotAllowed` expects it. */
      subject: string
      message: string
    }
  | { ok: false; code: 'GW_VALIDATION'; message: string }

const MAX_SHOWN_LENGTH = 100

/** A client-supplied value as it may appear in a message: printable and short. */
export function showValue(value: unknown): string {
  if (value === undefined) return '(none)'
  if (typeof value !== 'string') {
    if (value === null || typeof value === 'number' || typeof value === 'boolean') {
      return String(value)
    }
    return Array.isArray(value) ? '(array)' : `(${typeof value})`
  }
  const printable = value.replace(/[\p{C}]/gu, '?')
  return printable.length > MAX_SHOWN_LENGTH
    ? `${printable.slice(0, MAX_SHOWN_LENGTH)}…`
    : printable
}

export function modelNotAllowed(
  matcher: PolicyMatcher,
  provider: unknown,
  model: unknown,
): PolicyRefusal {
  const subject = `${showValue(provider)}:${showValue(model)}`
  return {
    ok: false,
    code: 'GW_MODEL_NOT_ALLOWED',
    subject,
    message: `Model ${subject} is not allowed in workspace ${matcher.workspaceName}`,
  }
}

export function mcpServerNotAllowed(matcher: PolicyMatcher, server: unknown): PolicyRefusal {
  const subject = `MCP server ${showValue(server)}`
  return {
    ok: false,
    code: 'GW_MCP_NOT_ALLOWED',
    subject,
    message: `${subject} is not allowed in workspace ${matcher.workspaceName}`,
  }
}

export function mcpToolNotAllowed(
  matcher: PolicyMatcher,
  server: unknown,
  tool: unknown,
): PolicyRefusal {
  const subject = `MCP tool ${showValue(tool)} of server ${showValue(server)}`
  return {
    ok: false,
    code: 'GW_MCP_NOT_ALLOWED',
    subject,
    message: `${subject} is not allowed in workspace ${matcher.workspaceName}`,
  }
}

export function invalidRequest(message: string): PolicyRefusal {
  return { ok: false, code: 'GW_VALIDATION', message }
}

/** Reads an own property only, so inherited or `__proto__`-planted values are never consulted. */
export function ownField(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null) return undefined
  return Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined
}

/** A JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
