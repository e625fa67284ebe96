import { AGENT_ID_PATTERN } from './agent-check.js'
import {
  AGENTS_ENDPOINT,
  invalidRequest,
  isJsonObject,
  mcpServerNotAllowed,
  modelNotAllowed,
  ownField,
  type PolicyMatcher,
  type PolicyRefusal,
} from './allowlist.js'

export interface ChatRequestContext {
  matcher: PolicyMatcher
  /**
   * LibreChat's `modelSpecs.list` (`[]` when it has none). A request's `spec` brings in its
   * preset's endpoint and model, its `mcpServers` and its `subagents`, whatever the body says.
   */
  modelSpecs: readonly unknown[]
}

export type ChatRequestCheck =
  | {
      ok: true
      /** The body to forward: the client's, with the workspace's parameter caps applied. */
      body: Record<string, unknown>
      /** Saved agents the request runs; load each as the mapped user and check it (agent-check). */
      agentIds: string[]
    }
  | PolicyRefusal

/**
 * LibreChat runs only `body.addedConvo` (one parallel model or agent); deeper copies are dead
 * data, checked all the same, and a chain beyond this depth is refused as malformed.
 */
export const MAX_ADDED_CONVO_DEPTH = 3

/**
 * The output-token fields LibreChat's conversation schema accepts (data-provider `schemas.ts`,
 * v0.8.7): `max_tokens` for openAI/azureOpenAI/custom endpoints, `maxOutputTokens` for
 * anthropic/google (and custom endpoints whose `customParams.defaultParamsEndpoint` is one of
 * them), `maxTokens` for bedrock. All three are number-or-numeric-string (`coerceNumber`), and an
 * added conversation reads all three. `maxContextTokens` is the context window, not an output cap.
 */
const OUTPUT_TOKEN_FIELDS = ['max_tokens', 'maxOutputTokens', 'maxTokens'] as const

function outputTokenFieldFor(endpointType: unknown): (typeof OUTPUT_TOKEN_FIELDS)[number] {
  if (endpointType === 'anthropic' || endpointType === 'google') return 'maxOutputTokens'
  if (endpointType === 'bedrock') return 'maxTokens'
  return 'max_tokens'
}

const NUMERIC_TEXT = /^\s*\d+(\.\d+)?\s*$/

/** Unset as LibreChat's `coerceNumber` reads it: absent, null, or blank text. */
const isUnset = (value: unknown): boolean =>
  value === undefined || value === null || (typeof value === 'string' && value.trim() === '')

/** A non-negative finite number, or a decimal text LibreChat would coerce to one. */
function readTokenCount(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  if (typeof value === 'string' && NUMERIC_TEXT.test(value)) return Number.parseFloat(value)
  return undefined
}

type Step<T> = { ok: true; value: T } | PolicyRefusal

/**
 * Validates and caps one conversation's model parameters. Present output-token fields are capped;
 * when none is present and `setMissing`, the endpoint type's field is set to the cap so the
 * provider's own (possibly larger) default never applies. `temperature` is capped when present.
 */
function applyParamCaps(
  convo: Record<string, unknown>,
  matcher: PolicyMatcher,
  setMissing: boolean,
): Step<Record<string, unknown>> {
  const rewritten: Record<string, unknown> = { ...convo }
  const cap = matcher.maxOutputTokens
  let hasOutputField = false
  for (const field of OUTPUT_TOKEN_FIELDS) {
    const raw = ownField(convo, field)
    if (isUnset(raw)) continue
    const tokens = readTokenCount(raw)
    if (tokens === undefined) return invalidRequest(`${field} must be a non-negative number`)
    hasOutputField = true
    if (cap !== null && tokens > cap) rewritten[field] = cap
  }
  if (cap !== null && !hasOutputField && setMissing) {
    rewritten[outputTokenFieldFor(ownField(convo, 'endpointType'))] = cap
  }

  const temperature = ownField(convo, 'temperature')
  if (temperature !== undefined && temperature !== null) {
    // LibreChat's schema takes a number only; anything else empties the whole parsed body.
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
      return invalidRequest('temperature must be a non-negative number')
    }
    const maxTemperature = matcher.maxTemperature
    if (maxTemperature !== null && temperature > maxTemperature) {
      rewritten.temperature = maxTemperature
    }
  }
  return { ok: true, value: rewritten }
}

function checkServers(
  servers: unknown,
  matcher: PolicyMatcher,
  what: string,
): PolicyRefusal | undefined {
  if (servers === undefined || servers === null) return undefined
  // LibreChat spreads this into a Set: a string would become one server per character.
  if (!Array.isArray(servers)) return invalidRequest(`${what} must be an array of MCP server names`)
  for (const server of servers) {
    if (typeof server !== 'string') {
      return invalidRequest(`${what} must be an array of MCP server names`)
    }
    if (!matcher.isServerAllowed(server)) return mcpServerNotAllowed(matcher, server)
  }
  return undefined
}

function addAgentIds(value: unknown, into: string[]): void {
  if (!Array.isArray(value)) return
  for (const id of value) {
    if (typeof id === 'string' && AGENT_ID_PATTERN.test(id) && !into.includes(id)) into.push(id)
  }
}

/**
 * Checks one model spec (an entry of LibreChat's `modelSpecs.list`): its preset's model (or, for
 * an agents preset, the saved agent it names) and its `mcpServers`. On success, `agentIds` are the
 * saved agents it brings in (preset `agent_id`, `subagents.agent_ids`).
 */
export function checkModelSpec(
  spec: unknown,
  matcher: PolicyMatcher,
): { ok: true; agentIds: string[] } | PolicyRefusal {
  const preset = ownField(spec, 'preset')
  if (!isJsonObject(preset)) return invalidRequest('The model spec has no preset')
  const agentIds: string[] = []
  const endpoint = ownField(preset, 'endpoint')
  if (endpoint === AGENTS_ENDPOINT) {
    addAgentIds([ownField(preset, 'agent_id')], agentIds)
  } else {
    const model = ownField(preset, 'model')
    if (model !== undefined && model !== null && !matcher.isModelAllowed(endpoint, model)) {
      return modelNotAllowed(matcher, endpoint, model)
    }
  }
  const refusal = checkServers(ownField(spec, 'mcpServers'), matcher, 'The model spec mcpServers')
  if (refusal) return refusal
  addAgentIds(ownField(ownField(spec, 'subagents'), 'agent_ids'), agentIds)
  return { ok: true, agentIds }
}

function checkSpecOf(
  convo: Record<string, unknown>,
  ctx: ChatRequestContext,
  agentIds: string[],
): PolicyRefusal | undefined {
  const name = ownField(convo, 'spec')
  if (name === undefined || name === null || name === '') return undefined
  if (typeof name !== 'string') return invalidRequest('spec must be a string')
  // An unknown name runs nothing: LibreChat refuses it (enforced specs) or ignores it.
  const spec = ctx.modelSpecs.find((entry) => ownField(entry, 'name') === name)
  if (spec === undefined) return undefined
  const result = checkModelSpec(spec, ctx.matcher)
  if (!result.ok) return result
  addAgentIds(result.agentIds, agentIds)
  return undefined
}

/**
 * Which agent a conversation runs. The primary one runs a saved agent exactly when `endpoint` is
 * `agents` (then `agent_id` is required); an added one whenever its `agent_id` looks saved
 * (`agent_…`), whatever its endpoint, as LibreChat's `loadAddedAgent` decides.
 */
function checkAgentOrModel(
  convo: Record<string, unknown>,
  matcher: PolicyMatcher,
  isAdded: boolean,
  agentIds: string[],
): Step<{ savedAgent: boolean }> {
  const endpoint = ownField(convo, 'endpoint')
  const agentId = ownField(convo, 'agent_id')
  const namesSavedAgent = isAdded
    ? typeof agentId === 'string' && agentId.startsWith('agent_')
    : endpoint === AGENTS_ENDPOINT
  if (namesSavedAgent) {
    if (typeof agentId !== 'string' || !AGENT_ID_PATTERN.test(agentId)) {
      return invalidRequest('agent_id must name a saved agent (agent_…)')
    }
    addAgentIds([agentId], agentIds)
    return { ok: true, value: { savedAgent: true } }
  }
  if (isAdded && agentId !== undefined && agentId !== null && typeof agentId !== 'string') {
    return invalidRequest('addedConvo.agent_id must be a string')
  }
  if (typeof endpoint !== 'string' || endpoint === '') {
    return invalidRequest('endpoint must be a non-empty string')
  }
  const model = ownField(convo, 'model')
  if (typeof model !== 'string') return invalidRequest('model must be a string')
  if (!matcher.isModelAllowed(endpoint, model)) return modelNotAllowed(matcher, endpoint, model)
  return { ok: true, value: { savedAgent: false } }
}

function checkConversation(
  convo: Record<string, unknown>,
  ctx: ChatRequestContext,
  depth: number,
  agentIds: string[],
): Step<Record<string, unknown>> {
  const { matcher } = ctx
  const specRefusal = checkSpecOf(convo, ctx, agentIds)
  if (specRefusal) return specRefusal

  const runs = checkAgentOrModel(convo, matcher, depth > 0, agentIds)
  if (!runs.ok) return runs

  const ephemeralAgent = ownField(convo, 'ephemeralAgent')
  if (isJsonObject(ephemeralAgent)) {
    const refusal = checkServers(ownField(ephemeralAgent, 'mcp'), matcher, 'ephemeralAgent.mcp')
    if (refusal) return refusal
  }

  const capped = applyParamCaps(convo, matcher, !runs.value.savedAgent)
  if (!capped.ok) return capped

  const added = ownField(convo, 'addedConvo')
  if (added === undefined || added === null) return capped
  if (!isJsonObject(added)) return invalidRequest('addedConvo must be an object')
  if (depth + 1 > MAX_ADDED_CONVO_DEPTH) return invalidRequest('addedConvo is nested too deeply')
  const checkedAdded = checkConversation(added, ctx, depth + 1, agentIds)
  if (!checkedAdded.ok) return checkedAdded
  return { ok: true, value: { ...capped.value, addedConvo: checkedAdded.value } }
}

/**
 * Checks a `POST /api/agents/chat` or `/api/agents/chat/:endpoint` body (LibreChat reads
 * `body.endpoint`, never the path) against the workspace policy: the ephemeral model
 * (`endpoint` + `model`), or the saved agent (`agent_id`), the model spec (`spec`), MCP servers
 * (`ephemeralAgent.mcp`) and the parallel `addedConvo`, and applies the parameter caps.
 * On success, forward `body` (not the original) and check every id in `agentIds`.
 */
export function checkChatRequest(body: unknown, ctx: ChatRequestContext): ChatRequestCheck {
  if (!isJsonObject(body)) return invalidRequest('The chat request body must be a JSON object')
  const agentIds: string[] = []
  const checked = checkConversation(body, ctx, 0, agentIds)
  if (!checked.ok) return checked
  return { ok: true, body: checked.value, agentIds }
}
