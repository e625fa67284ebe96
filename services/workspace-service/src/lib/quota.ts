import { formatInZone, startOfMonth, startOfNextMonth } from '@platform/service-kit'
import {
  type EffectivePolicy,
  QuotaReservationSchema,
  type QuotaStatus,
  quotaReservationsKey,
  type TokenBudget,
} from '@platform/shared-types'
import type { Redis } from 'ioredis'
import { DependencyUnavailable } from '../errors.js'
import type { UsageLedger } from './usage-ledger.js'

const budget = (limit: number | null, used: number, reserved: number): TokenBudget => ({
  limit,
  used,
  reserved,
  remaining: limit === null ? null : Math.max(0, limit - used - reserved),
})

export interface QuotaOptions {
  redis: Redis
  ledger: UsageLedger
}

/**
 * Where a workspace and a member stand against this month's token budget: `used` from the
 * ledger, `reserved` from the gateway's in-flight reservations, for the calendar month in the
 * tenant's time zone.
 */
export function createQuota(options: QuotaOptions) {
  /** In-flight reservations, all and the member's; expired ones no longer count. */
  async function reservations(policy: EffectivePolicy, userId: string) {
    let entries: Record<string, string>
    try {
      entries = await options.redis.hgetall(
        quotaReservationsKey(policy.tenantId, policy.workspaceId),
      )
    } catch (error) {
      throw new DependencyUnavailable('The quota store', { cause: error })
    }
    const now = Date.now()
    let all = 0
    let mine = 0
    for (const raw of Object.values(entries)) {
      let parsed: unknown
      try {
        parsed = JSON.parse(raw)
      } catch {
        continue
      }
      const reservation = QuotaReservationSchema.safeParse(parsed)
      if (!reservation.success || reservation.data.expiresAt <= now) continue
      all += reservation.data.tokens
      if (reservation.data.userId === userId) mine += reservation.data.tokens
    }
    return { all, mine }
  }

  async function forMember(
    policy: EffectivePolicy,
    userId: string,
    now = new Date(),
  ): Promise<QuotaStatus> {
    const from = startOfMonth(now, policy.timeZone)
    const to = startOfNextMonth(now, policy.timeZone)
    const period = { workspaceId: policy.workspaceId, from, to, timeZone: policy.timeZone }
    const [workspaceUsage, memberUsage, reserved] = await Promise.all([
      options.ledger.usage({ ...period, groupBy: 'day' }),
      options.ledger.usage({ ...period, groupBy: 'day', userId }),
      reservations(policy, userId),
    ])
    const tokens = (figures: { inputTokens: number; outputTokens: number }) =>
      figures.inputTokens + figures.outputTokens
    return {
      monthlyTokens: budget(
        policy.quota.monthlyTokens,
        tokens(workspaceUsage.totals),
        reserved.all,
      ),
      monthlyCostUsd: {
        limit: policy.quota.monthlyCostUsd,
        used: workspaceUsage.totals.costUsd,
      },
      periodStart: formatInZone(from, policy.timeZone),
      resetAt: formatInZone(to, policy.timeZone),
      member: budget(policy.quota.memberMonthlyTokens, tokens(memberUsage.totals), reserved.mine),
    }
  }

  return { forMember, reservations }
}

export type QuotaView = ReturnType<typeof createQuota>
