import { createHash } from 'node:crypto'
import {
  INTERNAL_AUDIENCE,
  PLATFORM_AUDIENCE,
  type PlatformTokenClaims,
  PlatformTokenClaimsSchema,
  revokedSessionKey,
  type ServiceTokenClaims,
  ServiceTokenClaimsSchema,
  TOKEN_SIGNING_ALGORITHM,
} from '@platform/shared-types'
import type { Redis } from 'ioredis'
import { createRemoteJWKSet, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose'
import type { z } from 'zod'
import { createRevocationWatch } from './revocation-watch.js'

/** Why a token was refused; services map it to their own error codes. */
export type TokenRejection =
  | 'malformed'
  | 'bad-signature'
  | 'unknown-key'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-claims'
  | 'revoked'

/** A token that must not be trusted. Its message is safe to show a client. */
export class TokenRejectedError extends Error {
  readonly reason: TokenRejection

  constructor(reason: TokenRejection, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TokenRejectedError'
    this.reason = reason
  }
}

/** The revocation list could not be read, so the token cannot be trusted now (fail closed). */
export class RevocationCheckUnavailableError extends Error {
  constructor(options?: ErrorOptions) {
    super('The session store is unreachable', options)
    this.name = 'RevocationCheckUnavailableError'
  }
}

/** The signing keys could not be fetched or read, so no token can be checked now. */
export class KeySetUnavailableError extends Error {
  constructor(options?: ErrorOptions) {
    super('The signing keys are unreachable', options)
    this.name = 'KeySetUnavailableError'
  }
}

/**
 * jose reports a JWKS endpoint that answers badly with its generic error, a timeout with its own,
 * and a key resolver's own failure (a database away) as whatever that threw: none of these say
 * anything about the token.
 */
const isKeySourceFailure = (error: unknown) =>
  error instanceof joseErrors.JWKSTimeout ||
  !(error instanceof joseErrors.JOSEError) ||
  error.code === 'ERR_JOSE_GENERIC'

export interface TokenVerifierOptions {
  /** The `iss` every token must carry: the platform's public URL. */
  issuer: string
  /** Where the signing keys come from: the auth-service's JWKS URL, or a key resolver. */
  keys: URL | JWTVerifyGetKey
  /** The revocation list's home; omit only where revocation is checked elsewhere. */
  redis: Redis | null
  /**
   * Hold the revocation list in memory, kept current by Redis's invalidations
   * (`revocation-watch.ts`), instead of a Redis round trip per request. Costs a connection.
   */
  watchRevocations?: boolean
  /**
   * The least time between two JWKS fetches caused by tokens with an unknown `kid`, so a flood
   * of made-up key ids cannot turn into a flood of fetches.
   */
  jwksCooldownMs?: number
  /** How long a fetched JWKS is used before it is fetched again anyway. */
  jwksMaxAgeMs?: number
  /** Entries kept in the verified-token cache; 0 turns it off. */
  cacheEntries?: number
  clockToleranceSec?: number
}

export interface TokenVerifier {
  /** A user's access token (`aud: platform`), checked against the revocation list. */
  verifyPlatformToken(token: string): Promise<PlatformTokenClaims>
  /** Another service's token (`aud: internal`). */
  verifyServiceToken(token: string): Promise<ServiceTokenClaims>
  /** Ends the revocation watch, if there is one. */
  close(): void
}

interface CachedClaims<Claims> {
  claims: Claims
  expiresAtMs: number
}

const DEFAULT_CACHE_ENTRIES = 10_000

/** A bounded map that drops its oldest entries, and entries whose token has expired. */
class VerifiedTokenCache<Claims> {
  private readonly entries = new Map<string, CachedClaims<Claims>>()

  constructor(private readonly capacity: number) {}

  get(key: string, nowMs: number): Claims | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAtMs <= nowMs) {
      this.entries.delete(key)
      return undefined
    }
    return entry.claims
  }

  set(key: string, claims: Claims, expiresAtMs: number) {
    if (this.capacity === 0) return
    if (this.entries.size >= this.capacity) {
      const oldest = this.entries.keys().next()
      if (oldest.done !== true) this.entries.delete(oldest.value)
    }
    this.entries.set(key, { claims, expiresAtMs })
  }
}

const tokenHash = (token: string) => createHash('sha256').update(token).digest('base64url')

function rejectionFor(error: unknown): TokenRejectedError {
  if (error instanceof TokenRejectedError) return error
  const options = { cause: error }
  if (error instanceof joseErrors.JWTExpired)
    return new TokenRejectedError('expired', 'The token has expired', options)
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    // A missing or non-numeric nbf/iat is a bad claim, not an early one.
    if ((error.claim === 'nbf' || error.claim === 'iat') && error.reason === 'check_failed')
      return new TokenRejectedError('not-yet-valid', 'The token is not valid yet', options)
    return new TokenRejectedError('bad-claims', 'The token was not issued for this use', options)
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey)
    return new TokenRejectedError(
      'unknown-key',
      'The token was signed with an unknown key',
      options,
    )
  if (error instanceof joseErrors.JOSEAlgNotAllowed)
    return new TokenRejectedError('bad-signature', 'The token algorithm is not accepted', options)
  if (error instanceof joseErrors.JWSSignatureVerificationFailed)
    return new TokenRejectedError('bad-signature', 'The token signature is invalid', options)
  return new TokenRejectedError('malformed', 'The token is malformed', options)
}

/**
 * The one way a service or the gateway decides whether to believe a token: signature against
 * the auth-service's keys with the algorithm pinned (no `none`, no HS256 with a public key),
 * `iss`, `aud`, time claims, the claims' shape and, for user tokens, the revocation list in
 * Redis. Verified tokens are cached by their hash until they expire; revocation is still checked
 * on every call (in Redis, or against the watched copy in memory with `watchRevocations`).
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const getKey =
    options.keys instanceof URL
      ? createRemoteJWKSet(options.keys, {
          cooldownDuration: options.jwksCooldownMs ?? 5_000,
          cacheMaxAge: options.jwksMaxAgeMs ?? 10 * 60_000,
          timeoutDuration: 5_000,
        })
      : options.keys
  const capacity = options.cacheEntries ?? DEFAULT_CACHE_ENTRIES
  const platformCache = new VerifiedTokenCache<PlatformTokenClaims>(capacity)
  const serviceCache = new VerifiedTokenCache<ServiceTokenClaims>(capacity)
  const clockTolerance = options.clockToleranceSec ?? 5

  async function verifySigned<Schema extends z.ZodType<{ exp: number }>>(
    token: string,
    audience: string,
    schema: Schema,
    cache: VerifiedTokenCache<z.infer<Schema>>,
  ): Promise<z.infer<Schema>> {
    // Without a cache there is nothing to look the token up by, so it is not hashed.
    const key = capacity === 0 ? null : tokenHash(token)
    if (key !== null) {
      // The entry's expiry already includes the clock tolerance; subtracting it again would
      // serve a token for a whole tolerance longer than jwtVerify accepts it.
      const cached = cache.get(key, Date.now())
      if (cached !== undefined) return cached
    }
    let payload: unknown
    try {
      const verified = await jwtVerify(token, getKey, {
        algorithms: [TOKEN_SIGNING_ALGORITHM],
        issuer: options.issuer,
        audience,
        requiredClaims: ['sub', 'jti', 'iat', 'exp'],
        clockTolerance,
      })
      payload = verified.payload
    } catch (error) {
      if (isKeySourceFailure(error)) throw new KeySetUnavailableError({ cause: error })
      throw rejectionFor(error)
    }
    const parsed = schema.safeParse(payload)
    if (!parsed.success)
      throw new TokenRejectedError('bad-claims', 'The token claims are not valid', {
        cause: parsed.error,
      })
    if (key !== null) cache.set(key, parsed.data, parsed.data.exp * 1000 + clockTolerance * 1000)
    return parsed.data
  }

  const { redis } = options
  const watch =
    redis !== null && options.watchRevocations === true ? createRevocationWatch({ redis }) : null
  const isRevoked =
    watch !== null
      ? watch.isRevoked
      : async (sessionId: string) =>
          redis !== null && (await redis.exists(revokedSessionKey(sessionId))) > 0

  async function assertNotRevoked(sessionId: string) {
    let revoked: boolean
    try {
      revoked = await isRevoked(sessionId)
    } catch (error) {
      throw new RevocationCheckUnavailableError({ cause: error })
    }
    if (revoked) throw new TokenRejectedError('revoked', 'The session has been revoked')
  }

  return {
    async verifyPlatformToken(token) {
      const claims = await verifySigned(
        token,
        PLATFORM_AUDIENCE,
        PlatformTokenClaimsSchema,
        platformCache,
      )
      await assertNotRevoked(claims.sid)
      return claims
    },
    verifyServiceToken: (token) =>
      verifySigned(token, INTERNAL_AUDIENCE, ServiceTokenClaimsSchema, serviceCache),
    close() {
      watch?.close()
    },
  }
}

/** The token of an `Authorization: Bearer …` header, or undefined when there is none. */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined
  const match = /^Bearer[ ]+([A-Za-z0-9\-_.~+/]+=*)[ ]*$/i.exec(authorization)
  return match?.[1]
}
