import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { createServiceApp } from '@platform/service-kit'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import type { Connection } from 'mongoose'
import type { DestinationStream } from 'pino'
import type { GatewayConfig } from './config.js'
import { quotaStandingOf } from './lib/budget-check.js'
import { createEgressSecretCheck } from './lib/egress-caller.js'
import { createMemberLookup } from './lib/librechat-bridge.js'
import { openAiErrorBody } from './lib/openai-errors.js'
import { createQuotaReservations } from './lib/quota-reservations.js'
import { createUsageJournal, type UsageJournal } from './lib/usage-journal.js'
import type { Door } from './plugins/door.js'
import { egressMcpRoutes } from './routes/egress-mcp.js'
import { egressModelRoutes } from './routes/egress-models.js'

export const EGRESS_SERVICE_NAME = 'api-gateway-egress'

/** LibreChat sends whole conversations, images included, on every model call. */
const EGRESS_BODY_LIMIT = 32 * 1024 * 1024

/** What the egress shares with the public door in the same process. */
export interface EgressShared {
  /** The gateway's own database: the bridge's mapping lives there. */
  gatewayDb: Connection
  redis: Redis
  /** Memberships and policies, cached and invalidated once for both listeners. */
  door: Door
}

export interface EgressBuildOptions {
  logDestination?: DestinationStream
}

/**
 * The egress (API.md §6, ARCHITECTURE §4.2): the listener only LibreChat calls, for every model
 * and MCP call it makes. It answers in OpenAI's error shape, trusts nothing without the egress
 * secret and serves nothing under the public routes. It never listens by itself; `server.ts`
 * binds it to `GATEWAY_EGRESS_PORT`.
 */
export async function buildEgressApp(
  config: GatewayConfig & { EGRESS_SECRET: string },
  shared: EgressShared,
  options: EgressBuildOptions = {},
): Promise<FastifyInstance> {
  const app = await createServiceApp({
    service: EGRESS_SERVICE_NAME,
    errorPrefix: 'GW',
    logLevel: config.LOG_LEVEL,
    logPretty: config.LOG_PRETTY,
    logDestination: options.logDestination,
    trustProxy: false,
    bodyLimit: EGRESS_BODY_LIMIT,
    errorShape: openAiErrorBody,
  })
  const checkSecret = createEgressSecretCheck(config.EGRESS_SECRET)
  app.addHook('onRequest', async (request) => {
    if (request.url.startsWith('/llm/') || request.url.startsWith('/mcp/'))
      checkSecret(request.headers.authorization)
  })
  const members = createMemberLookup(shared.gatewayDb)
  const { workspaceService } = shared.door
  const journal = createUsageJournal({
    redis: shared.redis,
    workspaceService,
    log: app.log,
    consumer: `${hostname()}-${process.pid}-${randomUUID()}`,
  })
  app.addHook('onClose', () => journal.close())
  const quota = createQuotaReservations({
    redis: shared.redis,
    standing: (workspaceId, userId) => quotaStandingOf(workspaceService, workspaceId, userId),
    reservationTtlMs: config.EGRESS_RESERVATION_TTL_MS,
    leases: config.EGRESS_QUOTA_LEASES,
    log: app.log,
  })
  app.addHook('onClose', () => quota.close())
  app.decorate('usageJournal', journal)
  const callers = {
    memberOf: members.memberOf,
    membership: shared.door.memberships.get,
    policy: shared.door.policies.get,
  }
  await app.register(egressModelRoutes, {
    providers: config.LLM_PROVIDERS,
    upstreamTimeoutMs: config.EGRESS_PROVIDER_TIMEOUT_MS,
    defaultOutputTokens: config.EGRESS_DEFAULT_OUTPUT_TOKENS,
    quota,
    journal,
    callers,
  })
  await app.register(egressMcpRoutes, {
    servers: config.MCP_SERVERS,
    upstreamTimeoutMs: config.UPSTREAM_TIMEOUT_MS,
    journal,
    workspaceService,
    callers,
  })
  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The egress's journal of settled calls on their way to the ledger. */
    usageJournal?: UsageJournal
  }
}
