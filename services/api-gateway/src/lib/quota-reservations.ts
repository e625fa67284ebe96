import { randomUUID } from 'node:crypto'
import {
  formatInZone,
  type LimitExceeded,
  startOfMonth,
  startOfNextMonth,
  zonedMonthKey,
} from '@platform/service-kit'
import {
  type EffectivePolicy,
  type QuotaStatus,
  quotaReservationsKey,
} from '@platform/shared-types'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { defineLimitScript, keySegment, LimitStoreUnavailableError } from './limit-store.js'

/**
 * Admits a call against every budget and rate that applies, atomically, or says which refused.
 * KEYS: the workspace's reservations hash, its used counters for the month, the current
 * minute's tokens-per-minute bucket. Used counters missing for the month (its first call, a
 * member's first call, Redis restarted) are seeded from the ledger's figures in ARGV, or the
 * script asks for them (`seed`). Expired reservations are dropped as they are met: an abandoned
 * call stops counting.
 */
const RESERVE = `
local callId, userId = ARGV[1], ARGV[2]
local now, expiresAt = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local limitTokens, limitMember, limitCost = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local limitTpm, limitMemberTpm = tonumber(ARGV[10]), tonumber(ARGV[11])
local memberField = 'u:' .. userId
local budgets = limitTokens >= 0 or limitMember >= 0 or limitCost >= 0

local used, usedMember, usedCost = 0, 0, 0
if budgets then
  local values = redis.call('HMGET', KEYS[2], 'tokens', memberField, 'costMicros')
  if not values[1] or not values[2] or not values[3] then
    if tonumber(ARGV[12]) < 0 then return {'seed'} end
    redis.call('HSETNX', KEYS[2], 'tokens', ARGV[12])
    redis.call('HSETNX', KEYS[2], memberField, ARGV[13])
    redis.call('HSETNX', KEYS[2], 'costMicros', ARGV[14])
    redis.call('EXPIRE', KEYS[2], ARGV[15])
    values = redis.call('HMGET', KEYS[2], 'tokens', memberField, 'costMicros')
  end
  used, usedMember, usedCost = tonumber(values[1]), tonumber(values[2]), tonumber(values[3])
end

local reserved, reservedMember, reservedCost = 0, 0, 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, entry = pcall(cjson.decode, entries[i + 1])
  if ok and type(entry) == 'table' and tonumber(entry.expiresAt) and tonumber(entry.expiresAt) > now then
    local entryTokens = tonumber(entry.tokens) or 0
    reserved = reserved + entryTokens
    if entry.userId == userId then reservedMember = reservedMember + entryTokens end
    reservedCost = reservedCost + (tonumber(entry.costMicros) or 0)
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end

if budgets then
  if limitTokens >= 0 and used + reserved + tokens > limitTokens then
    return {'refused', 'monthlyTokens', 'workspace', limitTokens, used + reserved}
  end
  if limitMember >= 0 and usedMember + reservedMember + tokens > limitMember then
    return {'refused', 'memberMonthlyTokens', 'member', limitMember, usedMember + reservedMember}
  end
  if limitCost >= 0 and usedCost + reservedCost + cost > limitCost then
    return {'refused', 'monthlyCostUsd', 'workspace', limitCost, usedCost + reservedCost}
  end
end

local minute = redis.call('HMGET', KEYS[3], 'w', memberField)
local minuteTokens, minuteMember = tonumber(minute[1]) or 0, tonumber(minute[2]) or 0
if limitTpm >= 0 and minuteTokens + tokens > limitTpm then
  return {'refused', 'tpm', 'workspace', limitTpm, minuteTokens}
end
if limitMemberTpm >= 0 and minuteMember + tokens > limitMemberTpm then
  return {'refused', 'memberTpm', 'member', limitMemberTpm, minuteMember}
end
redis.call('HINCRBY', KEYS[3], 'w', tokens)
redis.call('HINCRBY', KEYS[3], memberField, tokens)
redis.call('EXPIRE', KEYS[3], 120)

redis.call('HSET', KEYS[1], callId, cjson.encode({userId = userId, tokens = tokens, costMicros = cost, expiresAt = expiresAt}))
local keep = redis.call('PTTL', KEYS[1])
if keep < expiresAt - now + 60000 then redis.call('PEXPIRE', KEYS[1], expiresAt - now + 60000) end

-- What is left of the tightest token limit and of the cost budget once this is admitted (-1: none).
local headroom = -1
local function fit(limit, taken)
  if limit >= 0 and (headroom < 0 or limit - taken < headroom) then headroom = limit - taken end
end
fit(limitTokens, used + reserved + tokens)
fit(limitMember, usedMember + reservedMember + tokens)
fit(limitTpm, minuteTokens + tokens)
fit(limitMemberTpm, minuteMember + tokens)
local headroomCost = -1
if limitCost >= 0 then headroomCost = limitCost - usedCost - reservedCost - cost end
return {'ok', headroom, headroomCost}
`

/**
 * Ends a call's reservation and counts what it really used. KEYS as RESERVE's, the bucket being
 * the minute the call's tokens were counted in. The call's own reservation is removed; a call
 * drawn from a lease (ARGV[5] >= 0) takes what it drew off the lease's entry instead, and the
 * entry goes once its lease is released and nothing drawn from it is still running. Counters
 * missing for the month are left missing: they are seeded whole from the ledger, which the call
 * reaches through the journal.
 */
const SETTLE = `
local field, userId = ARGV[1], ARGV[2]
local tokens, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local drawnTokens, drawnCost = tonumber(ARGV[5]), tonumber(ARGV[6])
local memberField = 'u:' .. userId
local reservedTokens = nil
local raw = redis.call('HGET', KEYS[1], field)
local ok, entry = false, nil
if raw then ok, entry = pcall(cjson.decode, raw) end
if drawnTokens < 0 then
  if ok and type(entry) == 'table' then reservedTokens = tonumber(entry.tokens) end
  if raw then redis.call('HDEL', KEYS[1], field) end
else
  reservedTokens = drawnTokens
  if ok and type(entry) == 'table' then
    entry.tokens = math.max(0, (tonumber(entry.tokens) or 0) - drawnTokens)
    entry.costMicros = math.max(0, (tonumber(entry.costMicros) or 0) - drawnCost)
    if entry.released and entry.tokens == 0 then
      redis.call('HDEL', KEYS[1], field)
    else
      redis.call('HSET', KEYS[1], field, cjson.encode(entry))
    end
  end
end
if redis.call('HEXISTS', KEYS[2], 'tokens') == 1 then redis.call('HINCRBY', KEYS[2], 'tokens', tokens) end
if redis.call('HEXISTS', KEYS[2], memberField) == 1 then redis.call('HINCRBY', KEYS[2], memberField, tokens) end
if redis.call('HEXISTS', KEYS[2], 'costMicros') == 1 then redis.call('HINCRBY', KEYS[2], 'costMicros', cost) end
if reservedTokens and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'w', tokens - reservedTokens)
  redis.call('HINCRBY', KEYS[3], memberField, tokens - reservedTokens)
end
return reservedTokens or -1
`

/**
 * Gives back what a lease holds and no call drew. KEYS: the reservations hash, the bucket of the
 * minute the lease was counted in. What calls drew stays reserved until they settle. Only the
 * first run for a lease changes anything, so a release can be sent again when its answer was
 * lost, and sent for a lease whose taking failed (if the reservation was made after all).
 */
const RELEASE = `
local field, userId = ARGV[1], ARGV[2]
local unusedTokens, unusedCost = tonumber(ARGV[3]), tonumber(ARGV[4])
local raw = redis.call('HGET', KEYS[1], field)
if not raw then return 0 end
local ok, entry = pcall(cjson.decode, raw)
if not ok or type(entry) ~= 'table' then
  redis.call('HDEL', KEYS[1], field)
  return 0
end
if entry.released then return 0 end
entry.tokens = math.max(0, (tonumber(entry.tokens) or 0) - unusedTokens)
entry.costMicros = math.max(0, (tonumber(entry.costMicros) or 0) - unusedCost)
entry.released = true
if entry.tokens == 0 then
  redis.call('HDEL', KEYS[1], field)
else
  redis.call('HSET', KEYS[1], field, cjson.encode(entry))
end
if unusedTokens > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'w', -unusedTokens)
  redis.call('HINCRBY', KEYS[2], 'u:' .. userId, -unusedTokens)
end
return 1
`

/** Used counters outlive their month by a few days, then go. */
const USED_TTL_SECONDS = 40 * 24 * 3600

const usedKey = (tenantId: string, workspaceId: string, month: string) =>
  `gw:quota-used:{${keySegment('tenant id', tenantId)}}:${keySegment('workspace id', workspaceId)}:${month}`
const minuteKey = (tenantId: string, workspaceId: string, minute: number) =>
  `gw:tpm:{${keySegment('tenant id', tenantId)}}:${keySegment('workspace id', workspaceId)}:${minute}`

/**
 * The budget month (`YYYY-MM` in the tenant's zone) at `atMs`, remembered per zone until the
 * month ends: working it out takes Intl calls, and every reserve and settle needs it.
 */
function createMonthKeys() {
  const months = new Map<string, { key: string; startMs: number; endMs: number }>()
  return (atMs: number, timeZone: string) => {
    const known = months.get(timeZone)
    if (known !== undefined && atMs >= known.startMs && atMs < known.endMs) return known.key
    const at = new Date(atMs)
    const month = {
      key: zonedMonthKey(at, timeZone),
      startMs: startOfMonth(at, timeZone).getTime(),
      endMs: startOfNextMonth(at, timeZone).getTime(),
    }
    months.set(timeZone, month)
    return month.key
  }
}

/** Dollars as whole micro-dollars: tokens × $/MTok is exactly that. */
export const microsOf = (usd: number) => Math.round(usd * 1_000_000)

export interface ReservationRequest {
  callId: string
  policy: EffectivePolicy
  userId: string
  tokens: number
  costMicros: number
}

/** A call admitted: what settling it needs. */
export interface Reservation {
  callId: string
  tenantId: string
  workspaceId: string
  userId: string
  timeZone: string
  /** The minute whose tokens-per-minute bucket counted the call. */
  minute: number
  /** Set when the call was admitted from its member's lease: the lease and what the call drew. */
  lease?: { field: string; tokens: number; costMicros: number }
}

/** A budget or rate that refused the call. */
export interface QuotaRefusal extends LimitExceeded {
  limitName: 'monthlyTokens' | 'memberMonthlyTokens' | 'monthlyCostUsd' | 'tpm' | 'memberTpm'
}

export interface QuotaReservationsOptions {
  redis: Redis
  /** The ledger's figures for a month the counters do not have yet. */
  standing: (workspaceId: string, userId: string) => Promise<QuotaStatus | null>
  /** How long an unsettled reservation counts: longer than any call, short enough to recover. */
  reservationTtlMs: number
  /** Whether members calling back to back are admitted from leases (on unless told). */
  leases?: boolean
  log?: Pick<FastifyBaseLogger, 'warn'>
  now?: () => number
}

const RefusalNames = new Set<string>([
  'monthlyTokens',
  'memberMonthlyTokens',
  'monthlyCostUsd',
  'tpm',
  'memberTpm',
])

/** A lease covers this many calls the size of the one that asked for it… */
const LEASE_CALLS = 8
/** …and at most this share of what the tightest limit has left, so leases shrink near a limit. */
const LEASE_HEADROOM_SHARE = 16
/**
 * A member whose calls come closer than this is leased to; a lease not drawn from for this long
 * is given back.
 */
export const LEASE_IDLE_MS = 1_000
/** The longest a lease is drawn from, at most a quarter of the reservation TTL (see `drawUntil`). */
const LEASE_DRAW_WINDOW_MS = 30_000

/** Whether two reads of a workspace's policy set the same limits, the ones a lease counts under. */
function sameLimits(a: EffectivePolicy, b: EffectivePolicy) {
  if (a === b) return true
  const [x, y] = [a.quota, b.quota]
  return (
    a.version === b.version &&
    a.timeZone === b.timeZone &&
    x.monthlyTokens === y.monthlyTokens &&
    x.memberMonthlyTokens === y.memberMonthlyTokens &&
    x.monthlyCostUsd === y.monthlyCostUsd &&
    x.tpm === y.tpm &&
    x.memberTpm === y.memberTpm &&
    x.overage === y.overage
  )
}

/** What the tightest token limit and the cost budget had left after an admission (-1: none). */
interface Headroom {
  tokens: number
  costMicros: number
}

/** A reservation made ahead for a member's next calls, drawn from here without a round trip. */
interface Lease {
  field: string
  policy: EffectivePolicy
  userId: string
  month: string
  minute: number
  /** Calls are drawn until then: each has at least three quarters of the TTL left to run. */
  drawUntil: number
  size: { tokens: number; costMicros: number }
  tokensLeft: number
  costLeft: number
  lastDrawAt: number
}

interface MemberLeasing {
  lease: Lease | undefined
  lastAdmittedAt: number
  headroom: Headroom
  taking: boolean
  /** Calls of the member waiting on Redis: the sweep keeps a member while any is. */
  reserving: number
}

/**
 * Exact quotas for model calls (ARCHITECTURE §5): reserve an estimate before forwarding, settle
 * to the real count when the call ends. Both steps are one script each, so replicas sharing a
 * Redis never admit together what none could admit alone.
 *
 * A member whose calls come back to back is leased to: one reservation, made by the same script
 * in the background, covers its next few calls, which are then admitted without a round trip to
 * Redis. A lease is a reservation like any other (every replica and the quota view count it), so
 * nothing admitted from one goes past a limit; it is small next to what the limits have left,
 * and given back as soon as its member pauses, its minute or month ends or its policy changes.
 */
export function createQuotaReservations(options: QuotaReservationsOptions) {
  const now = options.now ?? Date.now
  const leasing = options.leases ?? true
  const monthOf = createMonthKeys()
  const reserveScript = defineLimitScript(options.redis, RESERVE)
  const settleScript = defineLimitScript(options.redis, SETTLE)
  const releaseScript = defineLimitScript(options.redis, RELEASE)
  const members = new Map<string, MemberLeasing>()
  const inFlight = new Set<Promise<unknown>>()
  let closed = false

  const limitArg = (limit: number | null) => (limit === null ? -1 : limit)
  const memberKey = (policy: EffectivePolicy, userId: string) =>
    `${policy.tenantId}\u0000${policy.workspaceId}\u0000${userId}`
  const keysAt = (policy: EffectivePolicy, month: string, minute: number) => [
    quotaReservationsKey(policy.tenantId, policy.workspaceId),
    usedKey(policy.tenantId, policy.workspaceId, month),
    minuteKey(policy.tenantId, policy.workspaceId, minute),
  ]
  const scriptArgs = (
    policy: EffectivePolicy,
    entry: { field: string; userId: string; tokens: number; costMicros: number },
    atMs: number,
  ) => {
    const { quota } = policy
    const blocks = quota.overage === 'block'
    return [
      entry.field,
      entry.userId,
      atMs,
      atMs + options.reservationTtlMs,
      entry.tokens,
      entry.costMicros,
      blocks ? limitArg(quota.monthlyTokens) : -1,
      blocks ? limitArg(quota.memberMonthlyTokens) : -1,
      blocks && quota.monthlyCostUsd !== null ? microsOf(quota.monthlyCostUsd) : -1,
      limitArg(quota.tpm),
      limitArg(quota.memberTpm),
    ]
  }
  const headroomOf = (answer: unknown[]): Headroom => ({
    tokens: Number(answer[1] ?? -1),
    costMicros: Number(answer[2] ?? -1),
  })
  /** Runs `work` in the background; `close` waits for whatever is still running. */
  const inBackground = (work: Promise<unknown>, what: string) => {
    const running = work.catch((error: unknown) => {
      options.log?.warn({ err: error }, what)
    })
    inFlight.add(running)
    void running.finally(() => inFlight.delete(running))
  }

  /** Admits the call, or answers the limit that refuses it. Throws when Redis cannot decide. */
  async function reserve(request: ReservationRequest): Promise<Reservation | QuotaRefusal> {
    const { policy, userId } = request
    const atMs = now()
    const month = monthOf(atMs, policy.timeZone)
    const minute = Math.floor(atMs / 60_000)
    const member = leasing ? memberLeasing(policy, userId) : undefined
    if (member !== undefined) {
      const drawn = drawFromLease(member, request, atMs, month, minute)
      if (drawn !== undefined) return drawn
    }
    if (member !== undefined) member.reserving += 1
    try {
      return await reserveInRedis(request, member, atMs, month, minute)
    } finally {
      if (member !== undefined) member.reserving -= 1
    }
  }

  /** The call reserved for itself by the RESERVE script. */
  async function reserveInRedis(
    request: ReservationRequest,
    member: MemberLeasing | undefined,
    atMs: number,
    month: string,
    minute: number,
  ): Promise<Reservation | QuotaRefusal> {
    const { policy, userId } = request
    const keys = keysAt(policy, month, minute)
    const baseArgs = scriptArgs(policy, { ...request, field: request.callId }, atMs)
    let answer = (await reserveScript(keys, [...baseArgs, -1, -1, -1, USED_TTL_SECONDS])) as (
      | string
      | number
    )[]
    if (answer[0] === 'seed') {
      const standing = await options.standing(policy.workspaceId, userId)
      if (standing === null)
        throw new Error(`no quota standing for workspace ${policy.workspaceId}`)
      const seeds = [
        standing.monthlyTokens.used,
        standing.member.used,
        microsOf(standing.monthlyCostUsd.used),
        USED_TTL_SECONDS,
      ]
      answer = (await reserveScript(keys, [...baseArgs, ...seeds])) as (string | number)[]
    }
    if (answer[0] === 'ok') {
      if (member !== undefined) {
        const previous = member.lastAdmittedAt
        member.lastAdmittedAt = atMs
        member.headroom = headroomOf(answer)
        if (atMs - previous < LEASE_IDLE_MS) takeLease(member, request)
      }
      return {
        callId: request.callId,
        tenantId: policy.tenantId,
        workspaceId: policy.workspaceId,
        userId,
        timeZone: policy.timeZone,
        minute,
      }
    }
    const [, limitName, scope, limit, used] = answer
    if (typeof limitName !== 'string' || !RefusalNames.has(limitName))
      throw new LimitStoreUnavailableError({
        cause: new Error(`unexpected reservation script reply: ${JSON.stringify(answer)}`),
      })
    const isCost = limitName === 'monthlyCostUsd'
    const isRate = limitName === 'tpm' || limitName === 'memberTpm'
    const resetAt = isRate
      ? new Date((minute + 1) * 60_000)
      : startOfNextMonth(new Date(atMs), policy.timeZone)
    return {
      limitName: limitName as QuotaRefusal['limitName'],
      scope: scope === 'member' ? 'member' : 'workspace',
      limit: isCost ? Number(limit) / 1_000_000 : Number(limit),
      used: isCost ? Number(used) / 1_000_000 : Number(used),
      resetAt: formatInZone(resetAt, policy.timeZone),
    }
  }

  function memberLeasing(policy: EffectivePolicy, userId: string) {
    const key = memberKey(policy, userId)
    let member = members.get(key)
    if (member === undefined) {
      member = {
        lease: undefined,
        lastAdmittedAt: Number.NEGATIVE_INFINITY,
        headroom: { tokens: -1, costMicros: -1 },
        taking: false,
        reserving: 0,
      }
      members.set(key, member)
    }
    return member
  }

  /** The call admitted from its member's lease, or `undefined` when the lease cannot cover it. */
  function drawFromLease(
    member: MemberLeasing,
    request: ReservationRequest,
    atMs: number,
    month: string,
    minute: number,
  ): Reservation | undefined {
    const { lease } = member
    if (lease === undefined) return undefined
    // A lease counts in its own minute and month, under the limits of the policy it was taken
    // with: past any of them it is given back and the call goes to Redis.
    const current =
      sameLimits(lease.policy, request.policy) &&
      lease.month === month &&
      lease.minute === minute &&
      atMs < lease.drawUntil
    if (!current) {
      retire(member, lease)
      return undefined
    }
    // A call larger than what is left goes to Redis; the lease stays for smaller ones.
    if (lease.tokensLeft < request.tokens || lease.costLeft < request.costMicros) return undefined
    lease.tokensLeft -= request.tokens
    lease.costLeft -= request.costMicros
    lease.lastDrawAt = atMs
    member.lastAdmittedAt = atMs
    // The next lease is taken while this one still covers calls: none waits for it.
    if (lease.tokensLeft < lease.size.tokens / 2) takeLease(member, request)
    return {
      callId: request.callId,
      tenantId: request.policy.tenantId,
      workspaceId: request.policy.workspaceId,
      userId: request.userId,
      timeZone: request.policy.timeZone,
      minute: lease.minute,
      lease: { field: lease.field, tokens: request.tokens, costMicros: request.costMicros },
    }
  }

  /** Reserves a lease for the member's next calls, sized on `request`, in the background. */
  function takeLease(member: MemberLeasing, request: ReservationRequest) {
    if (member.taking || closed) return
    const { headroom } = member
    let tokens = request.tokens * LEASE_CALLS
    let costMicros = request.costMicros * LEASE_CALLS
    if (headroom.tokens >= 0)
      tokens = Math.min(tokens, Math.floor(headroom.tokens / LEASE_HEADROOM_SHARE))
    if (headroom.costMicros >= 0)
      costMicros = Math.min(costMicros, Math.floor(headroom.costMicros / LEASE_HEADROOM_SHARE))
    // Not worth a lease when it would not cover two such calls.
    if (tokens < 2 * request.tokens || costMicros < 2 * request.costMicros) return
    member.taking = true
    const { policy, userId } = request
    const atMs = now()
    const month = monthOf(atMs, policy.timeZone)
    const minute = Math.floor(atMs / 60_000)
    const field = `lease:${randomUUID()}`
    const args = scriptArgs(policy, { field, userId, tokens, costMicros }, atMs)
    const taking = reserveScript(keysAt(policy, month, minute), [
      ...args,
      -1,
      -1,
      -1,
      USED_TTL_SECONDS,
    ]).then(
      (reply) => {
        const answer = reply as (string | number)[]
        // Refused or unseeded: the member's calls go to Redis one by one, as without leases.
        if (answer[0] !== 'ok') return
        member.headroom = headroomOf(answer)
        const lease: Lease = {
          field,
          policy,
          userId,
          month,
          minute,
          drawUntil: atMs + Math.min(LEASE_DRAW_WINDOW_MS, options.reservationTtlMs / 4),
          size: { tokens, costMicros },
          tokensLeft: tokens,
          costLeft: costMicros,
          lastDrawAt: atMs,
        }
        const previous = member.lease
        member.lease = lease
        if (previous !== undefined) retire(member, previous)
        if (closed) retire(member, lease)
      },
      (error: unknown) => {
        // The script may have run though its answer was lost: whatever it reserved goes back.
        releaseUnused(policy, { field, userId, minute, tokensLeft: tokens, costLeft: costMicros })
        throw error
      },
    )
    inBackground(
      taking.finally(() => {
        member.taking = false
      }),
      'could not take a quota lease; calls are reserved one by one',
    )
  }

  /** Stops drawing from `lease` and gives back what no call drew. */
  function retire(member: MemberLeasing, lease: Lease) {
    if (member.lease === lease) member.lease = undefined
    releaseUnused(lease.policy, lease)
  }

  /** The RELEASE script for a lease, sent once more if its answer is lost (it runs once). */
  function releaseUnused(
    policy: EffectivePolicy,
    lease: Pick<Lease, 'field' | 'userId' | 'minute' | 'tokensLeft' | 'costLeft'>,
  ) {
    const release = () =>
      releaseScript(
        [
          quotaReservationsKey(policy.tenantId, policy.workspaceId),
          minuteKey(policy.tenantId, policy.workspaceId, lease.minute),
        ],
        [lease.field, lease.userId, lease.tokensLeft, lease.costLeft],
      )
    inBackground(
      release().catch(release),
      'could not give back a quota lease; it lapses with its reservation TTL',
    )
  }

  // Leases of members who paused are given back, and members long quiet are forgotten.
  const sweep = setInterval(() => {
    const atMs = now()
    for (const [key, member] of members) {
      const { lease } = member
      if (
        lease !== undefined &&
        (atMs - lease.lastDrawAt >= LEASE_IDLE_MS || atMs >= lease.drawUntil)
      )
        retire(member, lease)
      if (
        member.lease === undefined &&
        !member.taking &&
        member.reserving === 0 &&
        atMs - member.lastAdmittedAt >= LEASE_IDLE_MS
      )
        members.delete(key)
    }
  }, LEASE_IDLE_MS / 2)
  sweep.unref()

  /** Ends the reservation, or the call's draw on its lease, and counts what the call used. */
  async function settle(
    reservation: Reservation,
    used: { tokens: number; costMicros: number },
  ): Promise<void> {
    const month = monthOf(now(), reservation.timeZone)
    const { lease } = reservation
    await settleScript(
      [
        quotaReservationsKey(reservation.tenantId, reservation.workspaceId),
        usedKey(reservation.tenantId, reservation.workspaceId, month),
        minuteKey(reservation.tenantId, reservation.workspaceId, reservation.minute),
      ],
      [
        lease?.field ?? reservation.callId,
        reservation.userId,
        used.tokens,
        used.costMicros,
        lease?.tokens ?? -1,
        lease?.costMicros ?? -1,
      ],
    )
  }

  /** Gives every lease back and waits for leases being taken; no lease is taken after. */
  async function close() {
    closed = true
    clearInterval(sweep)
    for (const member of members.values())
      if (member.lease !== undefined) retire(member, member.lease)
    while (inFlight.size > 0) await Promise.all(inFlight)
  }

  return { reserve, settle, close }
}

export type QuotaReservations = ReturnType<typeof createQuotaReservations>

export const isRefusal = (answer: Reservation | QuotaRefusal): answer is QuotaRefusal =>
  'limitName' in answer
