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
  /**
   * Counts an attempt before it is checked, so parallel attempts cannot all slip under the limit;
   * answers the limit it breaks (the attempt must then be refused), or null.
   */
  reserve(ip: string, email: string): Promise<LimitExceeded | null>
  /** The attempt succeeded: the account's count is cleared, the IP's gets its attempt back. */
  succeeded(ip: string, email: string): Promise<void>
  /** The attempt was neither a success nor a failure (a code still to come): it is given back. */
  release(ip: string, email: string): Promise<void>
}

// The account key is a hash of the normalized email, counted for unknown emails too, so the
// limiter's behaviour reveals nothing about which accounts exist.
const accountKey = (email: string) => `auth:login-failures:account:${hashToken(email)}`
const ipKey = (ip: string) => `auth:login-failures:ip:${ip}`

// Both counters go up together, each window starting at its first attempt.
const RESERVE_SCRIPT = `
local results = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  results[#results + 1] = count
  results[#results + 1] = redis.call('PTTL', key)
end
return results`

// Gives an attempt back without leaving a zero counter behind.
const RELEASE_SCRIPT = `
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
end
return 0`

/** Sign-in attempts counted per account and per client IP in fixed windows (Redis). */
export function createLoginLimiter(options: LoginLimiterOptions): LoginLimiter {
  const windowMs = options.windowSeconds * 1000

  /** `count` includes the attempt being made; `used` in the answer is the attempts before it. */
  function exceeded(scope: 'account' | 'ip', count: number, ttlMs: number, limit: number) {
    const used = count - 1
    if (used < limit) return null
    const resetMs = Date.now() + (ttlMs > 0 ? ttlMs : windowMs)
    const refusal: LimitExceeded = {
      limitName: 'loginAttempts',
      scope,
      limit,
      used,
      resetAt: new Date(resetMs).toISOString(),
    }
    return refusal
  }

  return {
    async reserve(ip, email) {
      const [account, accountTtl, perIp, ipTtl] = (await options.redis.eval(
        RESERVE_SCRIPT,
        2,
        accountKey(email),
        ipKey(ip),
        windowMs,
      )) as number[]
      return (
        exceeded('account', account ?? 0, accountTtl ?? 0, options.maxPerAccount) ??
        exceeded('ip', perIp ?? 0, ipTtl ?? 0, options.maxPerIp)
      )
    },
    async succeeded(ip, email) {
      await options.redis.del(accountKey(email))
      await options.redis.eval(RELEASE_SCRIPT, 1, ipKey(ip))
    },
    async release(ip, email) {
      await options.redis.eval(RELEASE_SCRIPT, 2, accountKey(email), ipKey(ip))
    },
  }
}
