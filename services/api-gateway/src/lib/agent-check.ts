import {
  invalidRequest,
  isJsonObject,
  mcpServerNotAllowed,
  mcpToolNotAllowed,
  modelNotAllowed,
  ownField,
  type PolicyMatcher,
  type PolicyRefusal,
  showValue,
} from './allowlist.js'

/**
 * A saved agent's id: LibreChat generates `agent_<nanoid>`, and treats any other id as an
 * ephemeral agent built from the request. Ids outside this shape cannot name a saved agent, so
 * they are never handed to a loader (they could not be found, and could be path tricks).
 */
export const AGENT_ID_PATTERN = /^agent_[A-Za-z0-9_-]{1,64}$/

const MCP_DELIMITER = '_mcp_'
/** `sys__all__sys_mcp_<server>`: every tool of the server. */
const MCP_ALL_TOOLS = 'sys__all__sys'
/** `sys__server__sys_mcp_<server>`: a UI placeholder, skipped at run time but still naming the server. */
const MCP_SERVER_PLACEHOLDER = 'sys__server__sys'

/** What an agent tool key refers to. */
export type ToolKey =
  | { kind: 'not-mcp' }
  | { kind: 'mcp-tool'; tool: string; server: string }
  | { kind: 'mcp-server'; server: string }
  | { kind: 'malformed' }

/**
 * Reads a tool key the way LibreChat does (`key.split('_mcp_')`): exactly one delimiter with a
 * non-empty part on each side, else it is malformed. LibreChat's create/update drops malformed
 * keys, but its run-time loader takes the first two parts, so they are refused here.
 */
export function parseToolKey(key: string): ToolKey {
  const parts = key.split(MCP_DELIMITER)
  if (parts.length === 1) return { kind: 'not-mcp' }
  const [tool, server] = parts
  if (parts.length !== 2 || !tool || !server) return { kind: 'malformed' }
  if (tool === MCP_ALL_TOOLS || tool === MCP_SERVER_PLACEHOLDER)
    return { kind: 'mcp-server', server }
  return { kind: 'mcp-tool', tool, server }
}

/** Refuses the first tool key of `tools` the policy does not allow; absent `tools` is fine. */
export function checkToolKeys(tools: unknown, matcher: PolicyMatcher): PolicyRefusal | undefined {
  if (tools === undefined || tools === null) return undefined
  if (!Array.isArray(tools)) return invalidRequest('tools must be an array of tool keys')
  for (const key of tools) {
    if (typeof key !== 'string') return invalidRequest('tools must be an array of tool keys')
    const parsed = parseToolKey(key)
    switch (parsed.kind) {
      case 'not-mcp':
        break
      case 'malformed':
        return invalidRequest(`Tool ${showValue(key)} is not a valid MCP tool key`)
      case 'mcp-server':
        // "All tools" stays within the policy: the egress lists only the allowed tools.
        if (!matcher.isServerAllowed(parsed.server)) {
          return mcpServerNotAllowed(matcher, parsed.server)
        }
        break
      case 'mcp-tool':
        if (!matcher.isServerAllowed(parsed.server)) {
          return mcpServerNotAllowed(matcher, parsed.server)
        }
        if (!matcher.isToolAllowed(parsed.server, parsed.tool)) {
          return mcpToolNotAllowed(matcher, parsed.server, parsed.tool)
        }
        break
    }
  }
  return undefined
}

/**
 * Checks an agent's `provider` + `model`. No model (absent, null or empty) is fine: LibreChat
 * refuses to run such an agent (`MISSING_MODEL`), so no model call can follow.
 */
function checkAgentModel(
  provider: unknown,
  model: unknown,
  matcher: PolicyMatcher,
): PolicyRefusal | undefined {
  if (model === undefined || model === null || model === '') return undefined
  if (typeof model !== 'string') return invalidRequest('model must be a string')
  return matcher.isModelAllowed(provider, model)
    ? undefined
    : modelNotAllowed(matcher, provider, model)
}

function collectIds(value: unknown, into: Set<string>): void {
  const candidates = Array.isArray(value) ? value : [value]
  for (const candidate of candidates) {
    if (typeof candidate === 'string' && AGENT_ID_PATTERN.test(candidate)) into.add(candidate)
  }
}

/**
 * The saved agents an agent document (or create/update body) brings into a run: handoff and
 * direct `edges` (`from` and `to`), the legacy `agent_ids` chain and `subagents.agent_ids`.
 * Its own id is left out; ids that cannot name a saved agent are skipped.
 */
export function referencedAgentIds(agent: unknown, selfId?: string): string[] {
  const ids = new Set<string>()
  const edges = ownField(agent, 'edges')
  if (Array.isArray(edges)) {
    for (const edge of edges) {
      collectIds(ownField(edge, 'from'), ids)
      collectIds(ownField(edge, 'to'), ids)
    }
  }
  const chain = ownField(agent, 'agent_ids')
  if (Array.isArray(chain)) collectIds(chain, ids)
  const subagents = ownField(ownField(agent, 'subagents'), 'agent_ids')
  if (Array.isArray(subagents)) collectIds(subagents, ids)
  const ownId = selfId ?? ownField(agent, 'id')
  if (typeof ownId === 'string') ids.delete(ownId)
  return [...ids]
}

export type AgentCheckResult = { ok: true; agentIds: string[] } | PolicyRefusal

/**
 * Checks a saved agent as LibreChat returns it (`GET /api/agents/:id`, read as the mapped user):
 * its model and tools. On success, `agentIds` are the further agents it references; load and
 * check those too ({@link checkAgentGraph} does it all).
 */
export function checkAgent(agent: unknown, matcher: PolicyMatcher): AgentCheckResult {
  if (!isJsonObject(agent)) return invalidRequest('The agent could not be read')
  const refusal =
    checkAgentModel(ownField(agent, 'provider'), ownField(agent, 'model'), matcher) ??
    checkToolKeys(ownField(agent, 'tools'), matcher)
  return refusal ?? { ok: true, agentIds: referencedAgentIds(agent) }
}

/**
 * Checks a `POST /api/agents` or `PATCH /api/agents/:id` body. A body that changes neither
 * model, provider nor tools is fine. A PATCH naming only one of `provider`/`model` is judged
 * with the other taken from `current` (the stored agent, when the caller has it); a model without
 * any known provider is refused, since it cannot be judged. `agentIds` are the saved agents the
 * body references, for a caller that wants to check them before LibreChat stores the links.
 */
export function checkAgentWrite(
  body: unknown,
  matcher: PolicyMatcher,
  current?: unknown,
): AgentCheckResult {
  if (!isJsonObject(body)) return { ok: true, agentIds: [] }
  const changesProvider = Object.hasOwn(body, 'provider')
  const changesModel = Object.hasOwn(body, 'model')
  if (changesProvider || changesModel) {
    const provider = changesProvider ? body.provider : ownField(current, 'provider')
    const model = changesModel ? body.model : ownField(current, 'model')
    if (typeof model === 'string' && model !== '' && provider === undefined) {
      return invalidRequest('provider is required when model is set')
    }
    const refusal = checkAgentModel(provider, model, matcher)
    if (refusal) return refusal
  }
  const refusal = checkToolKeys(ownField(body, 'tools'), matcher)
  if (refusal) return refusal
  const selfId = ownField(current, 'id')
  return {
    ok: true,
    agentIds: referencedAgentIds(body, typeof selfId === 'string' ? selfId : undefined),
  }
}

/** How far {@link checkAgentGraph} follows references before it refuses the request. */
export interface AgentGraphLimits {
  /** Distinct agents checked in total (LibreChat's own cap on a subagent graph is 50). */
  maxAgents: number
  /** Reference hops from the agents the request names. */
  maxDepth: number
}

export const DEFAULT_AGENT_GRAPH_LIMITS: AgentGraphLimits = { maxAgents: 50, maxDepth: 10 }

/**
 * Loads one saved agent as the mapped LibreChat user would see it; `null` or `undefined` when it
 * does not exist or that user may not view it (LibreChat then skips it too). Throwing aborts
 * the check; the caller maps that to a dependency error.
 */
export type AgentLoader = (agentId: string) => Promise<unknown>

/**
 * Checks the agents a request names and every agent they reach through edges, chains and
 * subagents, breadth first, each once (cycles end), loading each level in parallel. Refuses the
 * first disallowed agent, or a graph beyond `limits`. `checkedIds` lists the agents found and
 * checked, in visiting order.
 */
export async function checkAgentGraph(
  rootIds: readonly string[],
  loadAgent: AgentLoader,
  matcher: PolicyMatcher,
  limits: AgentGraphLimits = DEFAULT_AGENT_GRAPH_LIMITS,
): Promise<{ ok: true; checkedIds: string[] } | PolicyRefusal> {
  const seen = new Set<string>()
  const checkedIds: string[] = []
  let level = [...new Set(rootIds.filter((id) => AGENT_ID_PATTERN.test(id)))]
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > limits.maxDepth) {
      return invalidRequest(
        `The agents of this request reference each other more than ${limits.maxDepth} levels deep`,
      )
    }
    for (const id of level) seen.add(id)
    if (seen.size > limits.maxAgents) {
      return invalidRequest(
        `The agents of this request reference more than ${limits.maxAgents} agents`,
      )
    }
    const loaded = await Promise.all(level.map(async (id) => ({ id, agent: await loadAgent(id) })))
    const next = new Set<string>()
    for (const { id, agent } of loaded) {
      if (agent === null || agent === undefined) continue
      const result = checkAgent(agent, matcher)
      if (!result.ok) return result
      checkedIds.push(id)
      for (const referenced of result.agentIds) {
        if (!seen.has(referenced)) next.add(referenced)
      }
    }
    level = [...next]
  }
  return { ok: true, checkedIds }
}
