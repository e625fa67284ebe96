import { randomUUID } from 'node:crypto'
import type { LimitExceeded } from '@platform/service-kit'
import type { Redis } from 'ioredis'
import {
  assertKeyPrefix,
  assertLimit,
  defineLimitScript,
  integerReply,
  keySegment,
  LimitStoreUnavailableError,
} from './limit-store.js'

export const DEFAULT_STREAM_SLOTS_KEY_PREFIX = 'gw:streams:'

/*
 * One sorted set per workspace holds its open streams' leases: member `<streamKey> <leaseId>`,
 * score the lease's expiry (epoch ms, Redis' clock, so every replica agrees on what has lapsed).
 * A slot is a distinct stream key with a live lease: a reconnect to the same stream adds a
 * second lease to the slot it already holds, and when the old connection's release comes after
 * the new acquire (the usual order when a page reloads) the slot stays taken. A replica that
 * dies stops renewing, its leases lapse, and the next acquire prunes them. The set expires with
 * its latest lease, so an idle workspace leaves nothing behind.
 *
 * Counting distinct streams walks the workspace's live leases: O(open leases), a handful under
 * any real `maxConcurrentStreams`. With no limit nothing is counted and acquire stays O(log n).
 */

// KEYS: the workspace's set. ARGV: lease ms, limit (-1 = none), stream key, lease id.
// Reply: acquired (1) or not (0), now (ms), streams holding a slot, and the earliest moment one
// of them lapses (refused; one lease period away when none is held, at limit 0) or the new
// lease's expiry (acquired).
const ACQUIRE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local stream = ARGV[3]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if limit >= 0 then
  local expiry_of = {}
  local streams = 0
  local leases = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #leases, 2 do
    local holder = string.match(leases[i], '^(.*) [^ ]*$')
    if expiry_of[holder] == nil then streams = streams + 1 end
    -- ascending scores: the last lease seen is the stream's latest
    expiry_of[holder] = tonumber(leases[i + 1])
  end
  if expiry_of[stream] == nil and streams >= limit then
    local earliest = now + lease_ms
    for _, expiry in pairs(expiry_of) do
      if expiry < earliest then earliest = expiry end
    end
    return { 0, now, streams, earliest }
  end
end
local expires = now + lease_ms
redis.call('ZADD', KEYS[1], expires, stream .. ' ' .. ARGV[4])
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], latest[2])
return { 1, now, 0, expires }`

// KEYS: the workspace's set. ARGV: lease ms, member. A lease that lapsed but was not yet pruned
// is extended (no other stream can have taken its slot: taking one prunes first); one already
// pruned or released stays gone. Reply: 1 renewed, 0 gone.
const RENEW_SCRIPT = `
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return { 0 } end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], latest[2])
return { 1 }`

/** One open stream's hold on its workspace's slot. */
export interface StreamLease {
  readonly streamKey: string
  /**
   * Extends the lease by `leaseMs` from now; call it well within `leaseMs` (a third of it, say)
   * while the stream is open. Resolves false when the lease is gone (released, or lapsed and
   * taken over): this stream no longer counts against the limit.
   */
  renew(): Promise<boolean>
  /** Gives the slot back unless another lease of the same stream key still holds it. Idempotent. */
  release(): Promise<void>
}

export interface AcquireInput {
  tenantId: string
  workspaceId: string
  /**
   * Names the stream, e.g. the LibreChat stream id with its user: acquiring a key that already
   * holds a slot takes no second one.
   */
  streamKey: string
  /** `maxConcurrentStreams`; `null` = no limit (the stream is still tracked). */
  limit: number | null
}

export type StreamSlotDecision =
  | { acquired: true; lease: StreamLease }
  | {
      acquired: false
      /** `concurrentStreams` for the workspace; `resetAt` is when the soonest lease would lapse. */
      limit: LimitExceeded & { limitName: 'concurrentStreams' }
      /** Whole seconds until `resetAt`, at least 1. */
      retryAfterSeconds: number
    }

export interface StreamSlots {
  acquire(input: AcquireInput): Promise<StreamSlotDecision>
}

export interface StreamSlotsOptions {
  redis: Redis
  /** Default `gw:streams:`; tests give each file its own. Must not contain braces. */
  keyPrefix?: string
  /** How long a lease lives without a renewal: how long a dead replica's streams keep slots. */
  leaseMs: number
}

/**
 * `maxConcurrentStreams` (API.md §4): open SSE streams per workspace, counted in Redis across
 * every gateway replica with leases that free themselves when a replica dies.
 */
export function createStreamSlots(options: StreamSlotsOptions): StreamSlots {
  const keyPrefix = options.keyPrefix ?? DEFAULT_STREAM_SLOTS_KEY_PREFIX
  assertKeyPrefix(keyPrefix)
  if (!Number.isSafeInteger(options.leaseMs) || options.leaseMs <= 0)
    throw new RangeError(`leaseMs must be a positive whole number, not ${options.leaseMs}`)
  const { redis, leaseMs } = options
  const acquireScript = defineLimitScript(redis, ACQUIRE_SCRIPT)
  const renewScript = defineLimitScript(redis, RENEW_SCRIPT)

  function leaseOf(key: string, streamKey: string, member: string): StreamLease {
    let released = false
    return {
      streamKey,
      async renew() {
        if (released) return false
        const [renewed] = integerReply(await renewScript([key], [leaseMs, member]), 1)
        return renewed === 1
      },
      async release() {
        if (released) return
        try {
          await redis.zrem(key, member)
        } catch (error) {
          throw new LimitStoreUnavailableError({ cause: error })
        }
        released = true
      },
    }
  }

  return {
    async acquire(input) {
      assertLimit('limit', input.limit, Number.MAX_SAFE_INTEGER)
      if (input.streamKey.length === 0) throw new RangeError('streamKey must not be empty')
      const key = `${keyPrefix}{${keySegment('tenantId', input.tenantId)}}:${keySegment('workspaceId', input.workspaceId)}`
      const leaseId = randomUUID()
      const [acquired, now = 0, used = 0, moment = 0] = integerReply(
        await acquireScript([key], [leaseMs, input.limit ?? -1, input.streamKey, leaseId]),
        4,
      )
      if (acquired === 1)
        return {
          acquired: true,
          lease: leaseOf(key, input.streamKey, `${input.streamKey} ${leaseId}`),
        }
      return {
        acquired: false,
        limit: {
          limitName: 'concurrentStreams',
          scope: 'workspace',
          limit: input.limit ?? 0,
          used,
          resetAt: new Date(moment).toISOString(),
        },
        retryAfterSeconds: Math.max(1, Math.ceil((moment - now) / 1000)),
      }
    },
  }
}

/** Workspaces remembered at once; the oldest are forgotten first (a map keeps insertion order). */
const REFUSALS_REMEMBERED = 10_000

/** Workspaces refused a stream slot in the last `forMs`. */
export function createRecentRefusals(forMs: number) {
  const until = new Map<string, number>()
  return {
    mark(workspaceId: string) {
      until.delete(workspaceId)
      if (until.size >= REFUSALS_REMEMBERED) {
        const oldest = until.keys().next().value
        if (oldest !== undefined) until.delete(oldest)
      }
      until.set(workspaceId, Date.now() + forMs)
    },
    has(workspaceId: string) {
      const expiry = until.get(workspaceId)
      if (expiry === undefined) return false
      if (expiry > Date.now()) return true
      until.delete(workspaceId)
      return false
    },
  }
}
