import { InternalServiceUnavailableError } from '@platform/service-kit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ClientGone, DependencyUnavailable, quotaExceeded, rateLimited } from '../errors.js'
import type { SpentBudget } from '../lib/budget-check.js'
import { LimitStoreUnavailableError } from '../lib/limit-store.js'
import { createRateLimiter, type RateLimitName } from '../lib/rate-limits.js'
import { createRecentRefusals, createStreamSlots, type StreamLease } from '../lib/stream-slots.js'
import type { BridgedRequest } from './librechat.js'

export interface DoorLimits {
  /**
   * Counts a request that can start a generation against the workspace's and the member's
   * requests per minute, answering the RateLimit headers; a refusal is a 429 naming the limit.
   */
  countRequest(bridged: BridgedRequest, reply: FastifyReply): Promise<void>
  /** Refuses (429) a generation whose workspace or member has spent this month's budget. */
  refuseSpentBudget(bridged: BridgedRequest): Promise<void>
  /**
   * Holds one of the workspace's `maxConcurrentStreams` slots for as long as `reply` is open
   * (a 429 when none is free). `streamKey` names the stream: a reconnect to the same stream
   * takes no second slot.
   */
  holdStreamSlot(
    bridged: BridgedRequest,
    request: FastifyRequest,
    reply: FastifyReply,
    streamKey: string,
  ): Promise<void>
  /**
   * Whether this replica refused the workspace a stream slot (or could not decide) in the last
   * second: its next stream waits for its slot before LibreChat is asked.
   */
  streamSlotRefusedLately(workspaceId: string): boolean
}

export interface LimitsOptions {
  streamSlotLeaseMs: number
}

const RATE_LIMIT_TEXT: Record<RateLimitName, (limit: number) => string> = {
  rpm: (limit) => `this workspace allows ${limit} chat requests per minute`,
  memberRpm: (limit) => `each member may send ${limit} chat requests per minute here`,
}

const BUDGET_TEXT: Record<SpentBudget['limitName'], string> = {
  monthlyTokens: 'This workspace has used its monthly token budget',
  memberMonthlyTokens: 'You have used your monthly token budget in this workspace',
  monthlyCostUsd: 'This workspace has used its monthly spending budget',
}

/** How long a workspace refused a stream slot is remembered (`streamSlotRefusedLately`). */
const SLOT_REFUSAL_MEMORY_MS = 1_000

const limitStoreDown = (error: unknown) =>
  error instanceof LimitStoreUnavailableError
    ? new DependencyUnavailable('limit store', { cause: error })
    : error

/**
 * The limits a chat meets before LibreChat hears of it (API.md §4): requests per minute,
 * concurrent streams, and a budget already spent. The counters live in Redis, shared by every
 * replica; when Redis does not answer, the request is refused (fail closed). A stream in a
 * workspace without a stream limit has nothing to be refused: the stream route counts it once it
 * runs, and a count that fails is logged, not answered.
 */
async function limits(app: FastifyInstance, options: LimitsOptions) {
  // Keys carry the Redis client's own prefix, if any (tests give each app one).
  const rateLimiter = createRateLimiter({ redis: app.redis })
  const streamSlots = createStreamSlots({ redis: app.redis, leaseMs: options.streamSlotLeaseMs })
  // One timer renews every lease this replica holds, not one timer per open stream.
  const heldLeases = new Set<StreamLease>()
  const slotRefusals = createRecentRefusals(SLOT_REFUSAL_MEMORY_MS)
  const renewal = setInterval(
    () => {
      for (const lease of heldLeases) {
        lease.renew().then(
          (held) => {
            if (!held) app.log.warn('a stream slot lapsed while its stream was open')
          },
          (error: unknown) => app.log.warn({ err: error }, 'could not renew a stream slot'),
        )
      }
    },
    Math.max(1, Math.floor(options.streamSlotLeaseMs / 3)),
  )
  renewal.unref()
  app.addHook('onClose', async () => clearInterval(renewal))

  const decoration: DoorLimits = {
    async countRequest({ membership, identity, policy }, reply) {
      const decision = await rateLimiter
        .consume({
          tenantId: membership.tenantId,
          workspaceId: membership.workspaceId,
          userId: identity.userId,
          rpm: policy.quota.rpm,
          memberRpm: policy.quota.memberRpm,
        })
        .catch((error: unknown) => {
          throw limitStoreDown(error)
        })
      for (const [name, value] of Object.entries(decision.headers)) reply.header(name, value)
      if (!decision.allowed)
        throw rateLimited(
          decision.limit,
          RATE_LIMIT_TEXT[decision.limit.limitName](decision.limit.limit),
        )
    },

    async refuseSpentBudget({ identity, policy }) {
      const spent = await app.door.budgets
        .spent(policy, identity.userId)
        .catch((error: unknown) => {
          throw error instanceof InternalServiceUnavailableError
            ? new DependencyUnavailable('workspace service', { cause: error })
            : error
        })
      if (spent !== undefined)
        throw quotaExceeded(spent, `${BUDGET_TEXT[spent.limitName]}; it resets at ${spent.resetAt}`)
    },

    async holdStreamSlot({ membership, policy }, request, reply, streamKey) {
      const decision = await streamSlots
        .acquire({
          tenantId: membership.tenantId,
          workspaceId: membership.workspaceId,
          streamKey,
          limit: policy.quota.maxConcurrentStreams,
        })
        .catch((error: unknown) => {
          slotRefusals.mark(membership.workspaceId)
          throw limitStoreDown(error)
        })
      if (!decision.acquired) {
        slotRefusals.mark(membership.workspaceId)
        throw quotaExceeded(
          decision.limit,
          `This workspace allows ${decision.limit.limit} chat streams at once; close one or wait`,
        )
      }
      const { lease } = decision
      const release = () =>
        lease.release().catch((error: unknown) => {
          reply.log.warn({ err: error }, 'could not release a stream slot; its lease will lapse')
        })
      // The client may have left while the checks before this ran: its 'close' has fired.
      if (reply.raw.destroyed || request.raw.socket.destroyed) {
        await release()
        throw new ClientGone()
      }
      heldLeases.add(lease)
      reply.raw.once('close', () => {
        heldLeases.delete(lease)
        void release()
      })
    },

    streamSlotRefusedLately: (workspaceId) => slotRefusals.has(workspaceId),
  }
  app.decorate('limits', decoration)
}

export const limitsPlugin = fp(limits, {
  name: 'limits',
  fastify: '5.x',
  dependencies: ['redis', 'door'],
})

declare module 'fastify' {
  interface FastifyInstance {
    limits: DoorLimits
  }
}
