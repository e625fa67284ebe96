import createError from '@fastify/error'
import type { LimitExceeded } from '@platform/service-kit'

// Upstreams
export const UpstreamNotConfigured = createError(
  'GW_UPSTREAM_UNAVAILABLE',
  'The %s is not configured on this gateway',
  503,
)
export const UpstreamUnavailable = createError(
  'GW_UPSTREAM_UNAVAILABLE',
  'The %s is not answering; try again shortly',
  503,
)
export const UpstreamTimeout = createError(
  'GW_UPSTREAM_TIMEOUT',
  'The %s took too long to answer',
  504,
)
export const UpstreamAnswerUnreadable = createError(
  'GW_UPSTREAM_UNAVAILABLE',
  'The %s answered in a form the gateway cannot check',
  502,
)
export const LibreChatNotConfigured = createError(
  'GW_LIBRECHAT_NOT_CONFIGURED',
  'Chat is not configured on this gateway',
  503,
)
export const RouteDisabled = createError(
  'GW_ROUTE_DISABLED',
  '%s is not available here: accounts are managed in the platform console',
  404,
)

export const Validation = createError('GW_VALIDATION', '%s', 400)
export const NotFound = createError('GW_NOT_FOUND', '%s', 404)

// Identity
export const Unauthenticated = createError('GW_UNAUTHENTICATED', '%s', 401)
export const TokenRevoked = createError(
  'GW_TOKEN_REVOKED',
  'This session has been signed out; sign in again',
  401,
)
export const NoWorkspace = createError(
  'GW_NO_WORKSPACE',
  'This token is not scoped to a workspace; switch to a workspace first',
  403,
)
export const Forbidden = createError('GW_FORBIDDEN', '%s', 403)

// Policy
export const ModelNotAllowed = createError(
  'GW_MODEL_NOT_ALLOWED',
  'Model %s is not allowed in workspace %s',
  403,
)
export const McpNotAllowed = createError(
  'GW_MCP_NOT_ALLOWED',
  '%s is not allowed in workspace %s',
  403,
)

// Limits
const RateLimited = createError('GW_RATE_LIMITED', 'Too many requests: %s', 429)
/** A 429 whose body says which rate limit refused the request (API.md §1). */
export const rateLimited = (limit: LimitExceeded, what: string) =>
  Object.assign(new RateLimited(what), { limit })
const QuotaExceeded = createError('GW_QUOTA_EXCEEDED', '%s', 429)
/** A 429 for a spent budget or a full stream allowance, with the limit that refused it. */
export const quotaExceeded = (limit: LimitExceeded, what: string) =>
  Object.assign(new QuotaExceeded(what), { limit })

/** The client left before the gateway forwarded its request; nobody reads this answer. */
export const ClientGone = createError('GW_CLIENT_GONE', 'The client closed the connection', 499)

// Dependencies
export const DependencyUnavailable = createError(
  'GW_DEPENDENCY_UNAVAILABLE',
  'The %s this decision needs is unavailable; try again shortly',
  503,
)
