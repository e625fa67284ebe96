import { randomUUID } from 'node:crypto'
import type { HTTPMethods, RouteOptions } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { workspaceState, workspaceWith } from '../helpers/members.js'
import {
  errorCode,
  startTestStack,
  type TestStack,
  type TestUser,
  uniqueEmail,
} from '../helpers/stack.js'

const DAY_MS = 24 * 3600 * 1000

let stack: TestStack
/** Every route the service registered, as `METHOD url`. */
const routes: Array<{ method: HTTPMethods; url: string }> = []
beforeAll(async () => {
  stack = await startTestStack(
    {},
    {
      onRoute: (route: RouteOptions) => {
        const methods = Array.isArray(route.method) ? route.method : [route.method]
        for (const method of methods) routes.push({ method, url: route.url })
      },
    },
  )
})
afterAll(() => stack?.close())

interface WorkspaceItem {
  id: string
  tenantId: string
  name: string
  role: string
}

async function createWorkspace(by: TestUser, tenantId: string, name: string) {
  const response = await stack.call(by.token, 'POST', `/v1/tenants/${tenantId}/workspaces`, {
    name,
  })
  expect(response.statusCode).toBe(201)
  return response.json<{ id: string; tenantId: string; name: string }>().id
}

async function setTenantRole(owner: TestUser, tenantId: string, user: TestUser, role: string) {
  const response = await stack.call(
    owner.token,
    'PATCH',
    `/v1/tenants/${tenantId}/members/${user.id}`,
    { role },
  )
  expect(response.statusCode).toBe(200)
}

/** The workspaces stored for a tenant, by name, to prove a refused create wrote none. */
async function workspaceNames(tenantId: string) {
  const rows = await stack.app.tenancy.models.Workspace.find({ tenantId }).sort({ name: 1 }).lean()
  return rows.map((row) => row.name)
}

async function invite(by: TestUser, workspaceId: string, email = uniqueEmail('invitee')) {
  const response = await stack.call(by.token, 'POST', `/v1/workspaces/${workspaceId}/members`, {
    email,
    role: 'member',
  })
  expect(response.statusCode).toBe(202)
  return response.json<{ invitation: { id: string }; token: string }>()
}

async function remove(owner: TestUser, workspaceId: string) {
  const response = await stack.call(owner.token, 'DELETE', `/v1/workspaces/${workspaceId}`)
  expect(response.statusCode).toBe(200)
  return response.json<{ id: string; deletedAt: string; purgeAt: string }>()
}

describe('POST /v1/tenants/:tid/workspaces', () => {
  it('lets the tenant owner create a workspace it owns, with policy version 1 and an audit event', async () => {
    const { tenantId, owner } = await workspaceWith(stack)
    const response = await stack.call(owner.token, 'POST', `/v1/tenants/${tenantId}/workspaces`, {
      name: 'Research',
    })
    expect(response.statusCode).toBe(201)
    const created = response.json<{ id: string }>()
    expect(created).toEqual({ id: expect.any(String), tenantId, name: 'Research' })

    const { Workspace, Member, PolicyVersion, Audit } = stack.app.tenancy.models
    expect(await Workspace.findById(created.id).lean()).toMatchObject({
      tenantId,
      name: 'Research',
      ownerCount: 1,
      policyVersion: 1,
      deletedAt: null,
    })
    expect(await Member.find({ workspaceId: created.id }).lean()).toEqual([
      expect.objectContaining({ userId: owner.id, role: 'owner', email: owner.email }),
    ])
    expect(await PolicyVersion.countDocuments({ workspaceId: created.id, version: 1 })).toBe(1)
    expect(
      await Audit.find({ workspaceId: created.id, action: 'workspace.created' }).lean(),
    ).toEqual([expect.objectContaining({ actor: { type: 'user', id: owner.id } })])
  })

  it('lets a tenant admin create a workspace, which it then owns', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [tenantAdmin] = others
    await setTenantRole(owner, tenantId, tenantAdmin, 'admin')
    const workspaceId = await createWorkspace(tenantAdmin, tenantId, 'Admin made')
    const read = await stack.call(tenantAdmin.token, 'GET', `/v1/workspaces/${workspaceId}`)
    expect(read.statusCode).toBe(200)
    expect(read.json()).toMatchObject({ id: workspaceId, role: 'owner' })
    // The tenant owner is not a member of it: nobody is added behind the creator's back.
    const asTenantOwner = await stack.call(owner.token, 'GET', `/v1/workspaces/${workspaceId}`)
    expect(asTenantOwner.statusCode).toBe(404)
  })

  it('refuses a plain tenant member with 403 WSP_FORBIDDEN and writes nothing', async () => {
    const { tenantId, others } = await workspaceWith(stack, 'admin')
    const [workspaceAdmin] = others
    const before = await workspaceNames(tenantId)
    const response = await stack.call(
      workspaceAdmin.token,
      'POST',
      `/v1/tenants/${tenantId}/workspaces`,
      { name: 'Sneaky' },
    )
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await workspaceNames(tenantId)).toEqual(before)
  })

  it('answers 404 to a user of another tenant and writes nothing', async () => {
    const { tenantId } = await workspaceWith(stack)
    const outsider = await stack.user('outsider')
    await stack.tenant(outsider)
    const before = await workspaceNames(tenantId)
    const response = await stack.call(
      outsider.token,
      'POST',
      `/v1/tenants/${tenantId}/workspaces`,
      {
        name: 'Planted',
      },
    )
    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    expect(await workspaceNames(tenantId)).toEqual(before)
  })

  it.each([
    ['an empty name', { name: '' }],
    ['a name with a control character', { name: 'Lab\u0000' }],
    ['an unknown field', { name: 'Lab', tenantId: 'tnt_other' }],
  ])('refuses %s with 400 WSP_VALIDATION and writes nothing', async (_label, body) => {
    const { tenantId, owner } = await workspaceWith(stack)
    const before = await workspaceNames(tenantId)
    const response = await stack.call(
      owner.token,
      'POST',
      `/v1/tenants/${tenantId}/workspaces`,
      body,
    )
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await workspaceNames(tenantId)).toEqual(before)
  })
})

describe('POST /v1/workspaces', () => {
  it("creates the workspace in the scoped token's tenant", async () => {
    const founder = await stack.user('founder')
    const first = await stack.tenant(founder, 'First')
    const second = await stack.tenant(founder, 'Second')
    const scoped = await stack.scopedToken(founder, second.workspaceId)
    const response = await stack.call(scoped, 'POST', '/v1/workspaces', { name: 'Via token' })
    expect(response.statusCode).toBe(201)
    expect(response.json()).toEqual({
      id: expect.any(String),
      tenantId: second.tenantId,
      name: 'Via token',
    })
    expect(await workspaceNames(second.tenantId)).toEqual(['General', 'Via token'])
    expect(await workspaceNames(first.tenantId)).toEqual(['General'])
  })

  it('uses the one tenant an unscoped caller runs', async () => {
    const { tenantId, owner } = await workspaceWith(stack)
    const response = await stack.call(owner.token, 'POST', '/v1/workspaces', { name: 'Second' })
    expect(response.statusCode).toBe(201)
    expect(response.json()).toMatchObject({ tenantId, name: 'Second' })
    expect(await workspaceNames(tenantId)).toEqual(['General', 'Second'])
  })

  it('refuses an unscoped caller running two tenants with 400, writing nothing', async () => {
    const founder = await stack.user('founder')
    const first = await stack.tenant(founder, 'First')
    const second = await stack.tenant(founder, 'Second')
    const response = await stack.call(founder.token, 'POST', '/v1/workspaces', { name: 'Where?' })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await workspaceNames(first.tenantId)).toEqual(['General'])
    expect(await workspaceNames(second.tenantId)).toEqual(['General'])
  })

  it('refuses an unscoped caller who runs no tenant with 400, writing nothing', async () => {
    const { tenantId, others } = await workspaceWith(stack, 'admin')
    const [workspaceAdmin] = others
    const response = await stack.call(workspaceAdmin.token, 'POST', '/v1/workspaces', {
      name: 'Nowhere',
    })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await workspaceNames(tenantId)).toEqual(['General'])
  })

  it('refuses a scoped token whose tenant the caller is only a member of with 403, writing nothing', async () => {
    const { tenantId, workspaceId, others } = await workspaceWith(stack, 'admin')
    const [workspaceAdmin] = others
    const scoped = await stack.scopedToken(workspaceAdmin, workspaceId)
    const response = await stack.call(scoped, 'POST', '/v1/workspaces', { name: 'Sneaky' })
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await workspaceNames(tenantId)).toEqual(['General'])
  })
})

describe('GET /v1/workspaces', () => {
  /** A user in five workspaces across three tenants, with different roles. */
  async function busyUser() {
    const user = await stack.user('busy')
    const own = await stack.tenant(user, 'Own')
    const research = await createWorkspace(user, own.tenantId, 'Research')
    const other = await workspaceWith(stack)
    await stack.addMember(other.owner, other.workspaceId, user, 'viewer')
    const third = await workspaceWith(stack)
    await stack.addMember(third.owner, third.workspaceId, user, 'admin')
    const expected: WorkspaceItem[] = [
      { id: own.workspaceId, tenantId: own.tenantId, name: 'General', role: 'owner' },
      { id: research, tenantId: own.tenantId, name: 'Research', role: 'owner' },
      { id: other.workspaceId, tenantId: other.tenantId, name: 'General', role: 'viewer' },
      { id: third.workspaceId, tenantId: third.tenantId, name: 'General', role: 'admin' },
    ]
    return { user, own, expected }
  }

  const byId = (a: WorkspaceItem, b: WorkspaceItem) => a.id.localeCompare(b.id)

  it('lists the caller’s workspaces with its role in each, and nobody else’s', async () => {
    const { user, expected } = await busyUser()
    await workspaceWith(stack)
    const response = await stack.call(user.token, 'GET', '/v1/workspaces')
    expect(response.statusCode).toBe(200)
    const body = response.json<{ items: WorkspaceItem[]; nextCursor: string | null }>()
    expect(body.nextCursor).toBeNull()
    expect([...body.items].sort(byId)).toEqual([...expected].sort(byId))
  })

  it('walks every workspace one page at a time, ending with a null cursor', async () => {
    const { user, expected } = await busyUser()
    const seen: WorkspaceItem[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const url: string =
        cursor === null ? '/v1/workspaces?limit=1' : `/v1/workspaces?limit=1&cursor=${cursor}`
      const response = await stack.call(user.token, 'GET', url)
      expect(response.statusCode).toBe(200)
      const page = response.json<{ items: WorkspaceItem[]; nextCursor: string | null }>()
      expect(page.items.length).toBeLessThanOrEqual(1)
      seen.push(...page.items)
      cursor = page.nextCursor
      pages += 1
    } while (cursor !== null && pages < 20)
    expect(cursor).toBeNull()
    expect(pages).toBe(expected.length)
    expect(new Set(seen.map((item) => item.id)).size).toBe(seen.length)
    expect([...seen].sort(byId)).toEqual([...expected].sort(byId))
  })

  it('narrows the list to one tenant with ?tenantId=', async () => {
    const { user, own, expected } = await busyUser()
    const response = await stack.call(user.token, 'GET', `/v1/workspaces?tenantId=${own.tenantId}`)
    expect(response.statusCode).toBe(200)
    const items = response.json<{ items: WorkspaceItem[] }>().items
    expect([...items].sort(byId)).toEqual(
      expected.filter((item) => item.tenantId === own.tenantId).sort(byId),
    )
  })

  it.each([
    ['a garbage cursor', 'cursor=garbage!!'],
    ['a cursor of the wrong shape', `cursor=${Buffer.from('{"a":1}').toString('base64url')}`],
    ['a zero limit', 'limit=0'],
    ['a limit over 100', 'limit=101'],
    ['an unknown parameter', 'sort=name'],
  ])('refuses %s with 400 WSP_VALIDATION', async (_label, query) => {
    const user = await stack.user('lister')
    const response = await stack.call(user.token, 'GET', `/v1/workspaces?${query}`)
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })

  it('leaves a deleted workspace out of the list', async () => {
    const { user, own, expected } = await busyUser()
    await remove(user, own.workspaceId)
    const response = await stack.call(user.token, 'GET', '/v1/workspaces?limit=100')
    const items = response.json<{ items: WorkspaceItem[] }>().items
    expect([...items].sort(byId)).toEqual(
      expected.filter((item) => item.id !== own.workspaceId).sort(byId),
    )
  })
})

describe('GET and PATCH /v1/workspaces/:wid', () => {
  it('shows a member the workspace with its own role', async () => {
    const { tenantId, workspaceId, others } = await workspaceWith(stack, 'viewer')
    const [viewer] = others
    const response = await stack.call(viewer.token, 'GET', `/v1/workspaces/${workspaceId}`)
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({
      id: workspaceId,
      tenantId,
      name: 'General',
      role: 'viewer',
      createdAt: expect.any(String),
      policyVersion: 1,
    })
  })

  it('answers 404 to a user who is not a member, even of the same tenant', async () => {
    const { tenantId, workspaceId, owner, others } = await workspaceWith(stack, 'member')
    const [member] = others
    const elsewhere = await createWorkspace(owner, tenantId, 'Private')
    const sameTenant = await stack.call(member.token, 'GET', `/v1/workspaces/${elsewhere}`)
    expect(sameTenant.statusCode).toBe(404)
    expect(sameTenant.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    const outsider = await stack.user('outsider')
    const foreign = await stack.call(outsider.token, 'GET', `/v1/workspaces/${workspaceId}`)
    expect(foreign.statusCode).toBe(404)
    expect(foreign.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
  })

  it('lets an admin rename the workspace and audits the old and new name', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    const response = await stack.call(admin.token, 'PATCH', `/v1/workspaces/${workspaceId}`, {
      name: 'Renamed',
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id: workspaceId, name: 'Renamed', role: 'admin' })
    expect((await stack.app.tenancy.models.Workspace.findById(workspaceId).lean())?.name).toBe(
      'Renamed',
    )
    const events = await stack.app.tenancy.models.Audit.find({
      workspaceId,
      action: 'workspace.renamed',
    }).lean()
    expect(events).toEqual([
      expect.objectContaining({
        actor: { type: 'user', id: admin.id },
        before: { name: 'General' },
        after: { name: 'Renamed' },
      }),
    ])
  })

  it.each(['member', 'viewer'] as const)(
    'refuses a %s renaming the workspace with 403 WSP_FORBIDDEN, changing nothing',
    async (role) => {
      const { workspaceId, others } = await workspaceWith(stack, role)
      const [user] = others
      const before = await workspaceState(stack, workspaceId)
      const response = await stack.call(user.token, 'PATCH', `/v1/workspaces/${workspaceId}`, {
        name: 'Mine now',
      })
      expect(response.statusCode).toBe(403)
      expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
      expect(await workspaceState(stack, workspaceId)).toEqual(before)
    },
  )

  it('refuses an invalid name with 400, changing nothing', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const before = await workspaceState(stack, workspaceId)
    const response = await stack.call(owner.token, 'PATCH', `/v1/workspaces/${workspaceId}`, {
      name: 'x'.repeat(101),
    })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })
})

describe('DELETE /v1/workspaces/:wid and restore', () => {
  it.each(['admin', 'member', 'viewer'] as const)(
    'refuses a %s deleting the workspace with 403 WSP_FORBIDDEN, leaving it live',
    async (role) => {
      const { workspaceId, others } = await workspaceWith(stack, role)
      const [user] = others
      const before = await workspaceState(stack, workspaceId)
      const response = await stack.call(user.token, 'DELETE', `/v1/workspaces/${workspaceId}`)
      expect(response.statusCode).toBe(403)
      expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
      expect(await workspaceState(stack, workspaceId)).toEqual(before)
      expect(before.workspace?.deletedAt).toBeNull()
    },
  )

  it('lets the owner delete softly: every workspace route answers 404, memberships vanish, invitations are revoked', async () => {
    const { tenantId, workspaceId, owner, others } = await workspaceWith(stack, 'admin', 'member')
    const [admin, member] = others
    const pending = await invite(owner, workspaceId)
    const policy = (
      await stack.call(owner.token, 'GET', `/v1/workspaces/${workspaceId}/policy`)
    ).json()
    const authService = await stack.serviceToken('auth-service')
    const membershipUrl = `/internal/v1/memberships?userId=${admin.id}&workspaceId=${workspaceId}`
    const live = await stack.call(authService, 'GET', membershipUrl)
    expect(live.statusCode).toBe(200)
    expect(live.json()).toEqual({ workspaceId, tenantId, name: 'General', role: 'admin' })

    const deleted = await remove(owner, workspaceId)
    expect(deleted.id).toBe(workspaceId)
    expect(Date.parse(deleted.purgeAt) - Date.parse(deleted.deletedAt)).toBe(30 * DAY_MS)
    const stored = await stack.app.tenancy.models.Workspace.findById(workspaceId).lean()
    expect(stored).toMatchObject({ deletedBy: owner.id })
    expect(stored?.deletedAt?.toISOString()).toBe(deleted.deletedAt)
    expect(stored?.purgeAt?.toISOString()).toBe(deleted.purgeAt)
    expect(
      await stack.app.tenancy.models.Audit.countDocuments({
        workspaceId,
        action: 'workspace.deleted',
      }),
    ).toBe(1)

    // Every route under /v1/workspaces/:wid, as the service registered them, with a body it
    // would accept for a live workspace: only the workspace's absence can refuse it.
    const bodies: Record<string, unknown> = {
      'PATCH /v1/workspaces/:wid': { name: 'Zombie' },
      'POST /v1/workspaces/:wid/members': { email: uniqueEmail('late'), role: 'member' },
      'PATCH /v1/workspaces/:wid/members/:userId': { role: 'admin' },
      'PUT /v1/workspaces/:wid/policy': policy,
    }
    const scoped = routes.filter(
      (route) =>
        route.method !== 'HEAD' &&
        route.url.startsWith('/v1/workspaces/:wid') &&
        route.url !== '/v1/workspaces/:wid/restore',
    )
    expect(scoped.length).toBeGreaterThanOrEqual(15)
    const refusals: string[] = []
    for (const route of scoped) {
      const key = `${route.method} ${route.url}`
      const needsBody = ['POST', 'PUT', 'PATCH'].includes(route.method)
      if (needsBody && !(key in bodies)) throw new Error(`no valid body known for ${key}`)
      const url = route.url
        .replace(':wid', workspaceId)
        .replace(':userId', member.id)
        .replace(':invitationId', pending.invitation.id)
      for (const caller of [owner, admin]) {
        const response = await stack.call(caller.token, route.method, url, bodies[key])
        const body = response.json<{ statusCode: number; code: string }>()
        if (response.statusCode !== 404 || body.code !== 'WSP_NOT_FOUND')
          refusals.push(
            `${key} as ${caller === owner ? 'owner' : 'admin'}: ${response.statusCode} ${body.code}`,
          )
      }
    }
    expect(refusals).toEqual([])

    // Nothing those calls tried was written.
    const after = await workspaceState(stack, workspaceId)
    expect(after.workspace?.name).toBe('General')
    expect(after.members.map((row) => row.role).sort()).toEqual(['admin', 'member', 'owner'])
    expect(after.invitations).toEqual([
      expect.objectContaining({ _id: pending.invitation.id, status: 'revoked' }),
    ])

    const gone = await stack.call(authService, 'GET', membershipUrl)
    expect(gone.statusCode).toBe(404)
    expect(gone.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    const listed = await stack.call(
      authService,
      'GET',
      `/internal/v1/users/${admin.id}/memberships`,
    )
    expect(listed.json()).toEqual({ items: [], lastUsedWorkspaceId: null })

    // The revoked invitation can no longer be used.
    const invitee = await stack.user('invitee')
    const accept = await stack.call(
      invitee.token,
      'POST',
      `/v1/invitations/${pending.token}/accept`,
    )
    expect(accept.statusCode).toBe(404)
    expect(accept.json()).toMatchObject(errorCode(404, 'WSP_INVITATION_INVALID'))
  })

  it('lets an owner restore a deleted workspace, which is then back for every member', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'member')
    const [member] = others
    await remove(owner, workspaceId)
    const response = await stack.call(owner.token, 'POST', `/v1/workspaces/${workspaceId}/restore`)
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ id: workspaceId, name: 'General', role: 'owner' })
    expect(await stack.app.tenancy.models.Workspace.findById(workspaceId).lean()).toMatchObject({
      deletedAt: null,
      deletedBy: null,
      purgeAt: null,
    })
    const read = await stack.call(member.token, 'GET', `/v1/workspaces/${workspaceId}`)
    expect(read.statusCode).toBe(200)
    expect(
      await stack.app.tenancy.models.Audit.countDocuments({
        workspaceId,
        action: 'workspace.restored',
      }),
    ).toBe(1)
  })

  it('answers 404 to a non-owner restoring, and the workspace stays deleted', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    const outsider = await stack.user('outsider')
    await remove(owner, workspaceId)
    const before = await workspaceState(stack, workspaceId)
    for (const caller of [admin, outsider]) {
      const response = await stack.call(
        caller.token,
        'POST',
        `/v1/workspaces/${workspaceId}/restore`,
      )
      expect(response.statusCode).toBe(404)
      expect(response.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    }
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
    expect(before.workspace?.deletedAt).not.toBeNull()
  })

  it('answers 404 to restoring a live workspace or one past its purge date', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const live = await stack.call(owner.token, 'POST', `/v1/workspaces/${workspaceId}/restore`)
    expect(live.statusCode).toBe(404)
    expect(live.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))

    await remove(owner, workspaceId)
    await stack.app.tenancy.models.Workspace.updateOne(
      { _id: workspaceId },
      { $set: { purgeAt: new Date(Date.now() - 1000) } },
    )
    const late = await stack.call(owner.token, 'POST', `/v1/workspaces/${workspaceId}/restore`)
    expect(late.statusCode).toBe(404)
    expect(late.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    expect(
      (await stack.app.tenancy.models.Workspace.findById(workspaceId).lean())?.deletedAt,
    ).not.toBeNull()
  })

  it('answers 404 to deleting twice', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    await remove(owner, workspaceId)
    const again = await stack.call(owner.token, 'DELETE', `/v1/workspaces/${workspaceId}`)
    expect(again.statusCode).toBe(404)
    expect(again.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
  })
})

describe('purging deleted workspaces', () => {
  /** How many rows each collection holds for one workspace. */
  async function rowsOf(workspaceId: string) {
    const { Workspace, Member, Invitation, PolicyVersion, Ledger, Rollup, Audit } =
      stack.app.tenancy.models
    const scope = { workspaceId }
    const [workspaces, members, invitations, policyVersions, ledger, rollups, audit] =
      await Promise.all([
        Workspace.countDocuments({ _id: workspaceId }),
        Member.countDocuments(scope),
        Invitation.countDocuments(scope),
        PolicyVersion.countDocuments(scope),
        Ledger.countDocuments(scope),
        Rollup.countDocuments(scope),
        Audit.countDocuments(scope),
      ])
    return { workspaces, members, invitations, policyVersions, ledger, rollups, audit }
  }

  /** Fills a workspace with a row in every collection a purge must empty. */
  async function populate(owner: TestUser, tenantId: string, workspaceId: string) {
    await stack.addMember(owner, workspaceId, await stack.user('member'), 'member')
    await invite(owner, workspaceId)
    const policy = (
      await stack.call(owner.token, 'GET', `/v1/workspaces/${workspaceId}/policy`)
    ).json<Record<string, unknown>>()
    const written = await stack.call(owner.token, 'PUT', `/v1/workspaces/${workspaceId}/policy`, {
      ...policy,
      systemPrompt: 'Be brief.',
    })
    expect(written.statusCode).toBe(200)
    const startedAt = new Date(Date.now() - 60_000).toISOString()
    const usage = await stack.call(
      await stack.serviceToken('api-gateway'),
      'POST',
      '/internal/v1/usage',
      {
        records: [
          {
            callId: randomUUID(),
            kind: 'model',
            tenantId,
            workspaceId,
            userId: owner.id,
            provider: 'oai',
            model: 'gpt-4o-mini',
            inputTokens: 100,
            outputTokens: 50,
            costUsd: 0.001,
            durationMs: 1200,
            startedAt,
            endedAt: new Date().toISOString(),
            status: 'completed',
          },
        ],
      },
    )
    expect(usage.statusCode).toBe(200)
  }

  it('removes a deleted workspace with all its rows once its retention has passed, and nothing else', async () => {
    const { tenantId, workspaceId, owner } = await workspaceWith(stack)
    const sibling = await createWorkspace(owner, tenantId, 'Sibling')
    await populate(owner, tenantId, workspaceId)
    await populate(owner, tenantId, sibling)
    const full = await rowsOf(workspaceId)
    for (const [collection, count] of Object.entries(full))
      expect(count, `${collection} before the purge`).toBeGreaterThan(0)
    expect(full.policyVersions).toBe(2)
    const siblingBefore = await rowsOf(sibling)

    await remove(owner, workspaceId)
    // Within the retention a purge leaves it alone.
    await stack.app.tenancy.workspaces.purgeDue(new Date())
    expect((await rowsOf(workspaceId)).workspaces).toBe(1)

    const purged = await stack.app.tenancy.workspaces.purgeDue(new Date(Date.now() + 31 * DAY_MS))
    expect(purged).toBeGreaterThanOrEqual(1)
    expect(await rowsOf(workspaceId)).toEqual({
      workspaces: 0,
      members: 0,
      invitations: 0,
      policyVersions: 0,
      ledger: 0,
      rollups: 0,
      audit: 0,
    })
    expect(await rowsOf(sibling)).toEqual(siblingBefore)
    // The purge itself is on the tenant's record, outside the workspace it removed.
    expect(
      await stack.app.tenancy.models.Audit.find({
        tenantId,
        action: 'workspace.purged',
      }).lean(),
    ).toEqual([
      expect.objectContaining({
        workspaceId: null,
        actor: { type: 'service', id: 'workspace-service' },
        target: { type: 'workspace', id: workspaceId },
      }),
    ])
    const restore = await stack.call(owner.token, 'POST', `/v1/workspaces/${workspaceId}/restore`)
    expect(restore.statusCode).toBe(404)
  })

  it('never purges a live workspace, however late the clock', async () => {
    const { tenantId, workspaceId, owner } = await workspaceWith(stack)
    await populate(owner, tenantId, workspaceId)
    const before = await rowsOf(workspaceId)
    await stack.app.tenancy.workspaces.purgeDue(new Date(Date.now() + 3650 * DAY_MS))
    expect(await rowsOf(workspaceId)).toEqual(before)
  })
})
