import { createServiceApp, mongoPlugin, redisPlugin } from '@platform/service-kit'
import type { FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { type GatewayConfig, libreChatSettingsOf } from './config.js'
import { LibreChatNotConfigured } from './errors.js'
import { doorPlugin } from './plugins/door.js'
import { libreChatPlugin } from './plugins/librechat.js'
import { limitsPlugin } from './plugins/limits.js'
import { libreChatAuthRoutes } from './routes/librechat-auth.js'
import { libreChatPolicyRoutes } from './routes/librechat-policy.js'
import { libreChatProxyRoutes } from './routes/librechat-proxy.js'
import { upstreamRoutes, upstreamsFrom } from './routes/upstreams.js'

export const SERVICE_NAME = 'api-gateway'

export interface BuildOptions {
  logDestination?: DestinationStream
  /** The gateway's own database (tests give each app its own). */
  dbName?: string
  /** Prepended to every Redis key (tests give each app its own). */
  redisKeyPrefix?: string
}

/** The gateway: the one public door in front of the services and LibreChat. */
export async function buildApp(
  config: GatewayConfig,
  options: BuildOptions = {},
): Promise<FastifyInstance> {
  const app = await createServiceApp({
    service: SERVICE_NAME,
    errorPrefix: 'GW',
    logLevel: config.LOG_LEVEL,
    logPretty: config.LOG_PRETTY,
    logDestination: options.logDestination,
    // The gateway is the edge: what a client says about forwarding is never believed.
    trustProxy: false,
  })
  await app.register(mongoPlugin, { url: config.MONGO_URL, dbName: options.dbName ?? 'gateway' })
  await app.register(redisPlugin, { url: config.REDIS_URL, keyPrefix: options.redisKeyPrefix })
  await app.register(doorPlugin, { config })
  const { EGRESS_SECRET } = config
  if (EGRESS_SECRET !== undefined) {
    // Loaded only here: the egress's tokenizer tables take tens of MiB a gateway without one
    // should not carry.
    const { buildEgressApp } = await import('./egress-app.js')
    const egress = await buildEgressApp(
      { ...config, EGRESS_SECRET },
      { gatewayDb: app.mongo, redis: app.redis, door: app.door },
      { logDestination: options.logDestination },
    )
    app.decorate('egress', egress)
    // Registered after the clients it uses, so it closes before them.
    app.addHook('onClose', async () => {
      await egress.close()
    })
  }
  await app.register(upstreamRoutes, {
    upstreams: upstreamsFrom(config),
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
  })

  const libreChat = libreChatSettingsOf(config)
  if (libreChat === undefined) {
    const notConfigured = async () => {
      throw new LibreChatNotConfigured()
    }
    app.all('/api', notConfigured)
    app.all('/api/*', notConfigured)
    app.route({ method: ['GET', 'HEAD'], url: '/', handler: notConfigured })
    app.route({ method: ['GET', 'HEAD'], url: '/*', handler: notConfigured })
    return app
  }
  await app.register(libreChatPlugin, {
    settings: libreChat,
    upstreamTimeoutMs: config.UPSTREAM_TIMEOUT_MS,
    streamAbandonGraceMs: config.STREAM_ABANDON_GRACE_MS,
  })
  await app.register(libreChatAuthRoutes, { authServiceUrl: config.AUTH_SERVICE_URL })
  await app.register(limitsPlugin, { streamSlotLeaseMs: config.STREAM_SLOT_LEASE_MS })
  await app.register(libreChatPolicyRoutes)
  await app.register(libreChatProxyRoutes)
  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The egress listener's app (API.md §6), when `EGRESS_SECRET` is set. */
    egress?: FastifyInstance
  }
}
