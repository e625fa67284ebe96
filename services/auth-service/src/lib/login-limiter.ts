import type { LimitExceeded } from '@platform/service-kit'
import type { Redis } from 'ioredis'
import { hashToken } from './crypto.js'

export interface LoginLimiterOptions {
  redis: Redis
  maxPerAccount: number
  maxPerIp: number
  windowSeconds: number
}

export interface LoginLimiter {
  /** The limit a new attempt would break, or null when it may go ahead. */
  blocked(ip: string, email: string): Promise<LimitExceeded | null>
  recordFailure(ip: string, email: string): Promise<void>
  /** A successful sign-in clears the account's count (not the IP's: one IP may try many accounts). */
  clearAccount(email: string): Promise<void>
}

// The account key is a hash of the normalized email, counted for unknown emails too, so the
// limiter's behaviour reveals nothing about which accounts exist.
const accountKey = (email: string) => `auth:login-failures:account:${hashToken(email)}`
const ipKey = (ip: string) => `auth:login-failures:ip:${ip}`

/** Failed sign-ins counted per account and per client IP in fixed windows (Redis). */
export function createLoginLimiter(options: LoginLimiterOptions): LoginLimiter {
  const windowMs = options.windowSeconds * 1000

  function exceeded(
    scope: 'account' | 'ip',
    count: string | null,
    ttlMs: number,
    limit: number,
  ): LimitExceeded | null {
    const used = Number(count ?? 0)
    if (used < limit) return null
    const resetMs = Date.now() + (ttlMs > 0 ? ttlMs : windowMs)
    return {
      limitName: 'loginAttempts',
      scope,
      limit,
      used,
      resetAt: new Date(resetMs).toISOString(),
    }
  }

  return {
    async blocked(ip, email) {
      const results = await options.redis
        .multi()
        .get(accountKey(email))
        .pttl(accountKey(email))
        .get(ipKey(ip))
        .pttl(ipKey(ip))
        .exec()
      if (results === null) throw new Error('login limiter transaction was aborted')
      const [account, accountTtl, perIp, ipTtl] = results.map(([error, value]) => {
        if (error !== null) throw error
        return value
      })
      return (
        exceeded(
          'account',
          account as string | null,
          accountTtl as number,
          options.maxPerAccount,
        ) ?? exceeded('ip', perIp as string | null, ipTtl as number, options.maxPerIp)
      )
    },
    async recordFailure(ip, email) {
      const results = await options.redis
        .multi()
        .incr(accountKey(email))
        .pexpire(accountKey(email), windowMs, 'NX')
        .incr(ipKey(ip))
        .pexpire(ipKey(ip), windowMs, 'NX')
        .exec()
      for (const [error] of results ?? []) if (error !== null) throw error
    },
    async clearAccount(email) {
      await options.redis.del(accountKey(email))
    },
  }
}
