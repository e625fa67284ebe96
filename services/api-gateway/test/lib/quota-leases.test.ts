import { randomUUID } from 'node:crypto'
import { uniqueTestName } from '@platform/local-infra/vitest'
import {
  type EffectivePolicy,
  type QuotaStatus,
  quotaReservationsKey,
} from '@platform/shared-types'
import { describe, expect, it, onTestFinished } from 'vitest'
import {
  createQuotaReservations,
  isRefusal,
  LEASE_IDLE_MS,
  type QuotaRefusal,
  type Reservation,
} from '../../src/lib/quota-reservations.js'
import { quotaWith } from '../helpers/quota.js'
import { commandsNaming, connectRedis } from '../helpers/redis-clients.js'
import { waitFor } from '../helpers/stream-client.js'

const redis = connectRedis()
const run = uniqueTestName('quota-leases')
/** Mid-minute, mid-month: nothing crosses a boundary unless a test moves the clock there. */
const START = Date.UTC(2026, 10, 18, 12, 30, 20)
const UNLIMITED = 1_000_000_000

function manualClock(start = START) {
  let now = start
  return {
    now: () => now,
    advance(ms: number) {
      now += ms
    },
  }
}
type Clock = ReturnType<typeof manualClock>

function zeroStanding(): QuotaStatus {
  const unused = { limit: null, used: 0, reserved: 0, remaining: null }
  return {
    monthlyTokens: unused,
    monthlyCostUsd: { limit: null, used: 0 },
    periodStart: '2026-11-01T00:00:00.000Z',
    resetAt: '2026-12-01T00:00:00.000Z',
    member: unused,
  }
}

/** A workspace of its own tenant, so each test's keys are its own. */
function policyWith(quota: Partial<EffectivePolicy['quota']> = {}): EffectivePolicy {
  const id = randomUUID()
  return {
    workspaceId: `ws-${id}`,
    workspaceName: 'Leases',
    tenantId: `${run}-${id}`,
    timeZone: 'UTC',
    version: 1,
    models: { allow: ['oai:*'] },
    mcp: { servers: [], tools: {} },
    params: { maxOutputTokens: null, temperature: null },
    systemPrompt: null,
    quota: quotaWith({
      monthlyTokens: UNLIMITED,
      monthlyCostUsd: 1_000,
      memberMonthlyTokens: UNLIMITED,
      tpm: UNLIMITED,
      memberTpm: UNLIMITED,
      ...quota,
    }),
  }
}

/** A gateway replica's reservations, closed (its leases given back) after the test. */
function replica(clock: Clock) {
  const quota = createQuotaReservations({
    redis,
    standing: async () => zeroStanding(),
    reservationTtlMs: 600_000,
    now: clock.now,
  })
  onTestFinished(() => quota.close())
  return quota
}

const call = (policy: EffectivePolicy, userId = 'alice', tokens = 100) => ({
  callId: randomUUID(),
  policy,
  userId,
  tokens,
  costMicros: tokens,
})

function admitted(answer: Reservation | QuotaRefusal): Reservation {
  if (isRefusal(answer)) throw new Error(`refused: ${JSON.stringify(answer)}`)
  return answer
}

const reservationsOf = async (policy: EffectivePolicy) =>
  Object.entries(
    await redis.hgetall(quotaReservationsKey(policy.tenantId, policy.workspaceId)),
  ).map(([field, value]) => ({ field, ...(JSON.parse(value) as { tokens: number }) }))

const leasesOf = async (policy: EffectivePolicy) =>
  (await reservationsOf(policy)).filter((entry) => entry.field.startsWith('lease:'))

async function leaseTaken(policy: EffectivePolicy) {
  await waitFor('a lease', async () => (await leasesOf(policy)).length > 0)
  return leasesOf(policy)
}

/** Two calls close together, then the lease the second one asked for. */
async function backToBack(quota: ReturnType<typeof replica>, policy: EffectivePolicy) {
  admitted(await quota.reserve(call(policy)))
  admitted(await quota.reserve(call(policy)))
  return leaseTaken(policy)
}

const monthKey = (policy: EffectivePolicy) =>
  `gw:quota-used:{${policy.tenantId}}:${policy.workspaceId}:2026-11`
const minuteKey = (policy: EffectivePolicy, atMs = START) =>
  `gw:tpm:{${policy.tenantId}}:${policy.workspaceId}:${Math.floor(atMs / 60_000)}`

describe('quota leases', () => {
  it('admit a member calling back to back without a round trip, and count every call exactly', async () => {
    const clock = manualClock()
    const quota = replica(clock)
    const policy = policyWith()
    const reservations: Reservation[] = []
    // The first call goes to Redis alone; the second, close behind it, asks for a lease.
    reservations.push(admitted(await quota.reserve(call(policy))))
    expect(await leasesOf(policy)).toEqual([])
    reservations.push(admitted(await quota.reserve(call(policy))))
    const [lease] = await leaseTaken(policy)
    expect(lease?.tokens).toBe(800)

    const commands = await commandsNaming(policy.workspaceId, async () => {
      for (let i = 0; i < 3; i++) reservations.push(admitted(await quota.reserve(call(policy))))
    })
    expect(commands).toEqual([])
    expect(reservations.slice(2).every((reservation) => reservation.lease !== undefined)).toBe(true)

    for (const reservation of reservations)
      await quota.settle(reservation, { tokens: 60, costMicros: 60 })
    // What the lease still holds: 800 less the three calls drawn, all of them settled.
    expect(await leasesOf(policy)).toMatchObject([{ tokens: 500 }])
    expect(await redis.hget(monthKey(policy), 'tokens')).toBe('300')

    await quota.close()
    expect(await reservationsOf(policy)).toEqual([])
    // The minute counts what the five calls used, the unused lease given back.
    expect(await redis.hget(minuteKey(policy), 'w')).toBe('300')
    expect(await redis.hget(minuteKey(policy), 'u:alice')).toBe('300')
  })

  it('keep what a drawn call reserved until it settles, after its lease is given back', async () => {
    const clock = manualClock()
    const quota = replica(clock)
    const policy = policyWith()
    await backToBack(quota, policy)
    const running = admitted(await quota.reserve(call(policy)))
    expect(running.lease).toBeDefined()

    await quota.close()
    expect(await leasesOf(policy)).toMatchObject([{ tokens: 100, released: true }])
    await quota.settle(running, { tokens: 40, costMicros: 40 })
    expect(await leasesOf(policy)).toEqual([])
  })

  it('never admit past a budget, however many replicas and members lease at once', async () => {
    const clock = manualClock()
    const budget = 10_000
    const policy = policyWith({ monthlyTokens: budget, memberMonthlyTokens: null })
    const replicas = [replica(clock), replica(clock)]
    const granted: Reservation[] = []
    let refusals = 0
    await Promise.all(
      replicas.flatMap((quota, replicaIndex) =>
        ['alice', 'bob', 'carol'].map(async (userId) => {
          for (let i = 0; i < 60; i++) {
            const answer = await quota.reserve(call(policy, `${userId}-${replicaIndex}`))
            if (isRefusal(answer)) refusals += 1
            else granted.push(answer)
          }
        }),
      ),
    )
    expect(granted.length * 100).toBeLessThanOrEqual(budget)
    expect(refusals).toBeGreaterThan(0)
    // Leases are small next to what is left: little of the budget is stranded in them.
    expect(granted.length).toBeGreaterThanOrEqual(90)
    expect(granted.some((reservation) => reservation.lease !== undefined)).toBe(true)

    for (const reservation of granted)
      await replicas[0]?.settle(reservation, { tokens: 100, costMicros: 100 })
    await Promise.all(replicas.map((quota) => quota.close()))
    expect(Number(await redis.hget(monthKey(policy), 'tokens'))).toBe(granted.length * 100)
    expect(await reservationsOf(policy)).toEqual([])
  })

  it('are not taken when they could not cover two calls of what the limits leave', async () => {
    const clock = manualClock()
    const quota = replica(clock)
    // 1 000 tokens: a lease may take a sixteenth of what is left, less than two 100-token calls.
    const policy = policyWith({ monthlyTokens: 1_000 })
    for (let i = 0; i < 5; i++) admitted(await quota.reserve(call(policy)))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await leasesOf(policy)).toEqual([])
    expect(await reservationsOf(policy)).toHaveLength(5)
  })

  it('are not taken for a member whose calls come seconds apart', async () => {
    const clock = manualClock()
    const quota = replica(clock)
    const policy = policyWith()
    for (let i = 0; i < 4; i++) {
      admitted(await quota.reserve(call(policy)))
      clock.advance(LEASE_IDLE_MS + 500)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await leasesOf(policy)).toEqual([])
  })

  it('are given back once their member pauses', async () => {
    const clock = manualClock()
    const quota = replica(clock)
    const policy = policyWith()
    await backToBack(quota, policy)
    clock.advance(LEASE_IDLE_MS)
    await waitFor('the lease given back', async () => (await leasesOf(policy)).length === 0, 3_000)
    expect(await redis.hget(minuteKey(policy), 'w')).toBe('200')
  })

  it('stop when the policy’s limits change: the next call goes to Redis', async () => {
    const clock = manualClock()
    const quota = replica(clock)
    const policy = policyWith()
    const [first] = await backToBack(quota, policy)

    // The same policy read again (a new object, same limits) keeps the lease…
    const reread = { ...policy, quota: { ...policy.quota } }
    expect(admitted(await quota.reserve(call(reread))).lease).toBeDefined()
    // …new limits do not.
    const changed = { ...policy, version: 2, quota: { ...policy.quota, tpm: 500_000 } }
    const afterChange = await commandsNaming(policy.workspaceId, async () => {
      expect(admitted(await quota.reserve(call(changed))).lease).toBeUndefined()
    })
    expect(afterChange.some(([command]) => command?.toLowerCase() === 'evalsha')).toBe(true)
    // Given back but for the call drawn from it, still running.
    await waitFor('the old lease given back', async () =>
      (await leasesOf(policy)).some(
        (lease) => lease.field === first?.field && 'released' in lease && lease.tokens === 100,
      ),
    )
  })

  it('stop at the end of their minute: the next call goes to Redis and counts in its own', async () => {
    // 300 ms before a minute ends: the lease outlives neither its idle time nor its window.
    const beforeMinuteEnds = Date.UTC(2026, 10, 18, 12, 30, 59, 700)
    const clock = manualClock(beforeMinuteEnds)
    const quota = replica(clock)
    const policy = policyWith()
    await backToBack(quota, policy)
    expect(admitted(await quota.reserve(call(policy))).lease).toBeDefined()

    clock.advance(400)
    const nextMinute = await commandsNaming(policy.workspaceId, async () => {
      const reservation = admitted(await quota.reserve(call(policy)))
      expect(reservation.lease).toBeUndefined()
      expect(reservation.minute).toBe(Math.floor((beforeMinuteEnds + 400) / 60_000))
    })
    expect(nextMinute.some(([command]) => command?.toLowerCase() === 'evalsha')).toBe(true)
  })
})
