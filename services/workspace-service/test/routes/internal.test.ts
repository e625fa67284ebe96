import { randomUUID } from 'node:crypto'
import type { AuditEvent, EffectivePolicy, ServiceName } from '@platform/shared-types'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXAMPLE_POLICY, eventually, examplePolicy } from '../helpers/policy.js'
import {
  errorCode,
  PASSWORD,
  startTestStack,
  type TestStack,
  type TestUser,
} from '../helpers/stack.js'

let stack: TestStack
const serviceTokens = new Map<ServiceName, string>()

beforeAll(async () => {
  stack = await startTestStack()
  for (const service of [
    'auth-service',
    'workspace-service',
    'api-gateway',
    'code-runtime',
  ] as const)
    serviceTokens.set(service, await stack.serviceToken(service))
})
afterAll(() => stack?.close())

function tokenOf(service: ServiceName): string {
  const token = serviceTokens.get(service)
  if (token === undefined) throw new Error(`no service token for ${service}`)
  return token
}

const effectivePolicyUrl = (workspaceId: string) =>
  `/internal/v1/workspaces/${workspaceId}/effective-policy`
const membershipUrl = (userId: string, workspaceId: string) =>
  `/internal/v1/memberships?${new URLSearchParams({ userId, workspaceId })}`

async function tenantIn(owner: TestUser, timeZone: string) {
  const created = await stack.call(owner.token, 'POST', '/v1/tenants', {
    name: 'Zoned',
    timeZone,
    workspaceName: 'Research',
  })
  expect(created.statusCode).toBe(201)
  const body = created.json<{ tenant: { id: string }; workspace: { id: string } }>()
  return { tenantId: body.tenant.id, workspaceId: body.workspace.id }
}

async function setTenantLimit(owner: TestUser, tenantId: string, monthlyTokens: number | null) {
  const patched = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
    limits: { monthlyTokens },
  })
  expect(patched.statusCode).toBe(200)
}

async function putBudget(owner: TestUser, workspaceId: string, monthlyTokens: number | null) {
  const policy = examplePolicy()
  policy.quota.monthlyTokens = monthlyTokens
  const written = await stack.call(
    owner.token,
    'PUT',
    `/v1/workspaces/${workspaceId}/policy`,
    policy,
  )
  expect(written.statusCode).toBe(200)
  return policy
}

async function createWorkspace(owner: TestUser, tenantId: string, name: string) {
  const created = await stack.call(owner.token, 'POST', `/v1/tenants/${tenantId}/workspaces`, {
    name,
  })
  expect(created.statusCode).toBe(201)
  return created.json<{ id: string }>().id
}

describe('GET /internal/v1/workspaces/:wid/effective-policy', () => {
  it('answers the policy with the workspace, tenant, time zone and version', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await tenantIn(owner, 'Europe/Berlin')
    await putBudget(owner, workspaceId, EXAMPLE_POLICY.quota.monthlyTokens)

    const read = await stack.call(tokenOf('api-gateway'), 'GET', effectivePolicyUrl(workspaceId))

    expect(read.statusCode).toBe(200)
    expect(read.json()).toEqual({
      ...EXAMPLE_POLICY,
      workspaceId,
      workspaceName: 'Research',
      tenantId,
      timeZone: 'Europe/Berlin',
      version: 2,
    })
  })

  it("caps the workspace's monthly tokens at the tenant's limit", async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    const own = await putBudget(owner, workspaceId, 5_000_000)
    await setTenantLimit(owner, tenantId, 1_000_000)

    const read = await stack.call(tokenOf('api-gateway'), 'GET', effectivePolicyUrl(workspaceId))

    expect(read.statusCode).toBe(200)
    const effective = read.json<EffectivePolicy>()
    expect(effective.quota).toEqual({ ...own.quota, monthlyTokens: 1_000_000 })
    // The cap applies on the way out; the workspace's own budget is kept as its admins set it.
    const stored = await stack.app.tenancy.models.Workspace.findById(workspaceId).lean()
    expect(stored?.policy.quota.monthlyTokens).toBe(5_000_000)
  })

  it("gives an unlimited workspace the tenant's limit", async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    await putBudget(owner, workspaceId, null)
    await setTenantLimit(owner, tenantId, 1_000_000)

    const read = await stack.call(tokenOf('api-gateway'), 'GET', effectivePolicyUrl(workspaceId))

    expect(read.statusCode).toBe(200)
    expect(read.json<EffectivePolicy>().quota.monthlyTokens).toBe(1_000_000)
  })

  it('keeps a budget under the cap, and any budget when the tenant has no limit', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    const other = await createWorkspace(owner, tenantId, 'Other')
    await putBudget(owner, workspaceId, 500_000)
    await putBudget(owner, other, 5_000_000)

    const unlimited = await stack.call(tokenOf('code-runtime'), 'GET', effectivePolicyUrl(other))
    expect(unlimited.statusCode).toBe(200)
    expect(unlimited.json<EffectivePolicy>().quota.monthlyTokens).toBe(5_000_000)

    await setTenantLimit(owner, tenantId, 1_000_000)
    const under = await stack.call(tokenOf('code-runtime'), 'GET', effectivePolicyUrl(workspaceId))
    expect(under.statusCode).toBe(200)
    expect(under.json<EffectivePolicy>().quota.monthlyTokens).toBe(500_000)
  })

  it('answers 404 for an unknown workspace and for a deleted one', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)
    const deleted = await stack.call(owner.token, 'DELETE', `/v1/workspaces/${workspaceId}`)
    expect(deleted.statusCode).toBe(200)

    for (const wid of [workspaceId, 'wsp_does_not_exist']) {
      const read = await stack.call(tokenOf('api-gateway'), 'GET', effectivePolicyUrl(wid))
      expect(read.statusCode).toBe(404)
      expect(read.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    }
  })
})

describe('who may call the internal routes', () => {
  let owner: TestUser
  let workspaceId: string
  beforeAll(async () => {
    owner = await stack.user('owner')
    ;({ workspaceId } = await stack.tenant(owner))
  })

  it('refuses a request without a token with 401', async () => {
    const read = await stack.call(null, 'GET', effectivePolicyUrl(workspaceId))

    expect(read.statusCode).toBe(401)
    expect(read.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
  })

  it("refuses a user's platform token with 401", async () => {
    const scoped = await stack.scopedToken(owner, workspaceId)
    for (const token of [owner.token, scoped]) {
      const read = await stack.call(token, 'GET', effectivePolicyUrl(workspaceId))
      expect(read.statusCode).toBe(401)
      expect(read.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
    }
  })

  it('refuses a token that is not a signed JWT with 401', async () => {
    const read = await stack.call('not.a.jwt', 'GET', effectivePolicyUrl(workspaceId))

    expect(read.statusCode).toBe(401)
    expect(read.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
  })

  it.each([
    ['the effective policy', 'auth-service', () => effectivePolicyUrl(workspaceId)],
    ['the effective policy', 'workspace-service', () => effectivePolicyUrl(workspaceId)],
    ['a membership', 'workspace-service', () => membershipUrl(owner.id, workspaceId)],
    [
      "a user's memberships",
      'workspace-service',
      () => `/internal/v1/users/${owner.id}/memberships`,
    ],
  ] as const)('refuses %s to the %s with 403', async (_what, service, url) => {
    const read = await stack.call(tokenOf(service), 'GET', url())

    expect(read.statusCode).toBe(403)
    expect(read.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
  })

  it.each(['auth-service', 'api-gateway', 'code-runtime'] as const)(
    'answers memberships to the %s',
    async (service) => {
      const read = await stack.call(tokenOf(service), 'GET', membershipUrl(owner.id, workspaceId))

      expect(read.statusCode).toBe(200)
    },
  )
})

describe('GET /internal/v1/memberships', () => {
  it('answers the workspace, its tenant, its name and the role', async () => {
    const owner = await stack.user('owner')
    const viewer = await stack.user('viewer')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, viewer, 'viewer')

    const asOwner = await stack.call(
      tokenOf('auth-service'),
      'GET',
      membershipUrl(owner.id, workspaceId),
    )
    const asViewer = await stack.call(
      tokenOf('auth-service'),
      'GET',
      membershipUrl(viewer.id, workspaceId),
    )

    expect(asOwner.statusCode).toBe(200)
    expect(asOwner.json()).toEqual({ workspaceId, tenantId, name: 'General', role: 'owner' })
    expect(asViewer.statusCode).toBe(200)
    expect(asViewer.json()).toEqual({ workspaceId, tenantId, name: 'General', role: 'viewer' })
  })

  it('answers 404 for a user who is not a member, an unknown workspace and a deleted one', async () => {
    const owner = await stack.user('owner')
    const outsider = await stack.user('outsider')
    const { workspaceId } = await stack.tenant(owner)
    const { workspaceId: deletedId } = await stack.tenant(owner, 'Doomed')
    expect(
      (await stack.call(owner.token, 'DELETE', `/v1/workspaces/${deletedId}`)).statusCode,
    ).toBe(200)

    for (const [userId, wid] of [
      [outsider.id, workspaceId],
      [owner.id, 'wsp_does_not_exist'],
      [owner.id, deletedId],
    ] as const) {
      const read = await stack.call(tokenOf('auth-service'), 'GET', membershipUrl(userId, wid))
      expect(read.statusCode).toBe(404)
      expect(read.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    }
  })

  it('refuses a query operator smuggled into the query string with 400', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    const read = await stack.call(
      tokenOf('auth-service'),
      'GET',
      `/internal/v1/memberships?userId[$ne]=nobody&workspaceId=${workspaceId}`,
    )

    expect(read.statusCode).toBe(400)
    expect(read.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })

  it('refuses a query without a workspace id with 400', async () => {
    const owner = await stack.user('owner')

    const read = await stack.call(
      tokenOf('auth-service'),
      'GET',
      `/internal/v1/memberships?userId=${owner.id}`,
    )

    expect(read.statusCode).toBe(400)
    expect(read.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })
})

describe('GET /internal/v1/users/:userId/memberships', () => {
  interface MembershipList {
    items: Array<{ workspaceId: string; tenantId: string; name: string; role: string }>
    lastUsedWorkspaceId: string | null
  }

  it("lists a user's live memberships and the one used last", async () => {
    const user = await stack.user('user')
    const other = await stack.user('other')
    const { tenantId, workspaceId: older } = await stack.tenant(user)
    const newer = await createWorkspace(user, tenantId, 'Newer')
    const gone = await createWorkspace(user, tenantId, 'Gone')
    const { tenantId: otherTenant, workspaceId: joined } = await stack.tenant(other, 'Other')
    await stack.addMember(other, joined, user, 'member')
    expect((await stack.call(user.token, 'DELETE', `/v1/workspaces/${gone}`)).statusCode).toBe(200)
    // Created in the same instant, the two could tie; the older one was used an hour ago.
    await stack.app.tenancy.models.Member.updateOne(
      { workspaceId: older, userId: user.id },
      { $set: { lastUsedAt: new Date(Date.now() - 3600_000) } },
    )

    const read = await stack.call(
      tokenOf('auth-service'),
      'GET',
      `/internal/v1/users/${user.id}/memberships`,
    )

    expect(read.statusCode).toBe(200)
    const body = read.json<MembershipList>()
    expect(body.items).toHaveLength(3)
    expect(body.items).toEqual(
      expect.arrayContaining([
        { workspaceId: older, tenantId, name: 'General', role: 'owner' },
        { workspaceId: newer, tenantId, name: 'Newer', role: 'owner' },
        { workspaceId: joined, tenantId: otherTenant, name: 'General', role: 'member' },
      ]),
    )
    expect(body.lastUsedWorkspaceId).toBe(newer)
  })

  it('moves lastUsedWorkspaceId to the workspace the user works in', async () => {
    const user = await stack.user('user')
    const { tenantId, workspaceId: first } = await stack.tenant(user)
    const second = await createWorkspace(user, tenantId, 'Second')
    // Both were just created; age the first so a request to it counts as a new use.
    await stack.app.tenancy.models.Member.updateOne(
      { workspaceId: first, userId: user.id },
      { $set: { lastUsedAt: new Date(Date.now() - 3600_000) } },
    )
    const lastUsed = async () => {
      const read = await stack.call(
        tokenOf('auth-service'),
        'GET',
        `/internal/v1/users/${user.id}/memberships`,
      )
      expect(read.statusCode).toBe(200)
      return read.json<MembershipList>().lastUsedWorkspaceId
    }
    expect(await lastUsed()).toBe(second)

    expect((await stack.call(user.token, 'GET', `/v1/workspaces/${first}`)).statusCode).toBe(200)

    // The request records the use without waiting for it.
    await eventually('the first workspace to be the last used', async () =>
      (await lastUsed()) === first ? true : undefined,
    )
  })

  it('answers an empty list for a user with no memberships', async () => {
    const read = await stack.call(
      tokenOf('api-gateway'),
      'GET',
      `/internal/v1/users/usr_${randomUUID()}/memberships`,
    )

    expect(read.statusCode).toBe(200)
    expect(read.json()).toEqual({ items: [], lastUsedWorkspaceId: null })
  })
})

describe('POST /internal/v1/audit', () => {
  let tenantId: string
  let workspaceId: string
  beforeAll(async () => {
    const owner = await stack.user('owner')
    ;({ tenantId, workspaceId } = await stack.tenant(owner))
  })

  const auditEvent = (overrides: Partial<AuditEvent> = {}): AuditEvent => ({
    eventId: randomUUID(),
    at: new Date().toISOString(),
    action: 'auth.login.failed',
    actor: { type: 'anonymous', id: null },
    target: { type: 'account', id: 'someone@example.com' },
    tenantId,
    workspaceId,
    ip: '198.51.100.4',
    userAgent: 'test-agent',
    before: null,
    after: { reason: 'password' },
    ...overrides,
  })

  const stored = (eventIds: string[]) =>
    stack.app.tenancy.models.Audit.find({ _id: { $in: eventIds } }).lean()

  const postAudit = (service: ServiceName, body: unknown) =>
    stack.call(tokenOf(service), 'POST', '/internal/v1/audit', body)

  it('stores a batch once however often it is delivered', async () => {
    const events = [auditEvent(), auditEvent({ action: 'auth.logout' }), auditEvent()]
    const ids = events.map((event) => event.eventId)

    const first = await postAudit('auth-service', { events })
    const second = await postAudit('auth-service', { events })

    expect(first.statusCode).toBe(200)
    expect(first.json()).toEqual({ stored: 3, duplicates: 0 })
    expect(second.statusCode).toBe(200)
    expect(second.json()).toEqual({ stored: 0, duplicates: 3 })
    const rows = await stored(ids)
    expect(rows).toHaveLength(3)
    const [one] = events
    expect(rows.find((row) => row._id === one?.eventId)).toMatchObject({
      action: 'auth.login.failed',
      actor: { type: 'anonymous', id: null },
      tenantId,
      workspaceId,
      ip: '198.51.100.4',
      at: new Date(one?.at ?? ''),
    })
  })

  it('keeps the first copy of an event when a later delivery differs', async () => {
    const original = auditEvent()
    expect((await postAudit('api-gateway', { events: [original] })).statusCode).toBe(200)

    const fresh = auditEvent()
    const again = await postAudit('api-gateway', {
      events: [{ ...original, action: 'auth.login.succeeded' }, fresh],
    })

    expect(again.statusCode).toBe(200)
    expect(again.json()).toEqual({ stored: 1, duplicates: 1 })
    const rows = await stored([original.eventId, fresh.eventId])
    expect(rows).toHaveLength(2)
    expect(rows.find((row) => row._id === original.eventId)?.action).toBe('auth.login.failed')
  })

  it('accepts events from the code-runtime', async () => {
    const event = auditEvent({ action: 'dev.session.started' })

    const posted = await postAudit('code-runtime', { events: [event] })

    expect(posted.statusCode).toBe(200)
    expect(await stored([event.eventId])).toHaveLength(1)
  })

  it.each([
    ['an action with capitals', { action: 'Auth.Login' }],
    ['an action without an area', { action: 'login' }],
    ['an action with a hyphen', { action: 'auth.login-failed' }],
    ['a time without an offset', { at: '2026-01-01T10:00:00' }],
    ['an unknown actor type', { actor: { type: 'robot', id: 'r2' } }],
  ] as const)('refuses a batch with %s and stores none of it', async (_what, overrides) => {
    const good = auditEvent()
    const bad = { ...auditEvent(), ...overrides }

    const posted = await postAudit('auth-service', { events: [good, bad] })

    expect(posted.statusCode).toBe(400)
    expect(posted.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await stored([good.eventId, bad.eventId])).toEqual([])
  })

  it.each(['actor', 'target', 'eventId', 'tenantId'] as const)(
    'refuses an event without %s and stores nothing',
    async (field) => {
      const good = auditEvent()
      const { [field]: _dropped, ...bad } = auditEvent()

      const posted = await postAudit('auth-service', { events: [good, bad] })

      expect(posted.statusCode).toBe(400)
      expect(posted.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
      expect(await stored([good.eventId])).toEqual([])
    },
  )

  it('refuses an event with a field it does not know', async () => {
    const event = { ...auditEvent(), severity: 'high' }

    const posted = await postAudit('auth-service', { events: [event] })

    expect(posted.statusCode).toBe(400)
    expect(posted.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await stored([event.eventId])).toEqual([])
  })

  it('refuses more than 500 events in one batch and stores none', async () => {
    const events = Array.from({ length: 501 }, () => auditEvent())

    const posted = await postAudit('auth-service', { events })

    expect(posted.statusCode).toBe(400)
    expect(posted.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await stored(events.map((event) => event.eventId))).toEqual([])
  })

  it('accepts exactly 500 events in one batch', async () => {
    const events = Array.from({ length: 500 }, () => auditEvent())

    const posted = await postAudit('auth-service', { events })

    expect(posted.statusCode).toBe(200)
    expect(posted.json()).toEqual({ stored: 500, duplicates: 0 })
  })

  it('refuses an empty batch', async () => {
    const posted = await postAudit('auth-service', { events: [] })

    expect(posted.statusCode).toBe(400)
    expect(posted.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })

  it('refuses the workspace-service itself with 403 and a user with 401, storing nothing', async () => {
    const owner = await stack.user('owner')
    const event = auditEvent()

    const asService = await postAudit('workspace-service', { events: [event] })
    const asUser = await stack.call(owner.token, 'POST', '/internal/v1/audit', { events: [event] })

    expect(asService.statusCode).toBe(403)
    expect(asService.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(asUser.statusCode).toBe(401)
    expect(asUser.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
    expect(await stored([event.eventId])).toEqual([])
  })
})

describe("the auth-service's audit outbox", () => {
  it('delivers a sign-in into the workspace audit log end to end', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)

    const login = await stack.auth.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: owner.email, password: PASSWORD, workspaceId },
    })
    expect(login.statusCode).toBe(200)

    // The outbox also drains on a timer; a drain already under way may predate this sign-in.
    const delivered = await eventually('auth.login.succeeded in audit_events', async () => {
      await stack.auth.identity.audit.deliverDue()
      const row = await stack.app.tenancy.models.Audit.findOne({
        workspaceId,
        action: 'auth.login.succeeded',
      }).lean()
      return row ?? undefined
    })
    expect(delivered).toMatchObject({
      tenantId,
      workspaceId,
      actor: { type: 'user', id: owner.id },
      target: { type: 'session' },
    })

    const listed = await stack.call(owner.token, 'GET', `/v1/workspaces/${workspaceId}/audit`)
    expect(listed.statusCode).toBe(200)
    expect(listed.json<{ items: Array<{ id: string }> }>().items.map((item) => item.id)).toContain(
      delivered._id,
    )
  })
})
