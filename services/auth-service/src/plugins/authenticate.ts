import {
  bearerToken,
  KeySetUnavailableError,
  RevocationCheckUnavailableError,
  TokenRejectedError,
} from '@platform/service-kit'
import type { PlatformTokenClaims, ServiceName, ServiceTokenClaims } from '@platform/shared-types'
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { DependencyUnavailable, Forbidden, SessionRevoked, Unauthenticated } from '../errors.js'

/** Turns a verifier failure into this service's error codes. */
function refusal(error: unknown): Error {
  if (error instanceof RevocationCheckUnavailableError)
    return new DependencyUnavailable('The session store', { cause: error })
  if (error instanceof KeySetUnavailableError)
    return new DependencyUnavailable('The key store', { cause: error })
  if (error instanceof TokenRejectedError)
    return error.reason === 'revoked'
      ? new SessionRevoked()
      : new Unauthenticated(error.message, { cause: error })
  return error instanceof Error ? error : new Error(String(error))
}

function presentedToken(request: FastifyRequest): string {
  const token = bearerToken(request.headers.authorization)
  if (token === undefined) throw new Unauthenticated('A bearer token is required')
  return token
}

/**
 * Decorates `requireUser` (a user's platform token) and `requireService(...)` (another service's
 * token) as preHandlers, which put the verified claims on `request.user` / `request.caller`.
 */
async function authenticate(app: FastifyInstance) {
  app.decorateRequest('user', null)
  app.decorateRequest('caller', null)

  const authenticateUser = async (request: FastifyRequest) => {
    const token = presentedToken(request)
    try {
      request.user = await app.identity.verifier.verifyPlatformToken(token)
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
        claims = await app.identity.verifier.verifyServiceToken(token)
      } catch (error) {
        throw refusal(error)
      }
      if (!allowed.includes(claims.sub))
        throw new Forbidden(`The ${claims.sub} may not call this route`)
      request.caller = claims
    }

  app.decorate('authenticateUser', authenticateUser)
  app.decorate('requireUser', requireUser)
  app.decorate('requireService', requireService)
}

export const authenticatePlugin = fp(authenticate, {
  name: 'authenticate',
  fastify: '5.x',
  dependencies: ['identity'],
})

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
