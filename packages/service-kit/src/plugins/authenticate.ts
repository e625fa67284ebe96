import type { PlatformTokenClaims, ServiceName, ServiceTokenClaims } from '@platform/shared-types'
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import {
  bearerToken,
  KeySetUnavailableError,
  RevocationCheckUnavailableError,
  TokenRejectedError,
  type TokenVerifier,
} from '../tokens/token-verifier.js'

/** The service's own error for each way authentication can fail (its codes carry its prefix). */
export interface AuthenticationErrors {
  /** 401: no token, or one that must not be trusted. */
  unauthenticated: (message: string, cause?: unknown) => Error
  /** 401: the token's session was revoked. */
  sessionRevoked: () => Error
  /** 503: the key set or the revocation list cannot be read now (fail closed). */
  dependencyUnavailable: (what: string, cause: unknown) => Error
  /** 403: a valid service token from a service this route does not serve. */
  serviceNotAllowed: (service: ServiceName) => Error
}

export interface AuthenticateOptions {
  verifier: TokenVerifier
  errors: AuthenticationErrors
}

/**
 * Decorates `requireUser` (a user's platform token) and `requireService(...)` (another service's
 * token) as preHandlers, which put the verified claims on `request.user` / `request.caller`, and
 * `authenticateUser(request)` for routes where a token is optional.
 */
async function authenticate(app: FastifyInstance, options: AuthenticateOptions) {
  const { verifier, errors } = options
  app.decorateRequest('user', null)
  app.decorateRequest('caller', null)

  const refusal = (error: unknown): Error => {
    if (error instanceof RevocationCheckUnavailableError)
      return errors.dependencyUnavailable('The session store', error)
    if (error instanceof KeySetUnavailableError)
      return errors.dependencyUnavailable('The key store', error)
    if (error instanceof TokenRejectedError)
      return error.reason === 'revoked'
        ? errors.sessionRevoked()
        : errors.unauthenticated(error.message, error)
    return error instanceof Error ? error : new Error(String(error))
  }

  const presentedToken = (request: FastifyRequest): string => {
    const token = bearerToken(request.headers.authorization)
    if (token === undefined) throw errors.unauthenticated('A bearer token is required')
    return token
  }

  const authenticateUser = async (request: FastifyRequest) => {
    const token = presentedToken(request)
    try {
      request.user = await verifier.verifyPlatformToken(token)
    } catch (error) {
      throw refusal(error)
    }
    return request.user
  }
  const requireUser: preHandlerAsyncHookHandler = async (request) => {
    await authenticateUser(request)
  }

  const requireService =
    (...allowed: ServiceName[]): preHandlerAsyncHookHandler =>
    async (request) => {
      const token = presentedToken(request)
      let claims: ServiceTokenClaims
      try {
        claims = await verifier.verifyServiceToken(token)
      } catch (error) {
        throw refusal(error)
      }
      if (!allowed.includes(claims.sub)) throw errors.serviceNotAllowed(claims.sub)
      request.caller = claims
    }

  app.decorate('authenticateUser', authenticateUser)
  app.decorate('requireUser', requireUser)
  app.decorate('requireService', requireService)
}

export const authenticatePlugin = fp(authenticate, { name: 'authenticate', fastify: '5.x' })

declare module 'fastify' {
  interface FastifyInstance {
    /** Verifies the request's bearer token as `requireUser` does, for routes where it is optional. */
    authenticateUser: (request: FastifyRequest) => Promise<PlatformTokenClaims>
    requireUser: preHandlerAsyncHookHandler
    requireService: (...allowed: ServiceName[]) => preHandlerAsyncHookHandler
  }
  interface FastifyRequest {
    /** The verified platform token of a `requireUser` route. */
    user: PlatformTokenClaims | null
    /** The verified service token of a `requireService` route. */
    caller: ServiceTokenClaims | null
  }
}

/** The verified user of a `requireUser` route. */
export function userOf(request: FastifyRequest): PlatformTokenClaims {
  if (request.user === null) throw new Error('route is missing the requireUser preHandler')
  return request.user
}
