import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AuditDocument } from '../../src/lib/models.js'
import { EXAMPLE_POLICY, eventually } from '../helpers/policy.js'
import {
  bearer,
  errorCode,
  PASSWORD,
  startTestStack,
  type TestStack,
  type TestUser,
} from '../helpers/stack.js'

let stack: TestStack
beforeAll(async () => {
  stack = await startTestStack()
})
afterAll(() => stack?.close())

const DAY_MS = 24 * 3600 * 1000
/** The service's default retention (AUDIT_RETENTION_DAYS) when a tenant sets none. */
const DEFAULT_RETENTION_DAYS = 365

/** As the gateway forwards it; the test's own address (127.0.0.1) is a trusted hop by default. */
const CLIENT = { 'x-forwarded-for': '203.0.113.9', 'user-agent': 'audit-test/1.0' }

interface AuditItem {
  id: string
  at: string
  action: string
  actor: { type: string; id: string | null }
  target: { type: string; id: string | null }
  before: Record<string, unknown> | null
  after: Record<string, unknown> | null
  ip: string | null
  userAgent: string | null
}
interface AuditPage {
  items: AuditItem[]
  nextCursor: string | null
}

const workspaceAudit = (workspaceId: string) => `/v1/workspaces/${workspaceId}/audit`
const tenantAudit = (tenantId: string) => `/v1/tenants/${tenantId}/audit`

/** Reads a list a page at a time with `limit`, answering every item and the number of pages. */
async function walk(token: string, url: string, limit: number) {
  const items: AuditItem[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const query: string = cursor === null ? `?limit=${limit}` : `?limit=${limit}&cursor=${cursor}`
    const read = await stack.call(token, 'GET', `${url}${query}`)
    expect(read.statusCode).toBe(200)
    const page = read.json<AuditPage>()
    expect(page.items.length).toBeLessThanOrEqual(limit)
    items.push(...page.items)
    cursor = page.nextCursor
    pages++
  } while (cursor !== null && pages < 100)
  return { items, pages }
}

/** A tenant created by `owner` from a client the gateway forwarded. */
async function tenantFromClient(owner: TestUser) {
  const created = await stack.call(owner.token, 'POST', '/v1/tenants', { name: 'Audited' }, CLIENT)
  expect(created.statusCode).toBe(201)
  const body = created.json<{ tenant: { id: string }; workspace: { id: string } }>()
  return { tenantId: body.tenant.id, workspaceId: body.workspace.id }
}

describe('the workspace audit log', () => {
  it('records every change this service makes with actor, target, before, after, ip and time', async () => {
    const owner = await stack.user('owner')
    const colleague = await stack.user('colleague')
    const startedAt = Date.now()
    const { workspaceId } = await tenantFromClient(owner)
    const base = `/v1/workspaces/${workspaceId}`
    const steps = [
      await stack.call(owner.token, 'PATCH', base, { name: 'Research' }, CLIENT),
      await stack.call(owner.token, 'PUT', `${base}/policy`, EXAMPLE_POLICY, CLIENT),
      await stack.call(
        owner.token,
        'POST',
        `${base}/members`,
        { email: colleague.email, role: 'admin' },
        CLIENT,
      ),
      await stack.call(
        owner.token,
        'PATCH',
        `${base}/members/${colleague.id}`,
        { role: 'member' },
        CLIENT,
      ),
      await stack.call(owner.token, 'DELETE', `${base}/members/${colleague.id}`, undefined, CLIENT),
    ]
    expect(steps.map((step) => step.statusCode)).toEqual([200, 200, 201, 200, 204])
    const finishedAt = Date.now()

    const read = await stack.call(owner.token, 'GET', workspaceAudit(workspaceId))

    expect(read.statusCode).toBe(200)
    const { items, nextCursor } = read.json<AuditPage>()
    expect(nextCursor).toBeNull()
    expect(items.map((item) => item.action)).toEqual([
      'workspace.member.removed',
      'workspace.member.role_changed',
      'workspace.member.added',
      'workspace.policy.updated',
      'workspace.renamed',
      'workspace.created',
    ])
    for (const item of items) {
      expect(item.actor).toEqual({ type: 'user', id: owner.id })
      expect(item.ip).toBe('203.0.113.9')
      expect(item.userAgent).toBe('audit-test/1.0')
      expect(Date.parse(item.at)).toBeGreaterThanOrEqual(startedAt - 1000)
      expect(Date.parse(item.at)).toBeLessThanOrEqual(finishedAt + 1000)
    }
    const [removed, roleChanged, added, policy, renamed, created] = items
    expect(removed).toMatchObject({
      target: { type: 'user', id: colleague.id },
      before: { email: colleague.email, role: 'member' },
    })
    expect(roleChanged).toMatchObject({
      target: { type: 'user', id: colleague.id },
      before: { role: 'admin' },
      after: { role: 'member' },
    })
    expect(added).toMatchObject({
      target: { type: 'user', id: colleague.id },
      after: { email: colleague.email, role: 'admin' },
    })
    expect(policy).toMatchObject({
      target: { type: 'policy', id: workspaceId },
      before: { version: 1 },
      after: { version: 2 },
    })
    expect(renamed).toMatchObject({
      target: { type: 'workspace', id: workspaceId },
      before: { name: 'General' },
      after: { name: 'Research' },
    })
    expect(created).toMatchObject({
      target: { type: 'workspace', id: workspaceId },
      after: { name: 'General' },
    })

    // What the list shows is what is stored, one row per change.
    const rows = await stack.app.tenancy.models.Audit.find({ workspaceId }).lean()
    expect(rows.map((row) => row._id).sort()).toEqual(items.map((item) => item.id).sort())
  })

  it('records the connecting address when X-Forwarded-For comes from an untrusted hop', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    const renamed = await stack.app.inject({
      method: 'PATCH',
      url: `/v1/workspaces/${workspaceId}`,
      remoteAddress: '198.51.100.77',
      headers: { ...bearer(owner.token), 'x-forwarded-for': '203.0.113.9' },
      payload: { name: 'Spoofed' },
    })

    expect(renamed.statusCode).toBe(200)
    const row = await stack.app.tenancy.models.Audit.findOne({
      workspaceId,
      action: 'workspace.renamed',
    }).lean()
    expect(row?.ip).toBe('198.51.100.77')
  })

  it('records the direct address when no X-Forwarded-For is sent', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    const read = await stack.call(owner.token, 'GET', workspaceAudit(workspaceId))

    expect(read.statusCode).toBe(200)
    expect(read.json<AuditPage>().items).toEqual([
      expect.objectContaining({ action: 'workspace.created', ip: '127.0.0.1' }),
    ])
  })

  it('walks every event exactly once with limit=2, even when events share a millisecond', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    for (const name of ['One', 'Two', 'Three'])
      expect(
        (await stack.call(owner.token, 'PATCH', `/v1/workspaces/${workspaceId}`, { name }))
          .statusCode,
      ).toBe(200)
    // Five events in one millisecond, in an insertion order unrelated to their ids, so only a
    // tie-break on the id keeps a page boundary between them from skipping or repeating one.
    const sharedAt = new Date(Date.now() - 60_000)
    const tied: AuditDocument[] = ['c', 'a', 'e', 'b', 'd'].map((letter) => ({
      _id: `${letter}-${randomUUID()}`,
      at: sharedAt,
      action: 'auth.login.succeeded',
      actor: { type: 'user', id: owner.id },
      target: { type: 'session', id: letter },
      tenantId,
      workspaceId,
      ip: '127.0.0.1',
      userAgent: null,
      before: null,
      after: null,
      receivedAt: sharedAt,
      expiresAt: new Date(sharedAt.getTime() + DAY_MS),
    }))
    await stack.app.tenancy.models.Audit.insertMany(tied)

    const { items, pages } = await walk(owner.token, workspaceAudit(workspaceId), 2)

    const stored = await stack.app.tenancy.models.Audit.find({ workspaceId })
      .sort({ at: -1, _id: -1 })
      .lean()
    expect(stored).toHaveLength(9)
    expect(items.map((item) => item.id)).toEqual(stored.map((row) => row._id))
    expect(new Set(items.map((item) => item.id)).size).toBe(9)
    expect(pages).toBe(5)
    const times = items.map((item) => Date.parse(item.at))
    expect(times).toEqual([...times].sort((a, b) => b - a))
    expect(items.slice(0, 4).map((item) => item.action)).toEqual([
      'workspace.renamed',
      'workspace.renamed',
      'workspace.renamed',
      'workspace.created',
    ])
  })

  it.each([
    ['a cursor it did not give out', '?cursor=bm90LWEtY3Vyc29y'],
    ['a limit of 0', '?limit=0'],
    ['a limit over 100', '?limit=101'],
    ['an unknown parameter', '?since=yesterday'],
  ])('refuses %s with 400', async (_what, query) => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    const read = await stack.call(owner.token, 'GET', `${workspaceAudit(workspaceId)}${query}`)

    expect(read.statusCode).toBe(400)
    expect(read.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })

  it('is read by admins; members and viewers get 403, strangers 404', async () => {
    const owner = await stack.user('owner')
    const admin = await stack.user('admin')
    const member = await stack.user('member')
    const viewer = await stack.user('viewer')
    const stranger = await stack.user('stranger')
    await stack.tenant(stranger, 'Elsewhere')
    const { workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, admin, 'admin')
    await stack.addMember(owner, workspaceId, member, 'member')
    await stack.addMember(owner, workspaceId, viewer, 'viewer')

    const byAdmin = await stack.call(admin.token, 'GET', workspaceAudit(workspaceId))
    expect(byAdmin.statusCode).toBe(200)
    expect(byAdmin.json<AuditPage>().items.map((item) => item.action)).toContain(
      'workspace.member.added',
    )
    for (const refused of [member, viewer]) {
      const read = await stack.call(refused.token, 'GET', workspaceAudit(workspaceId))
      expect(read.statusCode).toBe(403)
      expect(read.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    }
    const hidden = await stack.call(stranger.token, 'GET', workspaceAudit(workspaceId))
    expect(hidden.statusCode).toBe(404)
    expect(hidden.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
  })
})

describe('the tenant audit log', () => {
  it("shows the tenant's own events only, not its workspaces'", async () => {
    const owner = await stack.user('owner')
    const colleague = await stack.user('colleague')
    const { tenantId, workspaceId } = await tenantFromClient(owner)
    await stack.addMember(owner, workspaceId, colleague, 'member')
    expect(
      (
        await stack.call(
          owner.token,
          'PATCH',
          `/v1/tenants/${tenantId}`,
          { name: 'Renamed' },
          CLIENT,
        )
      ).statusCode,
    ).toBe(200)
    expect(
      (
        await stack.call(
          owner.token,
          'PATCH',
          `/v1/tenants/${tenantId}/members/${colleague.id}`,
          { role: 'admin' },
          CLIENT,
        )
      ).statusCode,
    ).toBe(200)

    const read = await stack.call(owner.token, 'GET', tenantAudit(tenantId))

    expect(read.statusCode).toBe(200)
    const { items, nextCursor } = read.json<AuditPage>()
    expect(nextCursor).toBeNull()
    expect(items.map((item) => item.action)).toEqual([
      'tenant.member.role_changed',
      'tenant.settings.updated',
      'tenant.created',
    ])
    expect(items[0]).toMatchObject({
      actor: { type: 'user', id: owner.id },
      target: { type: 'user', id: colleague.id },
      before: { role: 'member' },
      after: { role: 'admin' },
      ip: '203.0.113.9',
    })
    expect(items[1]).toMatchObject({
      target: { type: 'tenant', id: tenantId },
      before: { name: 'Audited' },
      after: { name: 'Renamed' },
      ip: '203.0.113.9',
    })
    const workspaceLevel = await stack.app.tenancy.models.Audit.countDocuments({
      tenantId,
      workspaceId: { $ne: null },
    })
    expect(workspaceLevel).toBeGreaterThanOrEqual(2)
  })

  it('pages through tenant events with a cursor, each once', async () => {
    const owner = await stack.user('owner')
    const { tenantId } = await stack.tenant(owner)
    for (const name of ['A', 'B', 'C', 'D'])
      expect(
        (await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, { name })).statusCode,
      ).toBe(200)

    const { items, pages } = await walk(owner.token, tenantAudit(tenantId), 2)

    expect(items.map((item) => item.action)).toEqual([
      'tenant.settings.updated',
      'tenant.settings.updated',
      'tenant.settings.updated',
      'tenant.settings.updated',
      'tenant.created',
    ])
    expect(items.map((item) => item.after?.name)).toEqual(['D', 'C', 'B', 'A', 'Acme'])
    expect(pages).toBe(3)
  })

  it('is read by tenant admins; a tenant member gets 403 and a stranger 404', async () => {
    const owner = await stack.user('owner')
    const admin = await stack.user('admin')
    const member = await stack.user('member')
    const stranger = await stack.user('stranger')
    await stack.tenant(stranger, 'Elsewhere')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, admin, 'member')
    await stack.addMember(owner, workspaceId, member, 'admin')
    const promoted = await stack.call(
      owner.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${admin.id}`,
      { role: 'admin' },
    )
    expect(promoted.statusCode).toBe(200)

    const byAdmin = await stack.call(admin.token, 'GET', tenantAudit(tenantId))
    expect(byAdmin.statusCode).toBe(200)
    expect(byAdmin.json<AuditPage>().items[0]?.action).toBe('tenant.member.role_changed')
    // A workspace admin is only a member of the tenant.
    const byMember = await stack.call(member.token, 'GET', tenantAudit(tenantId))
    expect(byMember.statusCode).toBe(403)
    expect(byMember.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    const byStranger = await stack.call(stranger.token, 'GET', tenantAudit(tenantId))
    expect(byStranger.statusCode).toBe(404)
    expect(byStranger.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
  })
})

describe('audit retention', () => {
  /** Every event of the tenant and how long each is kept, in days. */
  async function keptDays(tenantId: string) {
    const rows = await stack.app.tenancy.models.Audit.find({ tenantId }).lean()
    expect(rows.length).toBeGreaterThan(0)
    return rows.map((row) => (row.expiresAt.getTime() - row.at.getTime()) / DAY_MS)
  }

  it("re-dates the tenant's events when its retention changes, and only its", async () => {
    const owner = await stack.user('owner')
    const neighbour = await stack.user('neighbour')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    const { tenantId: otherTenant } = await stack.tenant(neighbour, 'Neighbour')
    expect(
      (await stack.call(owner.token, 'PUT', `/v1/workspaces/${workspaceId}/policy`, EXAMPLE_POLICY))
        .statusCode,
    ).toBe(200)
    expect(new Set(await keptDays(tenantId))).toEqual(new Set([DEFAULT_RETENTION_DAYS]))

    const shortened = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      auditRetentionDays: 30,
    })

    expect(shortened.statusCode).toBe(200)
    expect(shortened.json()).toMatchObject({ auditRetentionDays: 30 })
    const days = await keptDays(tenantId)
    expect(days.length).toBeGreaterThanOrEqual(4)
    expect(new Set(days)).toEqual(new Set([30]))
    expect(new Set(await keptDays(otherTenant))).toEqual(new Set([DEFAULT_RETENTION_DAYS]))

    // New events are kept for the tenant's period from the start.
    expect(
      (await stack.call(owner.token, 'PATCH', `/v1/workspaces/${workspaceId}`, { name: 'Later' }))
        .statusCode,
    ).toBe(200)
    expect(new Set(await keptDays(tenantId))).toEqual(new Set([30]))

    const restored = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      auditRetentionDays: null,
    })
    expect(restored.statusCode).toBe(200)
    expect(new Set(await keptDays(tenantId))).toEqual(new Set([DEFAULT_RETENTION_DAYS]))
  })

  it.each([0, 3651, 1.5])(
    'refuses a retention of %s days and re-dates nothing',
    async (auditRetentionDays) => {
      const owner = await stack.user('owner')
      const { tenantId } = await stack.tenant(owner)
      const before = await stack.app.tenancy.models.Audit.find({ tenantId }).sort({ _id: 1 }).lean()

      const refused = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
        auditRetentionDays,
      })

      expect(refused.statusCode).toBe(400)
      expect(refused.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
      expect(
        await stack.app.tenancy.models.Audit.find({ tenantId }).sort({ _id: 1 }).lean(),
      ).toEqual(before)
    },
  )

  it("keeps events delivered by the auth-service for the tenant's retention", async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    const patched = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      auditRetentionDays: 7,
    })
    expect(patched.statusCode).toBe(200)

    const login = await stack.auth.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: owner.email, password: PASSWORD, workspaceId },
    })
    expect(login.statusCode).toBe(200)

    const delivered = await eventually('the sign-in in audit_events', async () => {
      await stack.auth.identity.audit.deliverDue()
      const row = await stack.app.tenancy.models.Audit.findOne({
        workspaceId,
        action: 'auth.login.succeeded',
      }).lean()
      return row ?? undefined
    })
    expect(delivered.tenantId).toBe(tenantId)
    expect(delivered.expiresAt.getTime() - delivered.at.getTime()).toBe(7 * DAY_MS)
  })
})
