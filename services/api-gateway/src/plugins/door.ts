import {
  authenticatePlugin,
  createInternalClient,
  createServiceTokenSource,
  createTokenVerifier,
  type InternalClient,
} from '@platform/service-kit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { GatewayConfig } from '../config.js'
import {
  DependencyUnavailable,
  Forbidden,
  TokenRevoked,
  Unauthenticated,
  Validation,
} from '../errors.js'
import { type BudgetCheck, createBudgetCheck } from '../lib/budget-check.js'
import { createMembershipCache, type MembershipCache } from '../lib/memberships.js'
import { createPolicyCache, type PolicyCache } from '../lib/policy-cache.js'
import { doorAccess, isCanonicalPath, isUnservedPath, pathOf } from '../lib/request-path.js'

export interface Door {
  /** The workspace-service's internal API, with the gateway's service token. */
  workspaceService: InternalClient
  memberships: MembershipCache
  policies: PolicyCache
  budgets: BudgetCheck
}

export interface DoorOptions {
  config: GatewayConfig
}

/** How long a policy is trusted should its invalidation message be lost. */
const POLICY_CACHE_TTL_MS = 60_000

/**
 * The checks every request meets before it is routed anywhere: a canonical path, `/internal`
 * closed, and the platform token verified wherever API.md §5 does not list the route as public.
 * Decorates `door` with the stores the routes behind it consult (memberships, policies, budgets).
 */
async function door(app: FastifyInstance, options: DoorOptions) {
  const { config } = options
  const verifier = createTokenVerifier({
    issuer: config.PUBLIC_URL.replace(/\/+$/, ''),
    keys: new URL('/.well-known/jwks.json', config.AUTH_SERVICE_URL),
    redis: app.redis,
    // Every request's revocation check, answered from memory kept current by Redis.
    watchRevocations: true,
  })
  app.addHook('onClose', async () => {
    verifier.close()
  })
  await app.register(authenticatePlugin, {
    verifier,
    errors: {
      unauthenticated: (message, cause) => new Unauthenticated(message, { cause }),
      sessionRevoked: () => new TokenRevoked(),
      dependencyUnavailable: (what, cause) => new DependencyUnavailable(what, { cause }),
      serviceNotAllowed: (service) => new Forbidden(`The ${service} may not call this route`),
    },
  })

  const workspaceService = createInternalClient({
    baseUrl: config.WORKSPACE_SERVICE_URL,
    serviceName: 'workspace-service',
    serviceToken: createServiceTokenSource({
      authServiceUrl: config.AUTH_SERVICE_URL,
      service: 'api-gateway',
      secret: config.SERVICE_SECRET_GATEWAY,
    }),
  })
  const subscriber = app.redis.duplicate({ keyPrefix: undefined })
  subscriber.on('error', () => {
    // The service's own client reports Redis going away; this one only resubscribes.
  })
  app.addHook('onClose', async () => {
    subscriber.disconnect()
  })
  const decorations: Door = {
    workspaceService,
    memberships: createMembershipCache({ workspaceService, ttlMs: config.MEMBERSHIP_CACHE_MS }),
    policies: await createPolicyCache({
      workspaceService,
      subscriber,
      ttlMs: POLICY_CACHE_TTL_MS,
      log: app.log,
    }),
    budgets: createBudgetCheck({ workspaceService, ttlMs: config.BUDGET_CHECK_CACHE_MS }),
  }
  app.decorate('door', decorations)

  app.addHook('onRequest', async (request: FastifyRequest, reply) => {
    const path = pathOf(request.url)
    if (!isCanonicalPath(path))
      throw new Validation(
        'The request path is not in canonical form (dot segments, encoded or doubled slashes)',
      )
    if (isUnservedPath(path)) {
      // A path no route matched is on its way to the 404 handler already.
      if (request.is404) return
      return reply.callNotFound()
    }
    const access = doorAccess(request.method, path)
    if (access === 'public') return
    if (access === 'optional') {
      if (request.headers.authorization === undefined) return
      // A bad optional token reads as none, as LibreChat's optional authentication does.
      await app.authenticateUser(request).catch(() => {
        request.user = null
      })
      return
    }
    await app.authenticateUser(request)
  })
}

export const doorPlugin = fp(door, {
  name: 'door',
  fastify: '5.x',
  dependencies: ['redis'],
})

declare module 'fastify' {
  interface FastifyInstance {
    door: Door
  }
}
