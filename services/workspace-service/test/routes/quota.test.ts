import { quotaReservationsKey, type UsageRecord } from '@platform/shared-types'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errorCode, startTestStack, type TestStack, type TestUser } from '../helpers/stack.js'
import {
  appendUsage,
  changePolicy,
  modelCall,
  patchTenant,
  serviceRedis,
} from '../helpers/usage.js'

let stack: TestStack
let redis: Redis
beforeAll(async () => {
  stack = await startTestStack()
  redis = await serviceRedis(stack)
})
afterAll(async () => {
  await redis?.quit()
  await stack?.close()
})

interface Budget {
  limit: number | null
  used: number
  reserved: number
  remaining: number | null
}

interface QuotaBody {
  monthlyTokens: Budget
  monthlyCostUsd: { limit: number | null; used: number }
  periodStart: string
  resetAt: string
  member: Budget
}

const localFormats = new Map<string, Intl.DateTimeFormat>()

/** The local wall clock of an instant in a zone, read with Intl alone. */
function wallClock(instant: Date, timeZone: string) {
  let format = localFormats.get(timeZone)
  if (format === undefined) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
    localFormats.set(timeZone, format)
  }
  const parts = Object.fromEntries(
    format.formatToParts(instant).map((part) => [part.type, Number(part.value)]),
  )
  return {
    year: parts.year ?? Number.NaN,
    month: parts.month ?? Number.NaN,
    day: parts.day ?? Number.NaN,
    seconds: (parts.hour ?? 0) * 3600 + (parts.minute ?? 0) * 60 + (parts.second ?? 0),
  }
}

/**
 * Local midnight on the 1st of the month `monthsAhead` after `instant`'s, found by trying every
 * quarter-hour offset a zone can have, earliest instant first: independent of the code under
 * test. Answers the instant and how it is written in the zone.
 */
function zonedMonthStart(instant: Date, timeZone: string, monthsAhead: number) {
  const local = wallClock(instant, timeZone)
  const wall = new Date(Date.UTC(local.year, local.month - 1 + monthsAhead, 1))
  for (let offsetMinutes = 14 * 60; offsetMinutes >= -14 * 60; offsetMinutes -= 15) {
    const candidate = new Date(wall.getTime() - offsetMinutes * 60_000)
    const seen = wallClock(candidate, timeZone)
    if (
      seen.year === wall.getUTCFullYear() &&
      seen.month === wall.getUTCMonth() + 1 &&
      seen.day === 1 &&
      seen.seconds === 0
    ) {
      const magnitude = Math.abs(offsetMinutes)
      const offset = `${offsetMinutes < 0 ? '-' : '+'}${String(Math.floor(magnitude / 60)).padStart(2, '0')}:${String(magnitude % 60).padStart(2, '0')}`
      return { at: candidate, written: `${wall.toISOString().slice(0, 10)}T00:00:00${offset}` }
    }
  }
  throw new Error(`no local midnight found for ${wall.toISOString()} in ${timeZone}`)
}

const tokensOf = (records: UsageRecord[]) =>
  records.reduce((sum, record) => sum + record.inputTokens + record.outputTokens, 0)

describe('GET /v1/workspaces/:wid/quota', () => {
  let owner: TestUser
  let member: TestUser
  let tenantId: string
  let workspaceId: string
  const zone = 'Europe/Berlin'
  const now = new Date()
  const monthStart = zonedMonthStart(now, zone, 0)
  const nextMonth = zonedMonthStart(now, zone, 1)
  let ownCalls: UsageRecord[]
  let memberCalls: UsageRecord[]
  let earlierCalls: UsageRecord[]

  async function quota(token: string, wid = workspaceId) {
    const response = await stack.call(token, 'GET', `/v1/workspaces/${wid}/quota`)
    expect(response.statusCode, response.body).toBe(200)
    return response.json<QuotaBody>()
  }

  beforeAll(async () => {
    owner = await stack.user('quota-owner')
    member = await stack.user('quota-member')
    ;({ tenantId, workspaceId } = await stack.tenant(owner, 'Quota Co'))
    await patchTenant(stack, owner.token, tenantId, { timeZone: zone })
    await stack.addMember(owner, workspaceId, member, 'member')
    const mine = { tenantId, workspaceId, userId: owner.id }
    const theirs = { tenantId, workspaceId, userId: member.id }
    const sinceMonthStart = now.getTime() - monthStart.at.getTime()
    ownCalls = [
      // Local midnight on the 1st is still the previous month in UTC: it counts here.
      modelCall(mine, { at: monthStart.at, inputTokens: 1_000, outputTokens: 200 }),
      modelCall(mine, {
        at: new Date(monthStart.at.getTime() + sinceMonthStart / 2),
        inputTokens: 3_000,
        outputTokens: 400,
      }),
    ]
    memberCalls = [
      modelCall(theirs, {
        at: new Date(monthStart.at.getTime() + 30 * 60_000),
        inputTokens: 500,
        outputTokens: 50,
        costUsd: 0.25,
      }),
      modelCall(theirs, {
        at: new Date(now.getTime() - 1_000),
        inputTokens: 700,
        outputTokens: 70,
        costUsd: 0.5,
      }),
    ]
    earlierCalls = [
      modelCall(mine, { at: new Date(monthStart.at.getTime() - 1), inputTokens: 90_000 }),
      modelCall(theirs, {
        at: new Date(monthStart.at.getTime() - 20 * 24 * 3600_000),
        inputTokens: 80_000,
      }),
    ]
    await appendUsage(stack, [...ownCalls, ...memberCalls, ...earlierCalls])
  })

  it("counts this month's input and output tokens in the tenant's zone, not last month's", async () => {
    const body = await quota(owner.token)
    expect(body.monthlyTokens).toEqual({
      limit: null,
      used: tokensOf([...ownCalls, ...memberCalls]),
      reserved: 0,
      remaining: null,
    })
    expect(body.member).toEqual({
      limit: null,
      used: tokensOf(ownCalls),
      reserved: 0,
      remaining: null,
    })
    expect(body.monthlyCostUsd).toEqual({ limit: null, used: 0.0625 * 2 + 0.25 + 0.5 })
    expect(new Date(body.periodStart)).toEqual(monthStart.at)
    expect(body.periodStart).toBe(monthStart.written)
  })

  it("says the budget resets at local midnight on the 1st of next month, with the zone's offset", async () => {
    const body = await quota(owner.token)
    expect(body.resetAt).toBe(nextMonth.written)
    expect(body.resetAt).toMatch(/^\d{4}-\d{2}-01T00:00:00\+0[12]:00$/)
    expect(new Date(body.resetAt)).toEqual(nextMonth.at)
  })

  it('gives a member its own figures beside the whole workspace', async () => {
    const body = await quota(member.token)
    expect(body.member.used).toBe(tokensOf(memberCalls))
    expect(body.monthlyTokens.used).toBe(tokensOf([...ownCalls, ...memberCalls]))
  })

  it('counts by the UTC month for a UTC tenant, so a call at Berlin midnight on the 1st is last month', async () => {
    const { tenantId: utcTenant, workspaceId: utcWorkspace } = await stack.tenant(owner, 'UTC Co')
    const scope = { tenantId: utcTenant, workspaceId: utcWorkspace, userId: owner.id }
    const utcStart = zonedMonthStart(now, 'UTC', 0)
    const counted = modelCall(scope, { at: utcStart.at, inputTokens: 5, outputTokens: 5 })
    await appendUsage(stack, [
      modelCall(scope, { at: monthStart.at, inputTokens: 1_000, outputTokens: 0 }),
      counted,
    ])
    const body = await quota(owner.token, utcWorkspace)
    expect(body.monthlyTokens.used).toBe(10)
    expect(body.resetAt).toBe(zonedMonthStart(now, 'UTC', 1).written)
    expect(body.resetAt.endsWith('T00:00:00+00:00')).toBe(true)
  })

  describe('with reservations in flight', () => {
    const key = () => quotaReservationsKey(tenantId, workspaceId)
    const later = () => Date.now() + 10 * 60_000

    beforeAll(async () => {
      await redis.hset(key(), {
        'call-owner': JSON.stringify({ userId: owner.id, tokens: 100, expiresAt: later() }),
        'call-member': JSON.stringify({ userId: member.id, tokens: 40, expiresAt: later() }),
        'call-expired': JSON.stringify({
          userId: member.id,
          tokens: 100_000,
          expiresAt: Date.now() - 1,
        }),
        'call-not-json': '{"userId":',
        'call-a-string': JSON.stringify('tokens'),
        'call-negative': JSON.stringify({ userId: owner.id, tokens: -5_000, expiresAt: later() }),
        'call-fraction': JSON.stringify({ userId: owner.id, tokens: 2.5, expiresAt: later() }),
        'call-text-tokens': JSON.stringify({ userId: owner.id, tokens: '50', expiresAt: later() }),
        'call-no-user': JSON.stringify({ tokens: 60, expiresAt: later() }),
        'call-no-expiry': JSON.stringify({ userId: owner.id, tokens: 70 }),
      })
      // Another workspace's reservations are not this one's.
      const other = await stack.tenant(owner, 'Other Co')
      await redis.hset(quotaReservationsKey(other.tenantId, other.workspaceId), {
        'call-elsewhere': JSON.stringify({ userId: owner.id, tokens: 9_999, expiresAt: later() }),
      })
    })
    afterAll(async () => {
      await redis.del(key())
    })

    it('counts unexpired reservations and ignores expired and malformed ones', async () => {
      const asOwner = await quota(owner.token)
      expect(asOwner.monthlyTokens.reserved).toBe(140)
      expect(asOwner.member.reserved).toBe(100)
      const asMember = await quota(member.token)
      expect(asMember.monthlyTokens.reserved).toBe(140)
      expect(asMember.member.reserved).toBe(40)
    })

    it('takes the workspace budget capped by the tenant limit, and never goes below zero', async () => {
      const used = tokensOf([...ownCalls, ...memberCalls])
      const setWorkspaceBudget = (
        monthlyTokens: number | null,
        memberMonthlyTokens: number | null,
      ) =>
        changePolicy(stack, owner.token, workspaceId, (policy) => {
          policy.quota.monthlyTokens = monthlyTokens
          policy.quota.memberMonthlyTokens = memberMonthlyTokens
        })
      const setTenantLimit = (monthlyTokens: number | null) =>
        patchTenant(stack, owner.token, tenantId, { limits: { monthlyTokens } })

      await setWorkspaceBudget(1_000_000, 6_000)
      let body = await quota(owner.token)
      expect(body.monthlyTokens).toEqual({
        limit: 1_000_000,
        used,
        reserved: 140,
        remaining: 1_000_000 - used - 140,
      })
      expect(body.member).toEqual({
        limit: 6_000,
        used: tokensOf(ownCalls),
        reserved: 100,
        remaining: 6_000 - tokensOf(ownCalls) - 100,
      })

      await setTenantLimit(500_000)
      body = await quota(owner.token)
      expect(body.monthlyTokens).toMatchObject({ limit: 500_000, remaining: 500_000 - used - 140 })

      await setTenantLimit(5_000_000)
      body = await quota(owner.token)
      expect(body.monthlyTokens.limit).toBe(1_000_000)

      // No budget of its own: the tenant's cap is the budget, here already spent.
      await setWorkspaceBudget(null, 2_000)
      await setTenantLimit(used)
      body = await quota(member.token)
      expect(body.monthlyTokens).toEqual({ limit: used, used, reserved: 140, remaining: 0 })
      expect(body.member).toEqual({
        limit: 2_000,
        used: tokensOf(memberCalls),
        reserved: 40,
        remaining: 2_000 - tokensOf(memberCalls) - 40,
      })

      await setTenantLimit(null)
      await setWorkspaceBudget(null, null)
      body = await quota(owner.token)
      expect(body.monthlyTokens).toEqual({ limit: null, used, reserved: 140, remaining: null })
      expect(body.member.remaining).toBeNull()
    })
  })

  it('answers 404 to a user outside the tenant and 401 without a token', async () => {
    const stranger = await stack.user('quota-stranger')
    const outside = await stack.call(stranger.token, 'GET', `/v1/workspaces/${workspaceId}/quota`)
    expect(outside.statusCode).toBe(404)
    expect(outside.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    const anonymous = await stack.call(null, 'GET', `/v1/workspaces/${workspaceId}/quota`)
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
  })
})

describe('GET /internal/v1/workspaces/:wid/quota', () => {
  it('answers a member’s standing to the gateway, as the member would read it', async () => {
    const owner = await stack.user('internal-quota-owner')
    const member = await stack.user('internal-quota-member')
    const { tenantId, workspaceId } = await stack.tenant(owner, 'Internal Quota Co')
    await stack.addMember(owner, workspaceId, member, 'member')
    await appendUsage(stack, [
      modelCall(
        { tenantId, workspaceId, userId: member.id },
        { at: new Date(Date.now() - 1_000), inputTokens: 300, outputTokens: 30 },
      ),
      modelCall(
        { tenantId, workspaceId, userId: owner.id },
        { at: new Date(Date.now() - 1_000), inputTokens: 1_000, outputTokens: 100 },
      ),
    ])
    const gateway = await stack.serviceToken('api-gateway')
    const url = `/internal/v1/workspaces/${workspaceId}/quota?userId=${member.id}`

    const internal = await stack.call(gateway, 'GET', url)
    const own = await stack.call(member.token, 'GET', `/v1/workspaces/${workspaceId}/quota`)

    expect(internal.statusCode, internal.body).toBe(200)
    expect(internal.json()).toEqual(own.json())
    expect(internal.json<QuotaBody>().member.used).toBe(330)
    expect(internal.json<QuotaBody>().monthlyTokens.used).toBe(1_430)
  })

  it('refuses users and other services, and answers 404 for an unknown workspace', async () => {
    const owner = await stack.user('internal-quota-caller')
    const { workspaceId } = await stack.tenant(owner, 'Callers Co')
    const url = `/internal/v1/workspaces/${workspaceId}/quota?userId=${owner.id}`

    const asUser = await stack.call(owner.token, 'GET', url)
    expect(asUser.statusCode).toBe(401)
    const asAuth = await stack.call(await stack.serviceToken('auth-service'), 'GET', url)
    expect(asAuth.statusCode).toBe(403)
    expect(asAuth.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    const gateway = await stack.serviceToken('api-gateway')
    const unknown = await stack.call(gateway, 'GET', `/internal/v1/workspaces/nope/quota?userId=x`)
    expect(unknown.statusCode).toBe(404)
    const noUser = await stack.call(gateway, 'GET', `/internal/v1/workspaces/${workspaceId}/quota`)
    expect(noUser.statusCode).toBe(400)
    expect(noUser.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })
})
