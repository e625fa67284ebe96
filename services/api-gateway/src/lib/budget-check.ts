import {
  type InternalClient,
  InternalServiceUnavailableError,
  type LimitExceeded,
} from '@platform/service-kit'
import { type EffectivePolicy, type QuotaStatus, QuotaStatusSchema } from '@platform/shared-types'
import { createLoadingCache } from './loading-cache.js'

export interface BudgetCheckOptions {
  workspaceService: InternalClient
  /** How long one member's standing is reused. */
  ttlMs: number
}

/** What a spent budget refuses with: the limit, what is used and reserved, when it resets. */
export interface SpentBudget extends LimitExceeded {
  limitName: 'monthlyTokens' | 'memberMonthlyTokens' | 'monthlyCostUsd'
}

const hasBudget = ({ quota }: EffectivePolicy) =>
  quota.overage === 'block' &&
  (quota.monthlyTokens !== null ||
    quota.memberMonthlyTokens !== null ||
    quota.monthlyCostUsd !== null)

/** A workspace's and a member's standing this month, as the ledger has it now; null: no workspace. */
export function quotaStandingOf(
  workspaceService: InternalClient,
  workspaceId: string,
  userId: string,
): Promise<QuotaStatus | null> {
  const query = new URLSearchParams({ userId })
  return workspaceService.get(
    `/internal/v1/workspaces/${encodeURIComponent(workspaceId)}/quota?${query}`,
    QuotaStatusSchema,
  )
}

/**
 * Whether a workspace's or a member's monthly budget is already spent, so a chat that could
 * only be refused by the egress is refused before LibreChat starts it (ARCHITECTURE §5; the
 * egress's reservations are what keep the budget exact). The standing (`used` from the ledger,
 * `reserved` in flight) is cached briefly; the limits come from the policy given, which the
 * gateway drops the moment an admin changes it, so a raised budget takes effect at once.
 */
export function createBudgetCheck(options: BudgetCheckOptions) {
  const standings = createLoadingCache<QuotaStatus | null>({
    load: (key) => {
      const [workspaceId = '', userId = ''] = key.split('\n')
      return quotaStandingOf(options.workspaceService, workspaceId, userId)
    },
    ttlMs: options.ttlMs,
    maxEntries: 50_000,
  })

  return {
    /** The first spent budget of this member in this workspace, or `undefined`. */
    async spent(policy: EffectivePolicy, userId: string): Promise<SpentBudget | undefined> {
      if (!hasBudget(policy)) return undefined
      const standing = await standings.get(`${policy.workspaceId}\n${userId}`)
      // No standing for a workspace whose policy the gateway holds: unknown, so not "not spent".
      if (standing === null)
        throw new InternalServiceUnavailableError('workspace-service', {
          cause: new Error(`no quota for workspace ${policy.workspaceId}`),
        })
      const { quota } = policy
      const resetAt = standing.resetAt
      const workspaceTokens = standing.monthlyTokens.used + standing.monthlyTokens.reserved
      if (quota.monthlyTokens !== null && workspaceTokens >= quota.monthlyTokens)
        return {
          limitName: 'monthlyTokens',
          scope: 'workspace',
          limit: quota.monthlyTokens,
          used: workspaceTokens,
          resetAt,
        }
      const memberTokens = standing.member.used + standing.member.reserved
      if (quota.memberMonthlyTokens !== null && memberTokens >= quota.memberMonthlyTokens)
        return {
          limitName: 'memberMonthlyTokens',
          scope: 'member',
          limit: quota.memberMonthlyTokens,
          used: memberTokens,
          resetAt,
        }
      if (quota.monthlyCostUsd !== null && standing.monthlyCostUsd.used >= quota.monthlyCostUsd)
        return {
          limitName: 'monthlyCostUsd',
          scope: 'workspace',
          limit: quota.monthlyCostUsd,
          used: standing.monthlyCostUsd.used,
          resetAt,
        }
      return undefined
    },
  }
}

export type BudgetCheck = ReturnType<typeof createBudgetCheck>
