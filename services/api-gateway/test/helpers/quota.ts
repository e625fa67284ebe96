import type { Quota } from '@platform/shared-types'

/** Every quota field unlimited but those given: the policy schema wants them all. */
export const quotaWith = (overrides: Partial<Quota>): Quota => ({
  monthlyTokens: null,
  monthlyCostUsd: null,
  memberMonthlyTokens: null,
  rpm: null,
  memberRpm: null,
  tpm: null,
  memberTpm: null,
  maxConcurrentStreams: null,
  overage: 'block',
  ...overrides,
})
