import type { LimitExceeded } from '@platform/service-kit'
import type { Redis } from 'ioredis'
import {
  assertKeyPrefix,
  assertLimit,
  defineLimitScript,
  integerReply,
  keySegment,
} from './limit-store.js'

/** `rpm` and `memberRpm` are per minute. */
export const RATE_WINDOW_SECONDS = 60
const WINDOW_US = RATE_WINDOW_SECONDS * 1_000_000

/** Rates above one request per microsecond cannot be expressed by the script's integer clock. */
export const MAX_RATE_LIMIT = WINDOW_US

export const DEFAULT_RATE_LIMIT_KEY_PREFIX = 'gw:rl:'

/*
 * The algorithm is GCRA (the generic cell rate algorithm; a token bucket of `limit` requests
 * refilling at `limit` per minute, kept as one number). Each scope stores its theoretical arrival
 * time (TAT): the moment its bucket would be full again. A request advances the TAT by one
 * emission interval (window / limit) and passes if the TAT then lies no further than one window
 * ahead of now.
 *
 * Why GCRA, not a fixed window: a fixed window lets `limit` requests through at 00:59.9 and
 * `limit` more at 01:00.1, twice the limit within a fraction of a second. GCRA has no boundary:
 * at most `limit` requests pass at any instant, and any stretch of d seconds admits at most
 * `limit + d × limit / 60` (the burst, then the steady rate).
 * Why not a sliding window counter: it estimates the previous window's share by assuming its
 * requests were spread evenly, so a bursty client is over- or under-admitted and "when can I
 * retry" has no exact answer. GCRA keeps one integer per scope (O(1) memory, one GET and one
 * SET), is exact for bursts (100 concurrent requests against 10 rpm: exactly 10 pass), and its
 * Retry-After is the exact moment the next request fits.
 * What it does not promise: "never more than `limit` in any 60 s". After an idle spell a client
 * may spend the full burst and then the steady rate, as with any token bucket. An exact
 * per-window cap needs a sliding log (a sorted set of every request, O(limit) memory per scope).
 *
 * Arithmetic is in integer microseconds: the interval is floor(window / limit) and the burst
 * tolerance exactly limit × interval, so exactly `limit` requests fit in a burst; no float
 * rounding can admit one more or one fewer. (The refill is faster than nominal by less than
 * `limit` microseconds a minute.)
 *
 * Time: Redis' own clock (TIME, read inside the script) unless the caller injects one (tests).
 * Every gateway replica then decides against the same clock, so a replica whose host clock is
 * off cannot grant a burst early or refuse late; the tenant's keys share one slot, so one
 * server's clock decides for them even in a cluster. Redis 5+ replicates scripts by their
 * effects, so reading TIME before writing is allowed.
 *
 * KEYS: the workspace's key, the member's key. ARGV: now in µs ('' = Redis' clock), the window
 * in µs, the workspace limit, the member limit (-1 = unlimited). Both limits are checked before
 * either is counted, and the request is counted against both or neither.
 * Reply: now in µs, then per scope: allows (1), refuses (0) or unlimited (-1); remaining after
 * this decision; µs until one more request fits; µs until the bucket is full again.
 */
const CONSUME_SCRIPT = `
local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[1])
end
local window = tonumber(ARGV[2])
local scopes = {}
local everyone_allows = true
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + i])
  local scope = { limit = limit }
  if limit > 0 then
    scope.interval = math.floor(window / limit)
    scope.burst = scope.interval * limit
    local tat = tonumber(redis.call('GET', key) or '') or now
    if tat < now then tat = now end
    scope.tat = tat
    scope.next_tat = tat + scope.interval
    scope.passes = scope.next_tat - now <= scope.burst
  else
    scope.passes = limit < 0
  end
  if not scope.passes then everyone_allows = false end
  scopes[i] = scope
end
local reply = { now }
for i, key in ipairs(KEYS) do
  local scope = scopes[i]
  if scope.limit < 0 then
    for _, value in ipairs({ -1, 0, 0, 0 }) do reply[#reply + 1] = value end
  elseif scope.limit == 0 then
    for _, value in ipairs({ 0, 0, window, window }) do reply[#reply + 1] = value end
  else
    local tat = scope.tat
    if everyone_allows then
      tat = scope.next_tat
      redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    end
    local ahead = tat - now
    local remaining = math.max(0, math.floor((scope.burst - ahead) / scope.interval))
    local next_fits = math.max(0, ahead + scope.interval - scope.burst)
    local status = 0
    if scope.passes then status = 1 end
    for _, value in ipairs({ status, remaining, next_fits, ahead }) do reply[#reply + 1] = value end
  end
end
return reply`

/** The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-06) for one limit. */
export interface RateLimitHeaders {
  'RateLimit-Limit': string
  'RateLimit-Remaining': string
  /**
   * Seconds until the next request fits when nothing remains (Retry-After's value on a refusal),
   * else until the whole limit is available again. The draft leaves a sliding policy free to say
   * either; this way a client that waits it out after a 0 is not refused by this limit, unless
   * other members spend the workspace's share first.
   */
  'RateLimit-Reset': string
  /** `<limit>;w=60`. */
  'RateLimit-Policy': string
}

export interface ConsumeInput {
  tenantId: string
  workspaceId: string
  userId: string
  /** The workspace's requests per minute, shared by all its members; `null` = no limit. */
  rpm: number | null
  /** Each member's own requests per minute in this workspace; `null` = no limit. */
  memberRpm: number | null
}

export type RateLimitName = 'rpm' | 'memberRpm'

export type RateLimitDecision =
  | {
      allowed: true
      /** For the tightest limit in play; empty when neither limit applies. */
      headers: RateLimitHeaders | Record<string, never>
    }
  | {
      allowed: false
      /** The limit that refused (the one that frees later when both do), for the 429 body. */
      limit: LimitExceeded & { limitName: RateLimitName }
      /** Whole seconds until this request would pass, at least 1. */
      retryAfterSeconds: number
      headers: RateLimitHeaders
    }

export interface RateLimiter {
  /** Checks both limits and counts the request against both, or against neither when refused. */
  consume(input: ConsumeInput): Promise<RateLimitDecision>
}

export interface RateLimiterOptions {
  redis: Redis
  /** Default `gw:rl:`; tests give each file its own. Must not contain braces. */
  keyPrefix?: string
  /** Epoch milliseconds, for tests; by default Redis' clock decides (see above). */
  clock?: () => number
}

interface ScopeState {
  limitName: RateLimitName
  scope: 'workspace' | 'member'
  limit: number
  passed: boolean
  remaining: number
  nextFitsUs: number
  fullUs: number
}

const secondsCeil = (microseconds: number) => Math.ceil(microseconds / 1_000_000)

function headersFor(state: ScopeState): RateLimitHeaders {
  const resetUs = state.remaining === 0 ? state.nextFitsUs : state.fullUs
  return {
    'RateLimit-Limit': String(state.limit),
    'RateLimit-Remaining': String(state.remaining),
    'RateLimit-Reset': String(secondsCeil(resetUs)),
    'RateLimit-Policy': `${state.limit};w=${RATE_WINDOW_SECONDS}`,
  }
}

/**
 * The limit a client is closest to: the one that refused (the later to free when both did),
 * otherwise the one with the fewest requests left (the later to refill on a tie). On a full tie
 * the member's limit (listed last) wins, being the caller's own.
 */
function tightest(states: ScopeState[]): ScopeState | undefined {
  const refused = states.filter((state) => !state.passed)
  if (refused.length > 0)
    return refused.reduce((worst, state) => (state.nextFitsUs >= worst.nextFitsUs ? state : worst))
  return states.reduce<ScopeState | undefined>((worst, state) => {
    if (worst === undefined) return state
    if (state.remaining !== worst.remaining)
      return state.remaining < worst.remaining ? state : worst
    return state.fullUs >= worst.fullUs ? state : worst
  }, undefined)
}

/**
 * The gateway's requests-per-minute limits (API.md §4 `quota.rpm`, `quota.memberRpm`) in Redis,
 * shared by every replica. One `consume` is one script call: one round trip.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const keyPrefix = options.keyPrefix ?? DEFAULT_RATE_LIMIT_KEY_PREFIX
  assertKeyPrefix(keyPrefix)
  const consumeScript = defineLimitScript(options.redis, CONSUME_SCRIPT)

  return {
    async consume(input) {
      assertLimit('rpm', input.rpm, MAX_RATE_LIMIT)
      assertLimit('memberRpm', input.memberRpm, MAX_RATE_LIMIT)
      const workspaceKey = `${keyPrefix}{${keySegment('tenantId', input.tenantId)}}:${keySegment('workspaceId', input.workspaceId)}`
      const keys = [
        `${workspaceKey}:rpm`,
        `${workspaceKey}:member:${keySegment('userId', input.userId)}:rpm`,
      ]
      const nowUs = options.clock === undefined ? '' : Math.round(options.clock() * 1000)
      const reply = integerReply(
        await consumeScript(keys, [nowUs, WINDOW_US, input.rpm ?? -1, input.memberRpm ?? -1]),
        9,
      )
      const [now = 0, ...scopes] = reply
      const described = [
        { limitName: 'rpm', scope: 'workspace', limit: input.rpm },
        { limitName: 'memberRpm', scope: 'member', limit: input.memberRpm },
      ] as const
      const states: ScopeState[] = []
      described.forEach((scope, index) => {
        if (scope.limit === null) return
        const [status, remaining = 0, nextFitsUs = 0, fullUs = 0] = scopes.slice(
          index * 4,
          index * 4 + 4,
        )
        states.push({
          ...scope,
          limit: scope.limit,
          passed: status === 1,
          remaining,
          nextFitsUs,
          fullUs,
        })
      })

      const decisive = tightest(states)
      if (decisive === undefined) return { allowed: true, headers: {} }
      const headers = headersFor(decisive)
      if (decisive.passed) return { allowed: true, headers }
      return {
        allowed: false,
        limit: {
          limitName: decisive.limitName,
          scope: decisive.scope,
          limit: decisive.limit,
          used: decisive.limit - decisive.remaining,
          resetAt: new Date(Math.ceil((now + decisive.nextFitsUs) / 1000)).toISOString(),
        },
        retryAfterSeconds: Math.max(1, secondsCeil(decisive.nextFitsUs)),
        headers,
      }
    },
  }
}
