import { z } from 'zod'
import { ServiceNameSchema, WorkspaceRoleSchema } from './tokens.js'

/** A user as the auth-service shows it to the user itself (API.md §3). */
export const UserSchema = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
  mfaEnabled: z.boolean(),
  createdAt: z.iso.datetime({ offset: true }),
})
export type User = z.infer<typeof UserSchema>

/** The workspace a token pair is scoped to, with the caller's role in it. */
export const TokenWorkspaceSchema = z.object({
  id: z.string(),
  name: z.string(),
  role: WorkspaceRoleSchema,
})
export type TokenWorkspace = z.infer<typeof TokenWorkspaceSchema>

/**
 * What login, refresh and switch answer (API.md §3). The gateway reads it to answer LibreChat's
 * own auth routes.
 */
export const TokenPairResponseSchema = z.object({
  accessToken: z.string(),
  refreshToken: z.string(),
  /** Seconds until the access token expires. */
  expiresIn: z.number().int().positive(),
  user: UserSchema,
  workspace: TokenWorkspaceSchema.nullable(),
})
export type TokenPairResponse = z.infer<typeof TokenPairResponseSchema>

/** Passwords are 8–128 characters (counted in code points, so emoji count once). */
export const PasswordSchema = z
  .string()
  .refine((value) => [...value].length >= 8, 'must be at least 8 characters')
  .refine((value) => [...value].length <= 128, 'must be at most 128 characters')

/** `POST /auth/v1/login`; the gateway sends it on behalf of LibreChat's login form. */
export const LoginRequestSchema = z.strictObject({
  email: z.string().max(320),
  password: z.string().max(1024),
  workspaceId: z.string().min(1).max(64).optional(),
  /** A TOTP code or one of the backup codes, once MFA is enabled. */
  totp: z.string().min(6).max(32).optional(),
})
export type LoginRequest = z.infer<typeof LoginRequestSchema>

/** `POST /auth/v1/token/refresh`: the token in the body, or else the `platform_refresh` cookie. */
export const RefreshRequestSchema = z.strictObject({
  refreshToken: z.string().min(1).max(512).optional(),
})
export type RefreshRequest = z.infer<typeof RefreshRequestSchema>

/** The name of the refresh-token cookie browsers hold (API.md §3). */
export const REFRESH_COOKIE_NAME = 'platform_refresh'

/** `POST /internal/v1/service-token` (API.md §7). */
export const ServiceTokenRequestSchema = z.strictObject({
  service: ServiceNameSchema,
  secret: z.string().min(1).max(512),
})
export type ServiceTokenRequest = z.infer<typeof ServiceTokenRequestSchema>

export const ServiceTokenResponseSchema = z.object({
  token: z.string(),
  expiresIn: z.number().int().positive(),
})
export type ServiceTokenResponse = z.infer<typeof ServiceTokenResponseSchema>

/** `GET /internal/v1/users/:id` and `…/users/by-email`: what another service may know of a user. */
export const InternalUserSchema = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
})
export type InternalUser = z.infer<typeof InternalUserSchema>

/** One workspace membership as the workspace-service reports it (API.md §7). */
export const MembershipSchema = z.object({
  workspaceId: z.string(),
  tenantId: z.string(),
  name: z.string(),
  role: WorkspaceRoleSchema,
})
export type Membership = z.infer<typeof MembershipSchema>

/** `GET /internal/v1/users/:userId/memberships` on the workspace-service. */
export const UserMembershipsResponseSchema = z.object({
  items: z.array(MembershipSchema),
  lastUsedWorkspaceId: z.string().nullable(),
})
export type UserMembershipsResponse = z.infer<typeof UserMembershipsResponseSchema>
