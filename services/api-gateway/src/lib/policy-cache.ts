import type { InternalClient } from '@platform/service-kit'
import {
  type EffectivePolicy,
  EffectivePolicySchema,
  POLICY_INVALIDATE_CHANNEL,
  PolicyInvalidationSchema,
} from '@platform/shared-types'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { parseJson } from './json.js'
import { createLoadingCache } from './loading-cache.js'

export interface PolicyCacheOptions {
  workspaceService: InternalClient
  /** A connection of its own: a subscribed ioredis client can run no other commands. */
  subscriber: Redis
  /** A ceiling on staleness should an invalidation be lost anyway. */
  ttlMs: number
  log: FastifyBaseLogger
}

/**
 * Each workspace's effective policy (API.md §7), cached in the process and dropped the moment
 * the workspace-service publishes on `policy.invalidate`. While the subscription is down,
 * messages may be missed, so every cached copy goes when it comes back. `null`: no such
 * workspace (deleted, or never existed).
 */
export async function createPolicyCache(options: PolicyCacheOptions) {
  const { subscriber, log } = options
  const cache = createLoadingCache<EffectivePolicy | null>({
    load: (workspaceId) =>
      options.workspaceService.get(
        `/internal/v1/workspaces/${encodeURIComponent(workspaceId)}/effective-policy`,
        EffectivePolicySchema,
      ),
    ttlMs: options.ttlMs,
    maxEntries: 20_000,
  })

  subscriber.on('message', (channel: string, message: string) => {
    if (channel !== POLICY_INVALIDATE_CHANNEL) return
    const parsed = PolicyInvalidationSchema.safeParse(parseJson(message))
    if (!parsed.success) {
      log.warn({ message }, 'ignored a malformed policy invalidation')
      return
    }
    cache.drop(parsed.data.workspaceId)
  })
  let lostSubscription = false
  subscriber.on('close', () => {
    lostSubscription = true
  })
  subscriber.on('ready', () => {
    if (!lostSubscription) return
    lostSubscription = false
    cache.clear()
    log.info('policy subscription restored; cached policies dropped')
  })
  await subscriber.subscribe(POLICY_INVALIDATE_CHANNEL)

  return {
    get: (workspaceId: string) => cache.get(workspaceId),
    drop: (workspaceId: string) => cache.drop(workspaceId),
  }
}

export type PolicyCache = Awaited<ReturnType<typeof createPolicyCache>>
