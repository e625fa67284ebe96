import { checkAgent } from './agent-check.js'
import {
  AGENTS_ENDPOINT,
  isBuiltInEndpoint,
  isJsonObject,
  ownField,
  type PolicyMatcher,
} from './allowlist.js'
import { checkModelSpec } from './chat-request-check.js'

// Every filter takes LibreChat's parsed JSON answer and returns the answer to send: the same
// fields, minus what the workspace may not use. A body of another shape (an error, a version
// that answers differently) passes through unchanged; built objects keep `__proto__`-like keys
// as plain data (Object.fromEntries and spread define properties, they never assign them).

const keepEntries = (
  body: Record<string, unknown>,
  keep: (key: string, value: unknown) => boolean,
): Record<string, unknown> =>
  Object.fromEntries(Object.entries(body).filter(([key, value]) => keep(key, value)))

/**
 * `GET /api/models` (endpoint → model ids). Custom endpoints keep only their allowed models
 * (possibly none); `agents` stays as LibreChat sent it. Built-in endpoints are removed rather
 * than emptied: the LibreChat UI reads this map as `modelsConfig?.[endpoint] ?? []` everywhere
 * (v0.8.7: useEndpoints, ModelSelect, useNewConvo, EditPresetDialog returns early on a missing
 * list), so a missing key behaves as an empty list, and it reveals nothing about what LibreChat
 * has configured. The endpoint menu itself comes from `/api/endpoints`.
 */
export function filterModelsListing(body: unknown, matcher: PolicyMatcher): unknown {
  if (!isJsonObject(body)) return body
  return Object.fromEntries(
    Object.entries(body)
      .filter(([endpoint]) => endpoint === AGENTS_ENDPOINT || !isBuiltInEndpoint(endpoint))
      .map(([endpoint, models]) =>
        endpoint === AGENTS_ENDPOINT || !Array.isArray(models)
          ? [endpoint, models]
          : [endpoint, matcher.allowedModelsOf(endpoint, models)],
      ),
  )
}

/**
 * `GET /api/endpoints` (endpoint → config). Keeps `agents`, drops built-ins and every endpoint
 * with no allowed model: judged from `models` (the `/api/models` answer) when given, else from
 * whether any pattern names the endpoint's provider.
 */
export function filterEndpointsListing(
  body: unknown,
  matcher: PolicyMatcher,
  models?: unknown,
): unknown {
  if (!isJsonObject(body)) return body
  return keepEntries(body, (endpoint) => {
    if (endpoint === AGENTS_ENDPOINT) return true
    if (isBuiltInEndpoint(endpoint)) return false
    const listed = ownField(models, endpoint)
    return Array.isArray(listed)
      ? matcher.allowedModelsOf(endpoint, listed).length > 0
      : matcher.isProviderInPlay(endpoint)
  })
}

/**
 * `GET /api/config` for a signed-in user: drops `modelSpecs.list` entries whose preset model or
 * whose `mcpServers` are not all allowed (an agents preset stays: its agent is checked when
 * used), and v0.8.1's top-level `mcpServers` map to the allowed servers. `interface.mcpServers`
 * is a permissions object, not a server list, and stays. Apply
 * {@link rewriteStartupConfigForPlatform} too.
 */
export function filterStartupConfig(body: unknown, matcher: PolicyMatcher): unknown {
  if (!isJsonObject(body)) return body
  const filtered: Record<string, unknown> = { ...body }
  const modelSpecs = ownField(body, 'modelSpecs')
  const list = ownField(modelSpecs, 'list')
  if (isJsonObject(modelSpecs) && Array.isArray(list)) {
    filtered.modelSpecs = {
      ...modelSpecs,
      list: list.filter((spec) => checkModelSpec(spec, matcher).ok),
    }
  }
  const mcpServers = ownField(body, 'mcpServers')
  if (isJsonObject(mcpServers)) {
    filtered.mcpServers = keepEntries(mcpServers, (server) => matcher.isServerAllowed(server))
  }
  return filtered
}

/** The `*LoginEnabled` flags of LibreChat's startup config (v0.8.7 `api/server/routes/config.js`). */
const SOCIAL_LOGIN_FLAGS = [
  'discordLoginEnabled',
  'facebookLoginEnabled',
  'githubLoginEnabled',
  'googleLoginEnabled',
  'appleLoginEnabled',
  'openidLoginEnabled',
  'samlLoginEnabled',
] as const

/**
 * `GET /api/config`, signed in or not: accounts live in the platform, so the LibreChat UI shows
 * only its email/password form (answered by the gateway via the auth-service): no registration,
 * social, OpenID/SAML/LDAP login, password reset or account deletion. `allowAccountDeletion` is
 * set even when absent because the UI treats a missing flag as allowed.
 */
export function rewriteStartupConfigForPlatform(body: unknown): unknown {
  if (!isJsonObject(body)) return body
  const rewritten: Record<string, unknown> = {
    ...body,
    registrationEnabled: false,
    socialLoginEnabled: false,
    socialLogins: [],
    emailLoginEnabled: true,
    emailEnabled: false,
    passwordResetEnabled: false,
    openidAutoRedirect: false,
    allowAccountDeletion: false,
  }
  for (const flag of SOCIAL_LOGIN_FLAGS) rewritten[flag] = false
  delete rewritten.ldap
  return rewritten
}

/** A `/api/mcp/tools` tool entry's name: `name`, else the tool part of its `pluginKey`. */
function toolNameOf(tool: unknown): unknown {
  const name = ownField(tool, 'name')
  if (typeof name === 'string') return name
  const pluginKey = ownField(tool, 'pluginKey')
  return typeof pluginKey === 'string' ? pluginKey.split('_mcp_')[0] : undefined
}

/** `GET /api/mcp/tools` (`{servers: {name → {…, tools: [{name, pluginKey, …}]}}}`). */
export function filterMcpToolsListing(body: unknown, matcher: PolicyMatcher): unknown {
  const servers = ownField(body, 'servers')
  if (!isJsonObject(body) || !isJsonObject(servers)) return body
  const allowed = Object.entries(servers)
    .filter(([server]) => matcher.isServerAllowed(server))
    .map(([server, entry]) => {
      const tools = ownField(entry, 'tools')
      if (!isJsonObject(entry) || !Array.isArray(tools)) return [server, entry]
      return [
        server,
        {
          ...entry,
          tools: tools.filter((tool) => matcher.isToolAllowed(server, toolNameOf(tool))),
        },
      ]
    })
  return { ...body, servers: Object.fromEntries(allowed) }
}

/** `GET /api/mcp/connection/status` (`{success, connectionStatus: {name → status}, …}`). */
export function filterMcpConnectionStatus(body: unknown, matcher: PolicyMatcher): unknown {
  const statuses = ownField(body, 'connectionStatus')
  if (!isJsonObject(body) || !isJsonObject(statuses)) return body
  return {
    ...body,
    connectionStatus: keepEntries(statuses, (server) => matcher.isServerAllowed(server)),
  }
}

/** `GET /api/mcp/servers` (v0.8.2+: map of server name → redacted config). */
export function filterMcpServersListing(body: unknown, matcher: PolicyMatcher): unknown {
  if (!isJsonObject(body)) return body
  return keepEntries(body, (server) => matcher.isServerAllowed(server))
}

/**
 * `GET /api/agents` (`{object: 'list', data: [agent…], first_id, last_id, has_more, after}`).
 * Agents are kept and a disallowed one is marked `platformPolicy: {allowed: false, code,
 * message}` rather than dropped: dropping would hide an agent from the owner who can fix it,
 * make the page's `first_id`/`last_id`/`has_more` disagree with its `data`, and work only on
 * versions whose list carries `model`/`provider`/`tools` (v0.8.7 projects them away). Running a
 * marked agent is refused by the chat check with the same message.
 */
export function filterAgentsListing(body: unknown, matcher: PolicyMatcher): unknown {
  const data = ownField(body, 'data')
  if (!isJsonObject(body) || !Array.isArray(data)) return body
  return {
    ...body,
    data: data.map((agent) => {
      if (!isJsonObject(agent)) return agent
      const result = checkAgent(agent, matcher)
      return result.ok
        ? agent
        : {
            ...agent,
            platformPolicy: { allowed: false, code: result.code, message: result.message },
          }
    }),
  }
}

/**
 * LibreChat mounts its routers case-insensitively and without strict trailing slashes (Express
 * defaults), so `/API/Models/` reaches `/api/models`; route decisions use this form.
 */
function pathSegments(url: string): string[] {
  const path = url.split(/[?#]/, 1)[0] ?? ''
  return path.split('/').filter((segment) => segment.length > 0)
}

const decodeSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

const SERVER_ACTIONS = new Set(['reinitialize', 'auth-values'])
const SERVER_OAUTH_ACTIONS = new Set(['initiate', 'callback', 'bind'])

/**
 * The MCP server names a `/api/mcp/...` path addresses (LibreChat routes in
 * `api/server/routes/mcp.js`, v0.8.7): `/connection/status/:s`, `/oauth/cancel/:s`,
 * `/servers/:s`, `/:s/reinitialize`, `/:s/auth-values`, `/:s/oauth/(initiate|callback|bind)`.
 * Both names are returned where two routes could match (`/servers/reinitialize`); every one must
 * be allowed, else the request is refused. `[]` for paths that name no server.
 */
export function mcpServersOfPath(url: string): string[] {
  const segments = pathSegments(url)
  const [api, mcp, ...rest] = segments.map((segment) => segment.toLowerCase())
  if (api !== 'api' || mcp !== 'mcp') return []
  const raw = segments.slice(2).map(decodeSegment)
  const servers = new Set<string>()
  const [first, second, third] = rest
  if (rest.length === 3 && first === 'connection' && second === 'status') servers.add(raw[2] ?? '')
  if (rest.length === 3 && first === 'oauth' && second === 'cancel') servers.add(raw[2] ?? '')
  if (rest.length === 2 && first === 'servers') servers.add(raw[1] ?? '')
  if (rest.length === 2 && second !== undefined && SERVER_ACTIONS.has(second)) {
    servers.add(raw[0] ?? '')
  }
  if (
    rest.length === 3 &&
    second === 'oauth' &&
    third !== undefined &&
    SERVER_OAUTH_ACTIONS.has(third)
  ) {
    servers.add(raw[0] ?? '')
  }
  return [...servers]
}

export type ListingFilter = (body: unknown, matcher: PolicyMatcher) => unknown

const LISTING_FILTERS = new Map<string, ListingFilter>([
  ['api/models', filterModelsListing],
  ['api/endpoints', (body, matcher) => filterEndpointsListing(body, matcher)],
  [
    'api/config',
    (body, matcher) => rewriteStartupConfigForPlatform(filterStartupConfig(body, matcher)),
  ],
  ['api/mcp/tools', filterMcpToolsListing],
  ['api/mcp/connection/status', filterMcpConnectionStatus],
  ['api/mcp/servers', filterMcpServersListing],
  ['api/agents', filterAgentsListing],
])

/**
 * The filter for a `GET` of a LibreChat listing, looked up the way LibreChat routes the path
 * (case-insensitive, extra slashes and query ignored); `undefined` for any other path. For a
 * signed-out `GET /api/config` use {@link rewriteStartupConfigForPlatform} alone.
 */
export function listingFilterFor(url: string): ListingFilter | undefined {
  return listingFilterOfRoute(libreChatRouteOf(url))
}

/** {@link listingFilterFor} for a route already in {@link libreChatRouteOf}'s form. */
export const listingFilterOfRoute = (route: string): ListingFilter | undefined =>
  LISTING_FILTERS.get(route)

/**
 * The route LibreChat hears in `url`: lower case, no query, no empty segments, no leading or
 * trailing slash (`/API//Agents/chat/?x` → `api/agents/chat`).
 */
export function libreChatRouteOf(url: string): string {
  return pathSegments(url)
    .map((segment) => segment.toLowerCase())
    .join('/')
}
