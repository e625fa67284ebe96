import { randomUUID } from 'node:crypto'
import { uniqueTestName } from '@platform/local-infra/vitest'
import { LimitErrorResponseSchema } from '@platform/shared-types'
import { describe, expect, it } from 'vitest'
import { defineLimitScript, LimitStoreUnavailableError } from '../../src/lib/limit-store.js'
import {
  type ConsumeInput,
  createRateLimiter,
  type RateLimitDecision,
  type RateLimiter,
} from '../../src/lib/rate-limits.js'
import {
  commandsNaming,
  connectRedis,
  silentRedis,
  unreachableRedis,
} from '../helpers/redis-clients.js'

const keyPrefix = `${uniqueTestName('rate-limits')}:gw:rl:`
const redis = connectRedis()

/** 100 ms before a minute boundary: where a fixed window would hand out its limit twice. */
const BEFORE_BOUNDARY = Date.UTC(2026, 0, 15, 9, 59, 59, 900)

/** A clock the test moves by hand; every limiter built on it reads the same time. */
function manualClock(start = BEFORE_BOUNDARY) {
  let now = start
  return {
    now: () => now,
    advance(ms: number) {
      now += ms
    },
  }
}

/** Each test its own tenant, so its keys are its own. */
function request(overrides: Partial<ConsumeInput> = {}): ConsumeInput {
  return {
    tenantId: `tenant-${randomUUID()}`,
    workspaceId: 'ws-1',
    userId: 'alice',
    rpm: null,
    memberRpm: null,
    ...overrides,
  }
}

const allowedCount = (decisions: RateLimitDecision[]) =>
  decisions.filter((decision) => decision.allowed).length

function refusal(decision: RateLimitDecision) {
  if (decision.allowed) throw new Error('expected a refusal, got an allowed request')
  return decision
}

async function consumeTimes(limiter: RateLimiter, input: ConsumeInput, times: number) {
  const decisions: RateLimitDecision[] = []
  for (let i = 0; i < times; i += 1) decisions.push(await limiter.consume(input))
  return decisions
}

async function keysOf(tenantId: string) {
  return (await redis.keys(`${keyPrefix}{${encodeURIComponent(tenantId)}}*`)).sort()
}

describe('createRateLimiter', () => {
  it('lets exactly rpm of 100 concurrent requests through', async () => {
    const limiter = createRateLimiter({ redis, keyPrefix })
    const base = request({ rpm: 10 })
    const before = Date.now()
    const decisions = await Promise.all(
      Array.from({ length: 100 }, (_, index) =>
        limiter.consume({ ...base, userId: `user-${index}` }),
      ),
    )
    expect(allowedCount(decisions)).toBe(10)
    for (const decision of decisions.filter((each) => !each.allowed)) {
      const refused = refusal(decision)
      expect(refused.limit).toMatchObject({
        limitName: 'rpm',
        scope: 'workspace',
        limit: 10,
        used: 10,
      })
      expect(refused.retryAfterSeconds).toBe(6)
      // Redis' clock decides: the next request fits 6 s (60 s / 10) after the burst began.
      const resetAt = Date.parse(refused.limit.resetAt)
      expect(resetAt).toBeGreaterThanOrEqual(before + 6000 - 1000)
      expect(resetAt).toBeLessThanOrEqual(Date.now() + 6000 + 1000)
    }
  })

  it("lets exactly memberRpm of one member's 100 concurrent requests through", async () => {
    const limiter = createRateLimiter({ redis, keyPrefix })
    const input = request({ rpm: 1000, memberRpm: 7 })
    const decisions = await Promise.all(Array.from({ length: 100 }, () => limiter.consume(input)))
    expect(allowedCount(decisions)).toBe(7)
    expect(
      decisions.filter((each) => !each.allowed).map((each) => refusal(each).limit.limitName),
    ).toEqual(Array(93).fill('memberRpm'))
  })

  it('shares one count between replicas (two clients, two limiters)', async () => {
    const replicaA = createRateLimiter({ redis: connectRedis(), keyPrefix })
    const replicaB = createRateLimiter({ redis: connectRedis(), keyPrefix })
    const base = request({ rpm: 20 })
    const decisions = await Promise.all(
      Array.from({ length: 60 }, (_, index) =>
        (index % 2 === 0 ? replicaA : replicaB).consume({ ...base, userId: `user-${index}` }),
      ),
    )
    expect(allowedCount(decisions)).toBe(20)
    const next = refusal(await replicaA.consume(base))
    expect(next.limit).toMatchObject({ limitName: 'rpm', limit: 20, used: 20 })
  })

  it('answers each request with the RateLimit headers and a refusal with the 429 fields', async () => {
    const clock = manualClock()
    const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
    const input = request({ rpm: 10 })

    const allowed = await consumeTimes(limiter, input, 10)
    expect(allowed.map((decision) => decision.headers)).toEqual(
      Array.from({ length: 10 }, (_, index) => ({
        'RateLimit-Limit': '10',
        'RateLimit-Remaining': String(9 - index),
        // Until the whole limit is back; once nothing remains, until the next request fits.
        'RateLimit-Reset': String(index === 9 ? 6 : 6 * (index + 1)),
        'RateLimit-Policy': '10;w=60',
      })),
    )
    expect(allowed.every((decision) => decision.allowed)).toBe(true)

    clock.advance(1000)
    const refused = await limiter.consume(input)
    expect(refused).toEqual({
      allowed: false,
      limit: {
        limitName: 'rpm',
        scope: 'workspace',
        limit: 10,
        used: 10,
        resetAt: new Date(BEFORE_BOUNDARY + 6000).toISOString(),
      },
      retryAfterSeconds: 5,
      headers: {
        'RateLimit-Limit': '10',
        'RateLimit-Remaining': '0',
        'RateLimit-Reset': '5',
        'RateLimit-Policy': '10;w=60',
      },
    })
    // The refusal is what the 429 body carries (API.md §1).
    const body = {
      statusCode: 429,
      code: 'GW_RATE_LIMITED',
      error: 'Too Many Requests',
      message: 'Too many requests: workspace',
      ...refusal(refused).limit,
    }
    expect(LimitErrorResponseSchema.parse(body)).toEqual(body)
  })

  it('refuses by the member limit without counting against the workspace, and the reverse', async () => {
    const clock = manualClock()
    const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
    const base = request({ rpm: 10, memberRpm: 3 })
    const as = (userId: string) => ({ ...base, userId })

    const alice = await consumeTimes(limiter, as('alice'), 3)
    expect(alice.every((decision) => decision.allowed)).toBe(true)
    // The member's limit is the tighter one: the headers are its.
    expect(alice[0]?.headers).toEqual({
      'RateLimit-Limit': '3',
      'RateLimit-Remaining': '2',
      'RateLimit-Reset': '20',
      'RateLimit-Policy': '3;w=60',
    })
    const aliceRefused = await consumeTimes(limiter, as('alice'), 5)
    for (const decision of aliceRefused)
      expect(refusal(decision)).toMatchObject({
        limit: { limitName: 'memberRpm', scope: 'member', limit: 3, used: 3 },
        retryAfterSeconds: 20,
      })

    // Alice's five refusals left the workspace's 7 remaining untouched.
    const others = [
      ...(await consumeTimes(limiter, as('bob'), 3)),
      ...(await consumeTimes(limiter, as('carol'), 3)),
      ...(await consumeTimes(limiter, as('dave'), 1)),
    ]
    expect(others.every((decision) => decision.allowed)).toBe(true)
    expect(others.at(-1)?.headers).toEqual({
      'RateLimit-Limit': '10',
      'RateLimit-Remaining': '0',
      'RateLimit-Reset': '6',
      'RateLimit-Policy': '10;w=60',
    })

    const daveRefused = refusal(await limiter.consume(as('dave')))
    expect(daveRefused.limit).toMatchObject({
      limitName: 'rpm',
      scope: 'workspace',
      limit: 10,
      used: 10,
    })
    // …and that refusal did not count against Dave: he has used 1 of his 3, not 2.
    const daveAlone = await limiter.consume({ ...as('dave'), rpm: null })
    expect(daveAlone).toEqual({
      allowed: true,
      headers: {
        'RateLimit-Limit': '3',
        'RateLimit-Remaining': '1',
        'RateLimit-Reset': '40',
        'RateLimit-Policy': '3;w=60',
      },
    })
  })

  it('names the limit that frees later when both refuse', async () => {
    const clock = manualClock()
    const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
    const base = request({ rpm: 2, memberRpm: 1 })
    expect((await limiter.consume({ ...base, userId: 'alice' })).allowed).toBe(true)
    expect((await limiter.consume({ ...base, userId: 'bob' })).allowed).toBe(true)
    // Workspace: next fits in 30 s; Alice: in 60 s. Retrying after 30 s would still be refused.
    const both = refusal(await limiter.consume({ ...base, userId: 'alice' }))
    expect(both.limit).toMatchObject({ limitName: 'memberRpm', scope: 'member', limit: 1, used: 1 })
    expect(both.retryAfterSeconds).toBe(60)
    expect(both.headers['RateLimit-Policy']).toBe('1;w=60')
  })

  it("names the member's limit when both refuse and free at the same moment", async () => {
    const clock = manualClock()
    const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
    const input = request({ rpm: 1, memberRpm: 1 })
    expect((await limiter.consume(input)).allowed).toBe(true)
    const tie = refusal(await limiter.consume(input))
    expect(tie.limit).toMatchObject({ limitName: 'memberRpm', scope: 'member' })
    expect(tie.retryAfterSeconds).toBe(60)
  })

  describe('at window edges', () => {
    it('allows no second burst across a minute boundary', async () => {
      const clock = manualClock()
      const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
      const input = request({ rpm: 10 })
      expect(allowedCount(await consumeTimes(limiter, input, 10))).toBe(10)
      clock.advance(200) // 10:00:00.100, a new fixed window would start here
      expect(allowedCount(await consumeTimes(limiter, input, 10))).toBe(0)
      clock.advance(5799) // 1 ms before the first refill
      expect(allowedCount(await consumeTimes(limiter, input, 3))).toBe(0)
      clock.advance(1)
      expect(allowedCount(await consumeTimes(limiter, input, 3))).toBe(1)
    })

    it('keeps a hammering client to the burst plus the steady rate over three minutes', async () => {
      const clock = manualClock()
      const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
      const input = request({ rpm: 10 })
      const passedAt: number[] = []
      for (let elapsed = 0; elapsed < 180_000; elapsed += 500) {
        if ((await limiter.consume(input)).allowed) passedAt.push(elapsed)
        clock.advance(500)
      }
      // The burst of 10 as fast as it asks, then one every 6 s: 10 + 29 in 180 s.
      expect(passedAt.slice(0, 10)).toEqual(Array.from({ length: 10 }, (_, index) => 500 * index))
      expect(passedAt.slice(10)).toEqual(
        Array.from({ length: 29 }, (_, index) => 6000 * (index + 1)),
      )
      // The GCRA bound: any stretch of d ms admits at most 10 + d / 6000 requests.
      for (let first = 0; first < passedAt.length; first += 1)
        for (let last = first; last < passedAt.length; last += 1) {
          const span = (passedAt[last] ?? 0) - (passedAt[first] ?? 0)
          expect(last - first + 1).toBeLessThanOrEqual(10 + Math.floor(span / 6000))
        }
    })

    it('refills to the whole limit after a quiet minute', async () => {
      const clock = manualClock()
      const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
      const input = request({ rpm: 4 })
      expect(allowedCount(await consumeTimes(limiter, input, 6))).toBe(4)
      clock.advance(60_000)
      const refilled = await consumeTimes(limiter, input, 6)
      expect(allowedCount(refilled)).toBe(4)
      expect(refilled[0]?.headers['RateLimit-Remaining']).toBe('3')
    })
  })

  describe('null and 0 limits', () => {
    it('lets everything through without headers or keys when neither limit applies', async () => {
      const limiter = createRateLimiter({ redis, keyPrefix })
      const input = request()
      const decisions = await Promise.all(Array.from({ length: 50 }, () => limiter.consume(input)))
      expect(decisions).toEqual(Array(50).fill({ allowed: true, headers: {} }))
      expect(await keysOf(input.tenantId)).toEqual([])
    })

    it('refuses everything at rpm 0', async () => {
      const clock = manualClock()
      const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
      const decision = await limiter.consume(request({ rpm: 0, memberRpm: 5 }))
      expect(decision).toEqual({
        allowed: false,
        limit: {
          limitName: 'rpm',
          scope: 'workspace',
          limit: 0,
          used: 0,
          resetAt: new Date(BEFORE_BOUNDARY + 60_000).toISOString(),
        },
        retryAfterSeconds: 60,
        headers: {
          'RateLimit-Limit': '0',
          'RateLimit-Remaining': '0',
          'RateLimit-Reset': '60',
          'RateLimit-Policy': '0;w=60',
        },
      })
    })

    it('refuses everything at memberRpm 0 and counts nothing against the workspace', async () => {
      const limiter = createRateLimiter({ redis, keyPrefix })
      const input = request({ rpm: 100, memberRpm: 0 })
      const refused = await consumeTimes(limiter, input, 3)
      expect(refused.map((decision) => refusal(decision).limit.limitName)).toEqual([
        'memberRpm',
        'memberRpm',
        'memberRpm',
      ])
      const other = await limiter.consume({ ...input, userId: 'bob', memberRpm: null })
      expect(other.headers['RateLimit-Remaining']).toBe('99')
    })

    it('answers with the member limit alone when the workspace has none', async () => {
      const limiter = createRateLimiter({ redis, keyPrefix })
      const input = request({ memberRpm: 2 })
      const decisions = await consumeTimes(limiter, input, 3)
      expect(decisions.map((decision) => decision.headers['RateLimit-Remaining'])).toEqual([
        '1',
        '0',
        '0',
      ])
      expect(refusal(decisions[2] as RateLimitDecision).limit.limitName).toBe('memberRpm')
      expect(await keysOf(input.tenantId)).toEqual([
        `${keyPrefix}{${encodeURIComponent(input.tenantId)}}:ws-1:member:alice:rpm`,
      ])
    })
  })

  describe('keys', () => {
    it('puts the tenant in the hash tag and expires with the refill', async () => {
      const limiter = createRateLimiter({ redis, keyPrefix })
      const input = request({ rpm: 10, memberRpm: 5 })
      await limiter.consume(input)
      const tag = `${keyPrefix}{${input.tenantId}}`
      expect(await keysOf(input.tenantId)).toEqual([
        `${tag}:ws-1:member:alice:rpm`,
        `${tag}:ws-1:rpm`,
      ])
      // Each key lives until its bucket is full again: one interval after one request.
      const workspaceTtl = await redis.pttl(`${tag}:ws-1:rpm`)
      const memberTtl = await redis.pttl(`${tag}:ws-1:member:alice:rpm`)
      expect(workspaceTtl).toBeGreaterThan(5000)
      expect(workspaceTtl).toBeLessThanOrEqual(6000)
      expect(memberTtl).toBeGreaterThan(11_000)
      expect(memberTtl).toBeLessThanOrEqual(12_000)
    })

    it('encodes ids so separators and braces in them neither collide nor move the hash tag', async () => {
      const clock = manualClock()
      const limiter = createRateLimiter({ redis, keyPrefix, clock: clock.now })
      const tenantId = `t}{${randomUUID()}`
      // Without encoding both would be `…:x:member:y:rpm`.
      const crafted = { tenantId, workspaceId: 'x:member:y', userId: 'u', rpm: 1, memberRpm: null }
      const genuine = { tenantId, workspaceId: 'x', userId: 'y', rpm: null, memberRpm: 1 }
      expect((await limiter.consume(crafted)).allowed).toBe(true)
      expect((await limiter.consume(genuine)).allowed).toBe(true)
      expect(await keysOf(tenantId)).toEqual([
        `${keyPrefix}{${encodeURIComponent(tenantId)}}:x%3Amember%3Ay:rpm`,
        `${keyPrefix}{${encodeURIComponent(tenantId)}}:x:member:y:rpm`,
      ])
    })
  })

  describe('refuses bad arguments before touching Redis', () => {
    it.each([
      ['a negative rpm', { rpm: -1 }, /rpm must be null or a whole number/],
      ['a fractional rpm', { rpm: 1.5 }, /rpm must be null or a whole number/],
      ['NaN as memberRpm', { memberRpm: Number.NaN }, /memberRpm must be null or a whole number/],
      ['a rate finer than a microsecond', { rpm: 60_000_001 }, /from 0 to 60000000/],
      ['an empty tenant id', { tenantId: '', rpm: 1 }, /tenantId must not be empty/],
      ['an empty user id', { userId: '', rpm: 1 }, /userId must not be empty/],
    ])('%s', async (_label, overrides, message) => {
      const limiter = createRateLimiter({ redis, keyPrefix })
      const input = request(overrides)
      await expect(limiter.consume(input)).rejects.toThrow(RangeError)
      await expect(limiter.consume(input)).rejects.toThrow(message)
      if (input.tenantId !== '') expect(await keysOf(input.tenantId)).toEqual([])
    })

    it('a key prefix with braces', () => {
      expect(() => createRateLimiter({ redis, keyPrefix: 'gw:{rl}:' })).toThrow(RangeError)
    })
  })

  describe('fails closed', () => {
    it('throws LimitStoreUnavailableError when Redis refuses the connection', async () => {
      const limiter = createRateLimiter({ redis: await unreachableRedis(), keyPrefix })
      const failure = await limiter.consume(request({ rpm: 10 })).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(LimitStoreUnavailableError)
      expect((failure as LimitStoreUnavailableError).message).toBe('The limit store is unreachable')
      expect((failure as LimitStoreUnavailableError).cause).toBeInstanceOf(Error)
    })

    it('throws LimitStoreUnavailableError when Redis takes the command and never answers', async () => {
      const limiter = createRateLimiter({ redis: await silentRedis(200), keyPrefix })
      const started = Date.now()
      const failure = await limiter.consume(request({ rpm: 10 })).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(LimitStoreUnavailableError)
      expect(((failure as Error).cause as Error).message).toMatch(/timed out/i)
      expect(Date.now() - started).toBeLessThan(2000)
    })

    it('even with no limit in play, since the script still has to run', async () => {
      const limiter = createRateLimiter({ redis: await unreachableRedis(), keyPrefix })
      await expect(limiter.consume(request())).rejects.toBeInstanceOf(LimitStoreUnavailableError)
    })
  })

  it('sends a script in full only to a Redis that has not seen it, then by its SHA alone', async () => {
    const marker = `${keyPrefix}script-${randomUUID()}`
    // A script no Redis has cached: its text is unique to this run.
    const script = defineLimitScript(redis, `-- ${marker}\nreturn redis.call('EXISTS', KEYS[1])`)
    const first = await commandsNaming(marker, () => script([marker], []))
    expect(first.map((args) => args[0]?.toLowerCase())).toEqual(['evalsha', 'eval'])
    const second = await commandsNaming(marker, () => script([marker], []))
    expect(second.map((args) => args[0]?.toLowerCase())).toEqual(['evalsha'])
  })

  it('costs one Redis command (one round trip) per consume', async () => {
    const limiter = createRateLimiter({ redis: connectRedis(), keyPrefix })
    const input = request({ rpm: 100, memberRpm: 10 })
    await limiter.consume(input) // loads the script into this Redis if it has never seen it
    const commands = await commandsNaming(input.tenantId, async () => {
      for (let i = 0; i < 5; i += 1) await limiter.consume(input)
    })
    expect(commands.map((args) => args[0]?.toLowerCase())).toEqual(Array(5).fill('evalsha'))
  })
})
