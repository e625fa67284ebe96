/**
 * What a request path may look like at the door, and which requests need no token (API.md §5).
 * Framework-free: the gateway's onRequest hook asks these before anything is routed.
 */

/** Path prefixes that belong to the platform's APIs; everything else may be the chat web UI. */
const RESERVED_PREFIXES = ['/api', '/auth', '/v1', '/dev', '/internal', '/llm', '/mcp', '/oauth']

/**
 * Spellings that make a path mean something else once an upstream normalises it: dot segments
 * (plain or percent-encoded), encoded slashes and backslashes, empty segments, NUL, and any
 * percent-encoded unreserved character (RFC 3986 §2.3: letters, digits, `-._~`). A canonical
 * client never sends them, and refusing them means no upstream can be reached by a path the
 * gateway read differently (`/api/../internal/v1/…`, `/v1/%2e%2e/internal`): fastify's router
 * decodes `/api/agents/chat/%61bort` to the abort route while LibreChat's matches it raw, as a
 * chat for endpoint `%61bort`.
 */
const NON_CANONICAL =
  /(?:^|\/)\.{1,2}(?:\/|$)|%2f|%5c|%00|%(?:3[0-9]|4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a]|2d|2e|5f|7e)|\\|\/\//i

/** The path of a raw request URL, without its query string. */
export const pathOf = (url: string): string => {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

export const isCanonicalPath = (path: string): boolean =>
  path.startsWith('/') && !NON_CANONICAL.test(path)

const under = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`)

export const isReservedPath = (path: string): boolean =>
  RESERVED_PREFIXES.some((prefix) => under(path, prefix))

/**
 * Never served on the public port, token or not: service-to-service routes, and the egress
 * routes that listen on their own port for LibreChat alone (API.md §6, §7).
 */
export const isUnservedPath = (path: string): boolean =>
  under(path, '/internal') ||
  under(path, '/llm') ||
  under(path, '/mcp') ||
  // LibreChat matches routes without regard to case; the gateway's routes, which apply the
  // policy, do not. `/API/agents/chat` must not slip past them to the web UI's proxy.
  (!isReservedPath(path) && isReservedPath(path.toLowerCase()))

export type DoorAccess =
  /** Served without a token. */
  | 'public'
  /** Served without a token, and differently with a valid one (`GET /api/config`). */
  | 'optional'
  /** Needs a valid platform access token. */
  | 'token'

const PUBLIC_AUTH_SERVICE_POSTS = new Set([
  '/auth/v1/register',
  '/auth/v1/login',
  '/auth/v1/token/refresh',
])

/**
 * LibreChat's own auth routes the gateway answers with fixed refusals (registration closed,
 * routes disabled): they say the same to everyone, so they need no token, which LibreChat's
 * signed-out UI relies on.
 */
const isLibreChatAccountRoute = (path: string) =>
  under(path, '/api/auth') || under(path, '/oauth') || path === '/api/user/delete'

export function doorAccess(method: string, path: string): DoorAccess {
  const read = method === 'GET' || method === 'HEAD'
  if (path === '/healthz' || path === '/readyz' || path === '/metrics') return 'public'
  if (method === 'POST' && PUBLIC_AUTH_SERVICE_POSTS.has(path)) return 'public'
  if (read && under(path, '/auth/v1/oauth')) return 'public'
  if (read && under(path, '/.well-known')) return 'public'
  // Dev Mode's WebSocket authenticates with its first message (API.md §8): browsers cannot put
  // a bearer token on an upgrade request.
  if (method === 'GET' && path === '/dev/v1/ws') return 'public'
  if (path === '/api/config') return read ? 'optional' : 'token'
  if (path === '/api/auth/logout') return 'token'
  if (isLibreChatAccountRoute(path)) return 'public'
  if (read && !isReservedPath(path)) return 'public'
  return 'token'
}
