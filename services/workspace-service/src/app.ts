import {
  authenticatePlugin,
  createServiceApp,
  mongoPlugin,
  redisPlugin,
} from '@platform/service-kit'
import type { FastifyInstance, RouteOptions } from 'fastify'
import type { DestinationStream } from 'pino'
import type { WorkspaceConfig } from './config.js'
import { DependencyUnavailable, Forbidden, SessionRevoked, Unauthenticated } from './errors.js'
import { tenancyPlugin } from './plugins/tenancy.js'
import { auditRoutes } from './routes/audit.js'
import { exportRoutes } from './routes/export.js'
import { internalRoutes } from './routes/internal.js'
import { invitationRoutes, memberRoutes } from './routes/members.js'
import { policyRoutes } from './routes/policy.js'
import { tenantRoutes } from './routes/tenants.js'
import { usageRoutes } from './routes/usage.js'
import { workspaceRoutes } from './routes/workspaces.js'

export const SERVICE_NAME = 'workspace-service'

export interface BuildOptions {
  logDestination?: DestinationStream
  /** Test isolation: a database and a Redis key prefix of the test's own. */
  dbName?: string
  redisKeyPrefix?: string
  /** Sees every route as it is registered (the cross-tenant test enumerates them). */
  onRoute?: (route: RouteOptions) => void
}

/** The workspace-service: tenants, workspaces, members, policy, usage ledger, audit, export. */
export async function buildApp(
  config: WorkspaceConfig,
  options: BuildOptions = {},
): Promise<FastifyInstance> {
  const app = await createServiceApp({
    service: SERVICE_NAME,
    errorPrefix: 'WSP',
    logLevel: config.LOG_LEVEL,
    logPretty: config.LOG_PRETTY,
    logDestination: options.logDestination,
    // Audit events record the client address the gateway forwards, and only the gateway's.
    trustProxy: config.TRUSTED_PROXIES,
    bodyLimit: 256 * 1024,
  })
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute)
  await app.register(mongoPlugin, { url: config.MONGO_URL, dbName: options.dbName ?? 'workspace' })
  await app.register(redisPlugin, {
    url: config.REDIS_URL,
    ...(options.redisKeyPrefix === undefined ? {} : { keyPrefix: options.redisKeyPrefix }),
  })
  await app.register(tenancyPlugin, { config })
  await app.register(authenticatePlugin, {
    verifier: app.tenancy.verifier,
    errors: {
      unauthenticated: (message, cause) => new Unauthenticated(message, { cause }),
      sessionRevoked: () => new SessionRevoked(),
      dependencyUnavailable: (what, cause) => new DependencyUnavailable(what, { cause }),
      serviceNotAllowed: (service) => new Forbidden(`The ${service} may not call this route`),
    },
  })

  await app.register(tenantRoutes, { prefix: '/v1/tenants' })
  await app.register(workspaceRoutes, { prefix: '/v1/workspaces' })
  await app.register(memberRoutes, { prefix: '/v1/workspaces/:wid' })
  await app.register(policyRoutes, { prefix: '/v1/workspaces/:wid' })
  await app.register(usageRoutes, { prefix: '/v1/workspaces/:wid' })
  await app.register(auditRoutes, { prefix: '/v1/workspaces/:wid' })
  await app.register(exportRoutes, { prefix: '/v1/workspaces/:wid' })
  await app.register(invitationRoutes, { prefix: '/v1/invitations' })
  await app.register(internalRoutes, { prefix: '/internal/v1' })
  return app
}
