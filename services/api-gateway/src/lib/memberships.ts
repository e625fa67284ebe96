import type { InternalClient } from '@platform/service-kit'
import { type Membership, MembershipSchema } from '@platform/shared-types'
import { createLoadingCache } from './loading-cache.js'

export interface MembershipCacheOptions {
  workspaceService: InternalClient
  ttlMs: number
}

/**
 * A user's membership of a workspace as the workspace-service's own rows say (API.md §2: roles
 * are never taken from the token, whose claim can be 15 minutes old), reused for `ttlMs`.
 * `null`: not a member (removed, or the workspace is gone).
 */
export function createMembershipCache(options: MembershipCacheOptions) {
  const cache = createLoadingCache<Membership | null>({
    load: (key) => {
      const [userId = '', workspaceId = ''] = key.split('\n')
      const query = new URLSearchParams({ userId, workspaceId })
      return options.workspaceService.get(`/internal/v1/memberships?${query}`, MembershipSchema)
    },
    ttlMs: options.ttlMs,
    maxEntries: 50_000,
  })
  return {
    get: (userId: string, workspaceId: string) => cache.get(`${userId}\n${workspaceId}`),
  }
}

export type MembershipCache = ReturnType<typeof createMembershipCache>
