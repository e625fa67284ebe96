import createError from '@fastify/error'

// Authentication
export const Unauthenticated = createError('WSP_UNAUTHENTICATED', '%s', 401)
export const SessionRevoked = createError('WSP_SESSION_REVOKED', 'The session has ended', 401)

// Authorization: what a caller may not see is not found; what it sees but may not do is forbidden.
export const NotFound = createError('WSP_NOT_FOUND', '%s', 404)
export const Forbidden = createError('WSP_FORBIDDEN', '%s', 403)

// State
export const LastOwner = createError(
  'WSP_LAST_OWNER',
  'The last owner cannot be removed or demoted; make someone else an owner first',
  409,
)
export const Conflict = createError('WSP_CONFLICT', '%s', 409)
export const InvitationInvalid = createError(
  'WSP_INVITATION_INVALID',
  'The invitation is unknown, has expired or was already used',
  404,
)
export const EmailDomainNotAllowed = createError(
  'WSP_EMAIL_DOMAIN_NOT_ALLOWED',
  'Addresses at %s may not join this tenant',
  403,
)
export const PreconditionFailed = createError('WSP_PRECONDITION_FAILED', '%s', 412)
export const InvalidRequest = createError('WSP_VALIDATION', '%s', 400)
export const ExportTooLarge = createError(
  'WSP_EXPORT_TOO_LARGE',
  'The export would hold %s rows, more than the limit of %s; narrow it with from and to',
  413,
)

// Dependencies
export const DependencyUnavailable = createError(
  'WSP_DEPENDENCY_UNAVAILABLE',
  '%s is unreachable; try again shortly',
  503,
)
