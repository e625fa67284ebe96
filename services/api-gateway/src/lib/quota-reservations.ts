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
return {'ok'}
`

/**
 * Ends a call's reservation and counts what it really used. KEYS as RESERVE's, the bucket being
 * the minute the call was admitted in. Counters missing for the month are left missing: they
 * are seeded whole from the ledger, which the call reaches through the journal.
 */
const SETTLE = `
local callId, userId = ARGV[1], ARGV[2]
local tokens, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local memberField = 'u:' .. userId
local reservedTokens = nil
local raw = redis.call('HGET', KEYS[1], callId)
if raw then
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' then reservedTokens = tonumber(entry.tokens) end
  redis.call('HDEL', KEYS[1], callId)
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
  minute: number
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
  now?: () => number
}

const RefusalNames = new Set<string>([
  'monthlyTokens',
  'memberMonthlyTokens',
  'monthlyCostUsd',
  'tpm',
  'memberTpm',
])

/**
 * Exact quotas for model calls (ARCHITECTURE §5): reserve an estimate before forwarding, settle
 * to the real count when the call ends. Both steps are one script each, so replicas sharing a
 * Redis never admit together what none could admit alone.
 */
export function createQuotaReservations(options: QuotaReservationsOptions) {
  const now = options.now ?? Date.now
  const monthOf = createMonthKeys()
  const reserveScript = defineLimitScript(options.redis, RESERVE)
  const settleScript = defineLimitScript(options.redis, SETTLE)

  const limitArg = (limit: number | null) => (limit === null ? -1 : limit)

  /** Admits the call, or answers the limit that refuses it. Throws when Redis cannot decide. */
  async function reserve(request: ReservationRequest): Promise<Reservation | QuotaRefusal> {
    const { policy, userId } = request
    const { quota } = policy
    const atMs = now()
    const month = monthOf(atMs, policy.timeZone)
    const minute = Math.floor(atMs / 60_000)
    const keys = [
      quotaReservationsKey(policy.tenantId, policy.workspaceId),
      usedKey(policy.tenantId, policy.workspaceId, month),
      minuteKey(policy.tenantId, policy.workspaceId, minute),
    ]
    const blocks = quota.overage === 'block'
    const baseArgs = [
      request.callId,
      userId,
      atMs,
      atMs + options.reservationTtlMs,
      request.tokens,
      request.costMicros,
      blocks ? limitArg(quota.monthlyTokens) : -1,
      blocks ? limitArg(quota.memberMonthlyTokens) : -1,
      blocks && quota.monthlyCostUsd !== null ? microsOf(quota.monthlyCostUsd) : -1,
      limitArg(quota.tpm),
      limitArg(quota.memberTpm),
    ]
    let answer = (await reserveScript(keys, [...baseArgs, -1, -1, -1, USED_TTL_SECONDS])) as
      | string[]
      | (string | number)[]
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
    if (answer[0] === 'ok')
      return {
        callId: request.callId,
        tenantId: policy.tenantId,
        workspaceId: policy.workspaceId,
        userId,
        timeZone: policy.timeZone,
        minute,
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

  /** Ends the reservation and counts what the call used. */
  async function settle(
    reservation: Reservation,
    used: { tokens: number; costMicros: number },
  ): Promise<void> {
    const month = monthOf(now(), reservation.timeZone)
    await settleScript(
      [
        quotaReservationsKey(reservation.tenantId, reservation.workspaceId),
        usedKey(reservation.tenantId, reservation.workspaceId, month),
        minuteKey(reservation.tenantId, reservation.workspaceId, reservation.minute),
      ],
      [reservation.callId, reservation.userId, used.tokens, used.costMicros],
    )
  }

  return { reserve, settle }
}

export type QuotaReservations = ReturnType<typeof createQuotaReservations>

export const isRefusal = (answer: Reservation | QuotaRefusal): answer is QuotaRefusal =>
  'limitName' in answer
