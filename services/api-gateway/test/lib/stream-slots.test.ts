import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { uniqueTestName } from '@platform/local-infra/vitest'
import { LimitErrorResponseSchema } from '@platform/shared-types'
import { describe, expect, it } from 'vitest'
import { LimitStoreUnavailableError } from '../../src/lib/limit-store.js'
import {
  type AcquireInput,
  createStreamSlots,
  type StreamLease,
  type StreamSlotDecision,
} from '../../src/lib/stream-slots.js'
import {
  commandsNaming,
  connectRedis,
  silentRedis,
  unreachableRedis,
} from '../helpers/redis-clients.js'

const keyPrefix = `${uniqueTestName('stream-slots')}:gw:streams:`
const redis = connectRedis()

/** Long enough never to lapse within a test that is not about lapsing. */
const LONG_LEASE_MS = 60_000
/** Short enough to watch lapse. */
const SHORT_LEASE_MS = 600

/** Each test its own workspace (tenant), so its set is its own. */
function workspace() {
  const tenantId = `tenant-${randomUUID()}`
  return {
    tenantId,
    key: `${keyPrefix}{${tenantId}}:ws-1`,
    input: (streamKey: string, limit: number | null): AcquireInput => ({
      tenantId,
      workspaceId: 'ws-1',
      streamKey,
      limit,
    }),
  }
}

function leaseOf(decision: StreamSlotDecision): StreamLease {
  if (!decision.acquired) throw new Error(`expected a slot, got ${JSON.stringify(decision)}`)
  return decision.lease
}

function refusal(decision: StreamSlotDecision) {
  if (decision.acquired) throw new Error(`expected a refusal for ${decision.lease.streamKey}`)
  return decision
}

describe('createStreamSlots', () => {
  it('refuses the stream past the limit with the 429 fields', async () => {
    const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
    const ws = workspace()
    const before = Date.now()
    leaseOf(await slots.acquire(ws.input('stream-a', 2)))
    leaseOf(await slots.acquire(ws.input('stream-b', 2)))
    const after = Date.now()

    const refused = refusal(await slots.acquire(ws.input('stream-c', 2)))
    expect(refused.limit).toMatchObject({
      limitName: 'concurrentStreams',
      scope: 'workspace',
      limit: 2,
      used: 2,
    })
    // The soonest a slot can free by itself: when stream-a's lease would lapse.
    const resetAt = Date.parse(refused.limit.resetAt)
    expect(resetAt).toBeGreaterThanOrEqual(before + LONG_LEASE_MS - 1000)
    expect(resetAt).toBeLessThanOrEqual(after + LONG_LEASE_MS + 1000)
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(59)
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(60)
    const body = {
      statusCode: 429,
      code: 'GW_QUOTA_EXCEEDED',
      error: 'Too Many Requests',
      message: 'Too many open streams',
      ...refused.limit,
    }
    expect(LimitErrorResponseSchema.parse(body)).toEqual(body)
    expect(await redis.zcard(ws.key)).toBe(2)
  })

  it('gives exactly `limit` of 40 concurrent streams a slot, across two replicas', async () => {
    const replicaA = createStreamSlots({ redis: connectRedis(), keyPrefix, leaseMs: LONG_LEASE_MS })
    const replicaB = createStreamSlots({ redis: connectRedis(), keyPrefix, leaseMs: LONG_LEASE_MS })
    const ws = workspace()
    const decisions = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        (index % 2 === 0 ? replicaA : replicaB).acquire(ws.input(`stream-${index}`, 4)),
      ),
    )
    expect(decisions.filter((decision) => decision.acquired)).toHaveLength(4)
    expect(
      decisions.filter((decision) => !decision.acquired).map((d) => refusal(d).limit.used),
    ).toEqual(Array(36).fill(4))
    expect(await redis.zcard(ws.key)).toBe(4)
  })

  describe('a reconnect to the same stream', () => {
    it('takes no second slot, even at the limit', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      const reconnect = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      expect(reconnect.streamKey).toBe('stream-a')
      expect(refusal(await slots.acquire(ws.input('stream-b', 1))).limit.used).toBe(1)
    })

    it('keeps its slot when the old connection is released after the new one arrived', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const original = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      const reconnect = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      await original.release()
      expect(refusal(await slots.acquire(ws.input('stream-b', 1))).limit.used).toBe(1)
      expect(await reconnect.renew()).toBe(true)
      await reconnect.release()
      leaseOf(await slots.acquire(ws.input('stream-b', 1)))
    })
  })

  describe('release', () => {
    it('frees the slot once however often it is called', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const lease = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      await lease.release()
      await lease.release()
      const next = leaseOf(await slots.acquire(ws.input('stream-b', 1)))
      await lease.release()
      expect(refusal(await slots.acquire(ws.input('stream-c', 1))).limit.used).toBe(1)
      await next.release()
    })

    it('tolerates concurrent releases of the same lease', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const lease = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      await Promise.all([lease.release(), lease.release(), lease.release()])
      expect(await redis.exists(ws.key)).toBe(0)
    })

    it('makes renew answer false and never brings the lease back', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const lease = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      await lease.release()
      expect(await lease.renew()).toBe(false)
      expect(await redis.exists(ws.key)).toBe(0)
    })
  })

  describe('leases', () => {
    it('free the slot of a replica that stopped renewing (crashed) once they lapse', async () => {
      const crashingReplica = connectRedis()
      const crashing = createStreamSlots({
        redis: crashingReplica,
        keyPrefix,
        leaseMs: SHORT_LEASE_MS,
      })
      const survivor = createStreamSlots({ redis, keyPrefix, leaseMs: SHORT_LEASE_MS })
      const ws = workspace()
      leaseOf(await crashing.acquire(ws.input('stream-a', 1)))
      crashingReplica.disconnect()
      refusal(await survivor.acquire(ws.input('stream-b', 1)))
      await sleep(SHORT_LEASE_MS + 100)
      const taken = leaseOf(await survivor.acquire(ws.input('stream-b', 1)))
      // Taking the slot pruned the lapsed lease.
      expect(await redis.zrange(ws.key, 0, -1)).toEqual([expect.stringMatching(/^stream-b /)])
      await taken.release()
    })

    it('stay alive while renewed, past several lease periods', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: SHORT_LEASE_MS })
      const ws = workspace()
      const lease = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      for (let round = 0; round < 6; round += 1) {
        await sleep(SHORT_LEASE_MS / 3)
        expect(await lease.renew()).toBe(true)
      }
      refusal(await slots.acquire(ws.input('stream-b', 1)))
      await sleep(SHORT_LEASE_MS + 100)
      leaseOf(await slots.acquire(ws.input('stream-b', 1)))
      expect(await lease.renew()).toBe(false)
    })

    it('let the set expire on its own with its latest lease', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: SHORT_LEASE_MS })
      const ws = workspace()
      leaseOf(await slots.acquire(ws.input('stream-a', 3)))
      leaseOf(await slots.acquire(ws.input('stream-b', 3)))
      const ttl = await redis.pttl(ws.key)
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(SHORT_LEASE_MS)
      await sleep(SHORT_LEASE_MS + 100)
      expect(await redis.exists(ws.key)).toBe(0)
    })
  })

  describe('null and 0 limits', () => {
    it('tracks streams without a limit, so a limit set later counts them', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const decisions = await Promise.all(
        Array.from({ length: 20 }, (_, index) => slots.acquire(ws.input(`stream-${index}`, null))),
      )
      expect(decisions.every((decision) => decision.acquired)).toBe(true)
      expect(refusal(await slots.acquire(ws.input('stream-late', 3))).limit).toMatchObject({
        limit: 3,
        used: 20,
      })
    })

    it('refuses every new stream at 0', async () => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const refused = refusal(await slots.acquire(ws.input('stream-a', 0)))
      expect(refused.limit).toMatchObject({ limitName: 'concurrentStreams', limit: 0, used: 0 })
      expect(refused.retryAfterSeconds).toBe(60)
      expect(await redis.exists(ws.key)).toBe(0)
    })
  })

  it('keeps the tenant as the hash tag and encodes ids', async () => {
    const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
    const tenantId = `t}{${randomUUID()}`
    const lease = leaseOf(
      await slots.acquire({
        tenantId,
        workspaceId: 'w:1',
        streamKey: 'user 1 / stream 9',
        limit: 1,
      }),
    )
    const key = `${keyPrefix}{${encodeURIComponent(tenantId)}}:w%3A1`
    expect(await redis.zrange(key, 0, -1)).toEqual([
      expect.stringMatching(/^user 1 \/ stream 9 [0-9a-f-]{36}$/),
    ])
    // A stream key with spaces still names one stream: a reconnect to it takes no second slot.
    leaseOf(
      await slots.acquire({
        tenantId,
        workspaceId: 'w:1',
        streamKey: 'user 1 / stream 9',
        limit: 1,
      }),
    )
    await lease.release()
  })

  describe('refuses bad arguments before touching Redis', () => {
    it.each([
      ['a negative limit', { limit: -1 }, /limit must be null or a whole number/],
      ['a fractional limit', { limit: 2.5 }, /limit must be null or a whole number/],
      ['an empty stream key', { streamKey: '' }, /streamKey must not be empty/],
      ['an empty workspace id', { workspaceId: '' }, /workspaceId must not be empty/],
    ])('%s', async (_label, overrides, message) => {
      const slots = createStreamSlots({ redis, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      await expect(slots.acquire({ ...ws.input('stream-a', 1), ...overrides })).rejects.toThrow(
        message,
      )
      expect(await redis.exists(ws.key)).toBe(0)
    })

    it.each([0, -5, 1.5, Number.NaN])('a lease of %s ms', (leaseMs) => {
      expect(() => createStreamSlots({ redis, keyPrefix, leaseMs })).toThrow(RangeError)
    })

    it('a key prefix with braces', () => {
      expect(() => createStreamSlots({ redis, keyPrefix: '{gw}:', leaseMs: 1000 })).toThrow(
        RangeError,
      )
    })
  })

  describe('fails closed', () => {
    it('throws LimitStoreUnavailableError when Redis refuses the connection', async () => {
      const slots = createStreamSlots({ redis: await unreachableRedis(), keyPrefix, leaseMs: 1000 })
      const failure = await slots.acquire(workspace().input('stream-a', 4)).catch((e: unknown) => e)
      expect(failure).toBeInstanceOf(LimitStoreUnavailableError)
      expect((failure as Error).cause).toBeInstanceOf(Error)
    })

    it('throws LimitStoreUnavailableError when Redis takes the command and never answers', async () => {
      const slots = createStreamSlots({ redis: await silentRedis(200), keyPrefix, leaseMs: 1000 })
      const failure = await slots.acquire(workspace().input('stream-a', 4)).catch((e: unknown) => e)
      expect(failure).toBeInstanceOf(LimitStoreUnavailableError)
      expect(((failure as Error).cause as Error).message).toMatch(/timed out/i)
    })

    it('renew and release throw it too once the connection is gone', async () => {
      const client = connectRedis()
      const slots = createStreamSlots({ redis: client, keyPrefix, leaseMs: LONG_LEASE_MS })
      const ws = workspace()
      const lease = leaseOf(await slots.acquire(ws.input('stream-a', 1)))
      client.disconnect()
      await expect(lease.renew()).rejects.toBeInstanceOf(LimitStoreUnavailableError)
      await expect(lease.release()).rejects.toBeInstanceOf(LimitStoreUnavailableError)
      // A release that failed is not remembered as done: the stream still holds its slot.
      expect(await redis.zcard(ws.key)).toBe(1)
    })
  })

  it('costs one Redis command (one round trip) per acquire, renew and release', async () => {
    const slots = createStreamSlots({ redis: connectRedis(), keyPrefix, leaseMs: LONG_LEASE_MS })
    const ws = workspace()
    leaseOf(await slots.acquire(ws.input('warm-up', 4))) // loads the scripts if Redis lacks them
    await leaseOf(await slots.acquire(ws.input('warm-up', 4))).renew()
    const commands = await commandsNaming(ws.tenantId, async () => {
      const lease = leaseOf(await slots.acquire(ws.input('stream-a', 4)))
      await lease.renew()
      await lease.release()
    })
    expect(commands.map((args) => args[0]?.toLowerCase())).toEqual(['evalsha', 'evalsha', 'zrem'])
  })
})
