import { createServiceApp, mongoPlugin, redisPlugin } from '@platform/service-kit'
import type { FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import type { GatewayConfig } from './config.js'
import { upstreamRoutes, upstreamsFrom } from './routes/upstreams.js'

export const SERVICE_NAME = 'api-gateway'

export interface BuildOptions {
  logDestination?: DestinationStream
}

/** The gateway: the one public door in front of the services (and, later, LibreChat). */
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
  await app.register(mongoPlugin, { url: config.MONGO_URL, dbName: 'gateway' })
  await app.register(redisPlugin, { url: config.REDIS_URL })
  await app.register(upstreamRoutes, {
    upstreams: upstreamsFrom(config),
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
  })
  return app
}
