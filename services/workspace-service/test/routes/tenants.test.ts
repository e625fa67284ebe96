import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { workspaceWith } from '../helpers/members.js'
import { errorCode, startTestStack, type TestStack, type TestUser } from '../helpers/stack.js'

let stack: TestStack
beforeAll(async () => {
  stack = await startTestStack()
})
afterAll(() => stack?.close())

/** Everything a tenant creation by `user` could have written, counted. */
async function rowsCreatedBy(user: TestUser) {
  const { Tenant, TenantMember, Workspace, Member, PolicyVersion, Audit } = stack.app.tenancy.models
  const [tenants, tenantMembers, workspaces, members, policyVersions, auditEvents] =
    await Promise.all([
      Tenant.countDocuments({ createdBy: user.id }),
      TenantMember.countDocuments({ userId: user.id }),
      Workspace.countDocuments({ createdBy: user.id }),
      Member.countDocuments({ userId: user.id }),
      PolicyVersion.countDocuments({ changedBy: user.id }),
      Audit.countDocuments({ 'actor.id': user.id }),
    ])
  return { tenants, tenantMembers, workspaces, members, policyVersions, auditEvents }
}

const NOTHING = {
  tenants: 0,
  tenantMembers: 0,
  workspaces: 0,
  members: 0,
  policyVersions: 0,
  auditEvents: 0,
}

/** A tenant's stored settings and its settings audit trail, to prove a refusal changed neither. */
async function tenantSettingsState(tenantId: string) {
  const { Tenant, Audit } = stack.app.tenancy.models
  const [tenant, updates] = await Promise.all([
    Tenant.findById(tenantId).lean(),
    Audit.countDocuments({ tenantId, action: 'tenant.settings.updated' }),
  ])
  return { tenant, updates }
}

/** Gives `user` a tenant role, as the tenant's owner. */
async function setTenantRole(
  owner: TestUser,
  tenantId: string,
  user: TestUser,
  role: 'owner' | 'admin' | 'member',
) {
  const response = await stack.call(
    owner.token,
    'PATCH',
    `/v1/tenants/${tenantId}/members/${user.id}`,
    {
      role,
    },
  )
  expect(response.statusCode).toBe(200)
}

describe('POST /v1/tenants', () => {
  it('creates the tenant, its first workspace, both owner rows, policy version 1 and the audit events', async () => {
    const founder = await stack.user('founder')
    const response = await stack.call(founder.token, 'POST', '/v1/tenants', {
      name: '  Acme Research  ',
      timeZone: 'Europe/Berlin',
    })
    expect(response.statusCode).toBe(201)
    const body = response.json<{
      tenant: { id: string; name: string; timeZone: string }
      workspace: { id: string; name: string }
    }>()
    expect(body).toEqual({
      tenant: { id: expect.any(String), name: 'Acme Research', timeZone: 'Europe/Berlin' },
      workspace: { id: expect.any(String), name: 'General' },
    })
    const tenantId = body.tenant.id
    const workspaceId = body.workspace.id

    const { Tenant, TenantMember, Workspace, Member, PolicyVersion, Audit } =
      stack.app.tenancy.models
    const tenant = await Tenant.findById(tenantId).lean()
    expect(tenant).toMatchObject({
      name: 'Acme Research',
      timeZone: 'Europe/Berlin',
      ownerCount: 1,
      createdBy: founder.id,
      allowedEmailDomains: [],
      limits: { monthlyTokens: null },
      auditRetentionDays: null,
    })
    const tenantMembers = await TenantMember.find({ tenantId }).lean()
    expect(tenantMembers).toEqual([
      expect.objectContaining({ tenantId, userId: founder.id, role: 'owner' }),
    ])

    const workspace = await Workspace.findById(workspaceId).lean()
    expect(workspace).toMatchObject({
      tenantId,
      name: 'General',
      ownerCount: 1,
      policyVersion: 1,
      deletedAt: null,
      policy: { models: { allow: [] }, mcp: { servers: [] } },
    })
    const members = await Member.find({ workspaceId }).lean()
    expect(members).toEqual([
      expect.objectContaining({
        tenantId,
        userId: founder.id,
        email: founder.email,
        name: founder.name,
        role: 'owner',
      }),
    ])
    const versions = await PolicyVersion.find({ workspaceId }).lean()
    expect(versions).toEqual([
      expect.objectContaining({ version: 1, changedBy: founder.id, policy: workspace?.policy }),
    ])

    const events = await Audit.find({ tenantId }).sort({ at: 1 }).lean()
    expect(events.map((event) => event.action)).toEqual(['tenant.created', 'workspace.created'])
    expect(events[0]).toMatchObject({
      actor: { type: 'user', id: founder.id },
      target: { type: 'tenant', id: tenantId },
      workspaceId: null,
      after: { name: 'Acme Research', timeZone: 'Europe/Berlin' },
    })
    expect(events[1]).toMatchObject({
      actor: { type: 'user', id: founder.id },
      target: { type: 'workspace', id: workspaceId },
      workspaceId,
      after: { name: 'General' },
    })
  })

  it('defaults the time zone to UTC and accepts a first workspace name', async () => {
    const founder = await stack.user('founder')
    const response = await stack.call(founder.token, 'POST', '/v1/tenants', {
      name: 'Globex',
      workspaceName: 'Lab',
    })
    expect(response.statusCode).toBe(201)
    expect(response.json()).toMatchObject({
      tenant: { name: 'Globex', timeZone: 'UTC' },
      workspace: { name: 'Lab' },
    })
  })

  it('writes nothing at all when a step of the creation fails (one transaction)', async () => {
    const founder = await stack.user('founder')
    const db = stack.app.mongo.db
    if (db === undefined) throw new Error('no database handle')
    // A real server-side refusal of the policy-version insert, the last write but one.
    await db.command({
      collMod: 'policy_versions',
      validator: { $jsonSchema: { required: ['fieldNoInsertHas'] } },
      validationAction: 'error',
    })
    try {
      const response = await stack.call(founder.token, 'POST', '/v1/tenants', { name: 'Doomed' })
      expect(response.statusCode).toBe(500)
      expect(response.json()).toEqual({
        statusCode: 500,
        code: 'WSP_INTERNAL',
        error: 'Internal Server Error',
        message: 'Internal Server Error',
      })
    } finally {
      await db.command({ collMod: 'policy_versions', validator: {} })
    }
    expect(await rowsCreatedBy(founder)).toEqual(NOTHING)
    expect(await stack.app.tenancy.models.Tenant.countDocuments({ name: 'Doomed' })).toBe(0)
  })

  it.each([
    ['an empty name', { name: '' }],
    ['a name of blanks only', { name: '    ' }],
    ['a name over 100 characters', { name: 'x'.repeat(101) }],
    ['a name with a control character', { name: 'Acme\u0007Bell' }],
    ['a name with a bidi override', { name: 'Acme\u202Eevil' }],
    ['a name that is not a string', { name: 42 }],
    ['no name', {}],
    ['a time zone that does not exist', { name: 'Acme', timeZone: 'Mars/Base' }],
    ['an offset instead of a zone', { name: 'Acme', timeZone: '+01:00' }],
    ['an unknown field', { name: 'Acme', plan: 'enterprise' }],
    ['an owner smuggled in', { name: 'Acme', createdBy: 'usr_someone_else' }],
  ])('refuses %s with 400 WSP_VALIDATION and writes nothing', async (_label, body) => {
    const founder = await stack.user('founder')
    const response = await stack.call(founder.token, 'POST', '/v1/tenants', body)
    expect(response.statusCode).toBe(400)
    const error = response.json<{ details: Array<{ path: string; message: string }> }>()
    expect(error).toMatchObject({
      ...errorCode(400, 'WSP_VALIDATION'),
      error: 'Bad Request',
      message: expect.any(String),
    })
    expect(error.details.length).toBeGreaterThan(0)
    expect(await rowsCreatedBy(founder)).toEqual(NOTHING)
  })

  it('refuses a caller without a token with 401 and writes nothing', async () => {
    const before = await stack.app.tenancy.models.Tenant.countDocuments({ name: 'Anonymous Inc' })
    const response = await stack.call(null, 'POST', '/v1/tenants', { name: 'Anonymous Inc' })
    expect(response.statusCode).toBe(401)
    expect(response.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
    expect(await stack.app.tenancy.models.Tenant.countDocuments({ name: 'Anonymous Inc' })).toBe(
      before,
    )
  })
})

describe('GET /v1/tenants', () => {
  it('lists the tenants the caller belongs to, each with its tenant role, and no others', async () => {
    const alice = await stack.user('alice')
    const bob = await stack.user('bob')
    const stranger = await stack.user('stranger')
    const aliceTenant = await stack.tenant(alice, 'Alice Co')
    const bobTenant = await stack.tenant(bob, 'Bob Co')
    await stack.tenant(stranger, 'Stranger Co')
    await stack.addMember(alice, aliceTenant.workspaceId, bob, 'member')

    const bobList = await stack.call(bob.token, 'GET', '/v1/tenants')
    expect(bobList.statusCode).toBe(200)
    const items = bobList.json<{ items: Array<{ id: string; name: string; role: string }> }>().items
    expect(
      items
        .map(({ id, name, role }) => ({ id, name, role }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    ).toEqual([
      { id: aliceTenant.tenantId, name: 'Alice Co', role: 'member' },
      { id: bobTenant.tenantId, name: 'Bob Co', role: 'owner' },
    ])

    const aliceList = await stack.call(alice.token, 'GET', '/v1/tenants')
    expect(aliceList.json()).toEqual({
      items: [
        expect.objectContaining({ id: aliceTenant.tenantId, role: 'owner', timeZone: 'UTC' }),
      ],
    })
  })

  it('answers an empty list to a user in no tenant', async () => {
    const loner = await stack.user('loner')
    const response = await stack.call(loner.token, 'GET', '/v1/tenants')
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ items: [] })
  })
})

describe('GET /v1/tenants/:tid', () => {
  it('shows the settings to any tenant member with its own role', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'viewer')
    const [viewer] = others
    const asOwner = await stack.call(owner.token, 'GET', `/v1/tenants/${tenantId}`)
    expect(asOwner.statusCode).toBe(200)
    expect(asOwner.json()).toEqual({
      id: tenantId,
      name: 'Acme',
      timeZone: 'UTC',
      branding: { displayName: null, logoUrl: null, accentColor: null },
      limits: { monthlyTokens: null },
      allowedEmailDomains: [],
      auditRetentionDays: null,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      role: 'owner',
    })
    const asMember = await stack.call(viewer.token, 'GET', `/v1/tenants/${tenantId}`)
    expect(asMember.statusCode).toBe(200)
    expect(asMember.json()).toMatchObject({ id: tenantId, role: 'member' })
  })

  it('answers 404 to a user of another tenant, as for a tenant that does not exist', async () => {
    const { tenantId } = await workspaceWith(stack)
    const outsider = await stack.user('outsider')
    await stack.tenant(outsider, 'Elsewhere')
    const foreign = await stack.call(outsider.token, 'GET', `/v1/tenants/${tenantId}`)
    expect(foreign.statusCode).toBe(404)
    expect(foreign.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    const missing = await stack.call(outsider.token, 'GET', '/v1/tenants/tnt_missing')
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
  })
})

describe('PATCH /v1/tenants/:tid', () => {
  it('changes every setting, answers the new view and audits before and after', async () => {
    const { tenantId, owner } = await workspaceWith(stack)
    const settings = {
      name: 'Acme Worldwide',
      timeZone: 'America/New_York',
      branding: {
        displayName: 'Acme AI',
        logoUrl: 'https://cdn.example.com/acme.png',
        accentColor: '#1A73e8',
      },
      limits: { monthlyTokens: 5_000_000 },
      allowedEmailDomains: ['Acme.Example', 'research.acme.example'],
      auditRetentionDays: 90,
    }
    const response = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, settings)
    expect(response.statusCode).toBe(200)
    const expected = {
      name: 'Acme Worldwide',
      timeZone: 'America/New_York',
      branding: settings.branding,
      limits: { monthlyTokens: 5_000_000 },
      allowedEmailDomains: ['acme.example', 'research.acme.example'],
      auditRetentionDays: 90,
    }
    expect(response.json()).toMatchObject({ id: tenantId, role: 'owner', ...expected })

    const stored = await stack.app.tenancy.models.Tenant.findById(tenantId).lean()
    expect(stored).toMatchObject(expected)

    const events = await stack.app.tenancy.models.Audit.find({
      tenantId,
      action: 'tenant.settings.updated',
    }).lean()
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({
      actor: { type: 'user', id: owner.id },
      target: { type: 'tenant', id: tenantId },
      workspaceId: null,
      before: {
        name: 'Acme',
        timeZone: 'UTC',
        branding: { displayName: null, logoUrl: null, accentColor: null },
        limits: { monthlyTokens: null },
        allowedEmailDomains: [],
        auditRetentionDays: null,
      },
      after: expected,
    })

    // The new retention re-dates the tenant's events already stored.
    const created = await stack.app.tenancy.models.Audit.findOne({
      tenantId,
      action: 'tenant.created',
    }).lean()
    expect(created?.expiresAt.getTime()).toBe(
      (created?.at.getTime() ?? Number.NaN) + 90 * 24 * 3600 * 1000,
    )
  })

  it('merges a partial branding change into the stored branding and audits only what changed', async () => {
    const { tenantId, owner } = await workspaceWith(stack)
    await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      branding: { logoUrl: 'https://cdn.example.com/a.svg', accentColor: '#000000' },
    })
    const response = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      branding: { accentColor: '#ffffff' },
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({
      branding: {
        displayName: null,
        logoUrl: 'https://cdn.example.com/a.svg',
        accentColor: '#ffffff',
      },
    })
    const last = await stack.app.tenancy.models.Audit.findOne({
      tenantId,
      action: 'tenant.settings.updated',
    })
      .sort({ at: -1 })
      .lean()
    expect(last?.before).toEqual({
      branding: {
        displayName: null,
        logoUrl: 'https://cdn.example.com/a.svg',
        accentColor: '#000000',
      },
    })
    expect(last?.after).toEqual({
      branding: {
        displayName: null,
        logoUrl: 'https://cdn.example.com/a.svg',
        accentColor: '#ffffff',
      },
    })
  })

  it('lets a tenant admin change settings', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [admin] = others
    await setTenantRole(owner, tenantId, admin, 'admin')
    const response = await stack.call(admin.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      name: 'Renamed by admin',
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ name: 'Renamed by admin', role: 'admin' })
    const stored = await stack.app.tenancy.models.Tenant.findById(tenantId).lean()
    expect(stored?.name).toBe('Renamed by admin')
  })

  it.each([
    ['a plain-http logo', { branding: { logoUrl: 'http://cdn.example.com/logo.png' } }],
    ['a javascript: logo', { branding: { logoUrl: 'javascript:alert(1)' } }],
    ['a colour name', { branding: { accentColor: 'red' } }],
    ['a short colour', { branding: { accentColor: '#fff' } }],
    ['a colour without #', { branding: { accentColor: '1a73e8' } }],
    ['a negative token limit', { limits: { monthlyTokens: -1 } }],
    ['a fractional token limit', { limits: { monthlyTokens: 1.5 } }],
    ['an empty body', {}],
    ['an unknown field', { plan: 'enterprise' }],
    ['an unknown branding field', { branding: { fontFamily: 'Comic Sans' } }],
    ['an owner count', { ownerCount: 5 }],
    ['an invalid domain', { allowedEmailDomains: ['not a domain'] }],
    ['an address instead of a domain', { allowedEmailDomains: ['someone@example.com'] }],
    ['a zero audit retention', { auditRetentionDays: 0 }],
    ['a time zone that does not exist', { timeZone: 'Mars/Base' }],
    ['an offset instead of a zone', { timeZone: '+01:00' }],
    ['an empty name', { name: '' }],
  ])('refuses %s with 400 WSP_VALIDATION and changes nothing', async (_label, body) => {
    const { tenantId, owner } = await workspaceWith(stack)
    const before = await tenantSettingsState(tenantId)
    const response = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, body)
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await tenantSettingsState(tenantId)).toEqual(before)
  })

  it('refuses a tenant member who is no owner or admin with 403 WSP_FORBIDDEN and changes nothing', async () => {
    const { tenantId, others } = await workspaceWith(stack, 'admin')
    // A workspace admin is still a plain member of the tenant.
    const [workspaceAdmin] = others
    const before = await tenantSettingsState(tenantId)
    const response = await stack.call(workspaceAdmin.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      name: 'Hijacked',
    })
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await tenantSettingsState(tenantId)).toEqual(before)
  })

  it('answers 404 to a user of another tenant and changes nothing', async () => {
    const { tenantId } = await workspaceWith(stack)
    const outsider = await stack.user('outsider')
    const before = await tenantSettingsState(tenantId)
    const response = await stack.call(outsider.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      name: 'Hijacked',
    })
    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    expect(await tenantSettingsState(tenantId)).toEqual(before)
  })

  it('changes nothing and audits nothing when the settings equal the stored ones', async () => {
    const { tenantId, owner } = await workspaceWith(stack)
    const before = await tenantSettingsState(tenantId)
    const response = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      name: 'Acme',
      timeZone: 'UTC',
    })
    expect(response.statusCode).toBe(200)
    expect(await tenantSettingsState(tenantId)).toEqual(before)
  })
})

describe('PATCH /v1/tenants/:tid/members/:userId', () => {
  /** The tenant's member rows and owner count, to prove a refusal changed neither. */
  async function tenantRolesState(tenantId: string) {
    const { Tenant, TenantMember, Audit } = stack.app.tenancy.models
    const [tenant, rows, changes] = await Promise.all([
      Tenant.findById(tenantId).lean(),
      TenantMember.find({ tenantId }).sort({ userId: 1 }).lean(),
      Audit.countDocuments({ tenantId, action: 'tenant.member.role_changed' }),
    ])
    return {
      ownerCount: tenant?.ownerCount,
      roles: rows.map(({ userId, role }) => ({ userId, role })),
      changes,
    }
  }

  it('lets the owner make a member an admin, and audits the change', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [member] = others
    const response = await stack.call(
      owner.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${member.id}`,
      { role: 'admin' },
    )
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({
      userId: member.id,
      role: 'admin',
      addedAt: expect.any(String),
    })
    const row = await stack.app.tenancy.models.TenantMember.findOne({
      tenantId,
      userId: member.id,
    }).lean()
    expect(row?.role).toBe('admin')
    const event = await stack.app.tenancy.models.Audit.findOne({
      tenantId,
      action: 'tenant.member.role_changed',
    }).lean()
    expect(event).toMatchObject({
      actor: { type: 'user', id: owner.id },
      target: { type: 'user', id: member.id },
      before: { role: 'member' },
      after: { role: 'admin' },
    })
  })

  it('refuses a tenant admin granting ownership to someone with 403, changing nothing', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member', 'member')
    const [admin, member] = others
    await setTenantRole(owner, tenantId, admin, 'admin')
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      admin.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${member.id}`,
      { role: 'owner' },
    )
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
  })

  it('refuses a tenant admin making itself owner with 403, changing nothing', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [admin] = others
    await setTenantRole(owner, tenantId, admin, 'admin')
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      admin.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${admin.id}`,
      { role: 'owner' },
    )
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
  })

  it('refuses a tenant admin demoting the owner with 403, changing nothing', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [admin] = others
    await setTenantRole(owner, tenantId, admin, 'admin')
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      admin.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${owner.id}`,
      { role: 'member' },
    )
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
  })

  it('refuses a plain tenant member changing roles with 403, changing nothing', async () => {
    const { tenantId, others } = await workspaceWith(stack, 'admin')
    const [member] = others
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      member.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${member.id}`,
      { role: 'admin' },
    )
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
  })

  it('refuses to demote the last tenant owner with 409 WSP_LAST_OWNER, changing nothing', async () => {
    const { tenantId, owner } = await workspaceWith(stack, 'member')
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      owner.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${owner.id}`,
      { role: 'admin' },
    )
    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject(errorCode(409, 'WSP_LAST_OWNER'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
    expect(before.ownerCount).toBe(1)
  })

  it('lets one of two tenant owners step down, keeping ownerCount equal to the owner rows', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [second] = others
    await setTenantRole(owner, tenantId, second, 'owner')
    expect((await tenantRolesState(tenantId)).ownerCount).toBe(2)
    const response = await stack.call(
      owner.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${owner.id}`,
      { role: 'member' },
    )
    expect(response.statusCode).toBe(200)
    const after = await tenantRolesState(tenantId)
    expect(after.ownerCount).toBe(1)
    expect(after.roles.filter((row) => row.role === 'owner')).toEqual([
      { userId: second.id, role: 'owner' },
    ])
    // The former owner no longer runs the tenant.
    const refused = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, { name: 'X' })
    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
  })

  it('answers 404 for a user who is not in the tenant', async () => {
    const { tenantId, owner } = await workspaceWith(stack)
    const outsider = await stack.user('outsider')
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      owner.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${outsider.id}`,
      { role: 'admin' },
    )
    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
  })

  it('refuses an unknown tenant role with 400', async () => {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member')
    const [member] = others
    const before = await tenantRolesState(tenantId)
    const response = await stack.call(
      owner.token,
      'PATCH',
      `/v1/tenants/${tenantId}/members/${member.id}`,
      { role: 'viewer' },
    )
    expect(response.statusCode).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await tenantRolesState(tenantId)).toEqual(before)
  })
})
