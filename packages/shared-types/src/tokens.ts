import { z } from 'zod'

/** A member's role in one workspace (API.md §2). */
export const WorkspaceRoleSchema = z.enum(['owner', 'admin', 'member', 'viewer'])
export type WorkspaceRole = z.infer<typeof WorkspaceRoleSchema>

/** A member's role in a tenant. */
export const TenantRoleSchema = z.enum(['owner', 'admin', 'member'])
export type TenantRole = z.infer<typeof TenantRoleSchema>

/** The platform's audience for access tokens; service tokens use `internal`. */
export const PLATFORM_AUDIENCE = 'platform'
export const INTERNAL_AUDIENCE = 'internal'

/** The one algorithm the auth-service signs with and verifiers accept (Ed25519). */
export const TOKEN_SIGNING_ALGORITHM = 'EdDSA'

/**
 * Claims of a platform access token (ARCHITECTURE §3), checked after the signature, `iss` and
 * `aud` are verified. A token scoped to no workspace has neither `tid`, `wid` nor `role`; one
 * scoped to a workspace has all three.
 */
export const PlatformTokenClaimsSchema = z
  .object({
    iss: z.string().min(1),
    aud: z.literal(PLATFORM_AUDIENCE),
    sub: z.string().min(1),
    tid: z.string().min(1).optional(),
    wid: z.string().min(1).optional(),
    role: WorkspaceRoleSchema.optional(),
    sid: z.string().min(1),
    jti: z.string().min(1),
    iat: z.number().int().nonnegative(),
    exp: z.number().int().positive(),
  })
  .refine(
    (claims) => {
      const scoped = [claims.tid, claims.wid, claims.role].filter((v) => v !== undefined).length
      return scoped === 0 || scoped === 3
    },
    { message: 'tid, wid and role come together or not at all', path: ['wid'] },
  )
  .refine((claims) => claims.exp > claims.iat, { message: 'exp must be after iat', path: ['exp'] })
export type PlatformTokenClaims = z.infer<typeof PlatformTokenClaimsSchema>

/** The services that may ask the auth-service for a service token. */
export const ServiceNameSchema = z.enum([
  'auth-service',
  'workspace-service',
  'api-gateway',
  'code-runtime',
])
export type ServiceName = z.infer<typeof ServiceNameSchema>

/** The environment variable holding each service's secret for `POST /internal/v1/service-token`. */
export const SERVICE_SECRET_VARIABLES = {
  'auth-service': 'SERVICE_SECRET_AUTH',
  'workspace-service': 'SERVICE_SECRET_WORKSPACE',
  'api-gateway': 'SERVICE_SECRET_GATEWAY',
  'code-runtime': 'SERVICE_SECRET_RUNTIME',
} as const satisfies Record<ServiceName, string>

/** Claims of a service token (API.md §7): `aud: internal`, `sub` the calling service. */
export const ServiceTokenClaimsSchema = z
  .object({
    iss: z.string().min(1),
    aud: z.literal(INTERNAL_AUDIENCE),
    sub: ServiceNameSchema,
    jti: z.string().min(1),
    iat: z.number().int().nonnegative(),
    exp: z.number().int().positive(),
  })
  .refine((claims) => claims.exp > claims.iat, { message: 'exp must be after iat', path: ['exp'] })
export type ServiceTokenClaims = z.infer<typeof ServiceTokenClaimsSchema>
