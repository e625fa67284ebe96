import createError from '@fastify/error'
import type { LimitExceeded } from '@platform/service-kit'

// Sign-in and tokens
export const InvalidCredentials = createError(
  'AUTH_INVALID_CREDENTIALS',
  'The email or password is not correct',
  401,
)
export const Unauthenticated = createError('AUTH_UNAUTHENTICATED', '%s', 401)
export const SessionRevoked = createError('AUTH_SESSION_REVOKED', 'The session has ended', 401)
export const RefreshInvalid = createError(
  'AUTH_REFRESH_INVALID',
  'The refresh token is not valid',
  401,
)
export const RefreshReused = createError(
  'AUTH_REFRESH_REUSED',
  'The refresh token was already used; the session has been ended',
  401,
)
export const MfaRequired = createError(
  'AUTH_MFA_REQUIRED',
  'A code from the authenticator app is required',
  401,
)
export const MfaInvalid = createError('AUTH_MFA_INVALID', 'The code is not valid', 401)
export const MfaConflict = createError('AUTH_MFA_CONFLICT', '%s', 409)
export const Forbidden = createError('AUTH_FORBIDDEN', '%s', 403)

// Accounts
export const EmailTaken = createError(
  'AUTH_EMAIL_TAKEN',
  'An account with this email already exists',
  409,
)
export const InvalidEmail = createError('AUTH_INVALID_EMAIL', '%s', 400)
export const UserNotFound = createError('AUTH_NOT_FOUND', 'User %s not found', 404)
export const SessionNotFound = createError('AUTH_NOT_FOUND', 'Session %s not found', 404)
export const NotAMember = createError(
  'AUTH_NOT_A_MEMBER',
  'You are not a member of workspace %s',
  403,
)

// OAuth
export const OAuthProviderUnknown = createError(
  'AUTH_OAUTH_PROVIDER_UNKNOWN',
  'Sign-in with %s is not configured',
  404,
)
export const OAuthStateInvalid = createError(
  'AUTH_OAUTH_STATE_INVALID',
  'The sign-in attempt is unknown or has expired; start again',
  400,
)
export const OAuthFailed = createError('AUTH_OAUTH_FAILED', '%s', 400)
export const OAuthEmailUnverified = createError(
  'AUTH_OAUTH_EMAIL_UNVERIFIED',
  'The provider did not confirm that you own this email address',
  403,
)

// Dependencies
export const DependencyUnavailable = createError(
  'AUTH_DEPENDENCY_UNAVAILABLE',
  '%s is unreachable; try again shortly',
  503,
)

// Limits
const LoginRateLimited = createError(
  'AUTH_RATE_LIMITED',
  'Too many failed sign-in attempts; try again after %s',
  429,
)
/** A 429 whose body says which limit refused the attempt (API.md §1). */
export const loginRateLimited = (limit: LimitExceeded) =>
  Object.assign(new LoginRateLimited(limit.resetAt), { limit })
