import { z } from 'zod'

/** One field-level problem in a rejected request: `path` is dotted (`quota.monthlyTokens`). */
export const ErrorDetailSchema = z.object({
  path: z.string(),
  message: z.string(),
})
export type ErrorDetail = z.infer<typeof ErrorDetailSchema>

/**
 * The one error body every service and the gateway answer with (API.md §1). `error` is the HTTP
 * reason phrase; 5xx messages never carry stack traces or driver text.
 */
export const ErrorResponseSchema = z.object({
  statusCode: z.number().int().min(400).max(599),
  code: z.string().regex(/^(AUTH|WSP|GW|RT)_[A-Z0-9_]+$/),
  error: z.string(),
  message: z.string(),
  details: z.array(ErrorDetailSchema).optional(),
})
export type ErrorResponse = z.infer<typeof ErrorResponseSchema>

/** Which limit refused a request (API.md §1). */
export const LimitNameSchema = z.enum([
  'monthlyTokens',
  'memberMonthlyTokens',
  'monthlyCostUsd',
  'rpm',
  'memberRpm',
  'tpm',
  'memberTpm',
  'concurrentStreams',
  'loginAttempts',
])
export type LimitName = z.infer<typeof LimitNameSchema>

export const LimitScopeSchema = z.enum(['workspace', 'member', 'ip', 'account'])
export type LimitScope = z.infer<typeof LimitScopeSchema>

/** A 429 body: the error shape plus which limit, its value, what is used and when it resets. */
export const LimitErrorResponseSchema = ErrorResponseSchema.extend({
  statusCode: z.literal(429),
  limitName: LimitNameSchema,
  scope: LimitScopeSchema,
  limit: z.number(),
  used: z.number(),
  resetAt: z.iso.datetime({ offset: true }),
})
export type LimitErrorResponse = z.infer<typeof LimitErrorResponseSchema>

/** The prefix that names the service an error code comes from. */
export const ServiceErrorPrefixSchema = z.enum(['AUTH', 'WSP', 'GW', 'RT'])
export type ServiceErrorPrefix = z.infer<typeof ServiceErrorPrefixSchema>

/**
 * Codes every service's error handler gives framework-level failures (unknown route, bad JSON,
 * schema validation, oversized body, unexpected faults, a dependency missing at /readyz).
 */
export const FRAMEWORK_ERROR_SUFFIXES = [
  'VALIDATION',
  'NOT_FOUND',
  'BAD_REQUEST',
  'METHOD_NOT_ALLOWED',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'REQUEST_ERROR',
  'INTERNAL',
  'NOT_READY',
] as const
type FrameworkErrorCode<P extends string> = `${P}_${(typeof FRAMEWORK_ERROR_SUFFIXES)[number]}`

const frameworkCodes = <P extends ServiceErrorPrefix>(prefix: P) =>
  FRAMEWORK_ERROR_SUFFIXES.map((suffix) => `${prefix}_${suffix}` as FrameworkErrorCode<P>)

export const AuthErrorCodeSchema = z.enum([
  ...frameworkCodes('AUTH'),
  'AUTH_INVALID_CREDENTIALS',
  'AUTH_EMAIL_TAKEN',
  'AUTH_MFA_REQUIRED',
  'AUTH_REFRESH_REUSED',
  'AUTH_SESSION_REVOKED',
  'AUTH_RATE_LIMITED',
  'AUTH_NOT_A_MEMBER',
  'AUTH_UNAUTHENTICATED',
  'AUTH_FORBIDDEN',
  'AUTH_INVALID_EMAIL',
  'AUTH_MFA_INVALID',
  'AUTH_MFA_CONFLICT',
  'AUTH_REFRESH_INVALID',
  'AUTH_OAUTH_PROVIDER_UNKNOWN',
  'AUTH_OAUTH_STATE_INVALID',
  'AUTH_OAUTH_FAILED',
  'AUTH_OAUTH_EMAIL_UNVERIFIED',
  'AUTH_DEPENDENCY_UNAVAILABLE',
])
export type AuthErrorCode = z.infer<typeof AuthErrorCodeSchema>

export const WorkspaceErrorCodeSchema = z.enum([
  ...frameworkCodes('WSP'),
  'WSP_FORBIDDEN',
  'WSP_LAST_OWNER',
  'WSP_CONFLICT',
  'WSP_UNAUTHENTICATED',
  'WSP_SESSION_REVOKED',
  'WSP_INVITATION_INVALID',
  'WSP_EMAIL_DOMAIN_NOT_ALLOWED',
  'WSP_PRECONDITION_FAILED',
  'WSP_EXPORT_TOO_LARGE',
  'WSP_DEPENDENCY_UNAVAILABLE',
])
export type WorkspaceErrorCode = z.infer<typeof WorkspaceErrorCodeSchema>

export const GatewayErrorCodeSchema = z.enum([
  ...frameworkCodes('GW'),
  'GW_UNAUTHENTICATED',
  'GW_TOKEN_REVOKED',
  'GW_FORBIDDEN',
  'GW_NO_WORKSPACE',
  'GW_MODEL_NOT_ALLOWED',
  'GW_MCP_NOT_ALLOWED',
  'GW_RATE_LIMITED',
  'GW_QUOTA_EXCEEDED',
  'GW_ROUTE_DISABLED',
  'GW_LIBRECHAT_NOT_CONFIGURED',
  'GW_UPSTREAM_UNAVAILABLE',
  'GW_UPSTREAM_TIMEOUT',
  'GW_DEPENDENCY_UNAVAILABLE',
])
export type GatewayErrorCode = z.infer<typeof GatewayErrorCodeSchema>

export const RuntimeErrorCodeSchema = z.enum([...frameworkCodes('RT')])
export type RuntimeErrorCode = z.infer<typeof RuntimeErrorCodeSchema>

/** Every code any service may answer with. */
export const ErrorCodeSchema = z.union([
  AuthErrorCodeSchema,
  WorkspaceErrorCodeSchema,
  GatewayErrorCodeSchema,
  RuntimeErrorCodeSchema,
])
export type ErrorCode = z.infer<typeof ErrorCodeSchema>
