import { randomUUID } from 'node:crypto'
import type { TenantRole, WorkspaceRole } from '@platform/shared-types'
import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  mayInTenant,
  mayInWorkspace,
  TENANT_PERMISSIONS,
  type TenantPermission,
  WORKSPACE_PERMISSIONS,
  type WorkspacePermission,
} from '../../src/lib/permissions.js'
import { workspaceWith } from '../helpers/members.js'
import {
  errorCode,
  startTestStack,
  type TestStack,
  type TestUser,
  uniqueEmail,
} from '../helpers/stack.js'

/**
 * The role table as the product defines it (API.md §2, §4), written out cell by cell so that
 * any change to src/lib/permissions.ts has to be made here too, on purpose.
 */
const EXPECTED_WORKSPACE: Record<WorkspacePermission, Record<WorkspaceRole, boolean>> = {
  'workspace.read': { owner: true, admin: true, member: true, viewer: true },
  'workspace.update': { owner: true, admin: true, member: false, viewer: false },
  'workspace.delete': { owner: true, admin: false, member: false, viewer: false },
  'members.read': { owner: true, admin: true, member: true, viewer: true },
  'members.manage': { owner: true, admin: true, member: false, viewer: false },
  'members.manage-owners': { owner: true, admin: false, member: false, viewer: false },
  'policy.read': { owner: true, admin: true, member: true, viewer: true },
  'policy.write': { owner: true, admin: true, member: false, viewer: false },
  'policy.history': { owner: true, admin: true, member: false, viewer: false },
  'usage.read-own': { owner: true, admin: true, member: true, viewer: true },
  'usage.read-all': { owner: true, admin: true, member: false, viewer: false },
  'quota.read': { owner: true, admin: true, member: true, viewer: true },
  'audit.read': { owner: true, admin: true, member: false, viewer: false },
  export: { owner: true, admin: true, member: false, viewer: false },
}

const EXPECTED_TENANT: Record<TenantPermission, Record<TenantRole, boolean>> = {
  'tenant.read': { owner: true, admin: true, member: true },
  'tenant.update': { owner: true, admin: true, member: false },
  'tenant.members.read': { owner: true, admin: true, member: false },
  'tenant.members.manage': { owner: true, admin: false, member: false },
  'tenant.audit.read': { owner: true, admin: true, member: false },
  'workspaces.create': { owner: true, admin: true, member: false },
}

const WORKSPACE_ROLES: WorkspaceRole[] = ['owner', 'admin', 'member', 'viewer']
const TENANT_ROLES: TenantRole[] = ['owner', 'admin', 'member']
const workspacePermissions = Object.keys(EXPECTED_WORKSPACE) as WorkspacePermission[]
const tenantPermissions = Object.keys(EXPECTED_TENANT) as TenantPermission[]

const workspaceCells = WORKSPACE_ROLES.flatMap((role) =>
  workspacePermissions.map((permission) => ({
    role,
    permission,
    allowed: EXPECTED_WORKSPACE[permission][role],
  })),
)
const tenantCells = TENANT_ROLES.flatMap((role) =>
  tenantPermissions.map((permission) => ({
    role,
    permission,
    allowed: EXPECTED_TENANT[permission][role],
  })),
)

describe('the workspace role table', () => {
  it('has exactly the roles and permissions the product defines', () => {
    expect(Object.keys(WORKSPACE_PERMISSIONS).sort()).toEqual([...WORKSPACE_ROLES].sort())
    for (const role of WORKSPACE_ROLES)
      for (const permission of WORKSPACE_PERMISSIONS[role])
        expect(workspacePermissions, `${role} holds an unlisted permission`).toContain(permission)
  })

  it.each(workspaceCells)('$role: $permission is $allowed', ({ role, permission, allowed }) => {
    expect(WORKSPACE_PERMISSIONS[role].has(permission)).toBe(allowed)
    expect(mayInWorkspace(role, permission)).toBe(allowed)
  })

  it('never lets a lower role do something a higher one may not', () => {
    for (const permission of workspacePermissions) {
      const row = EXPECTED_WORKSPACE[permission]
      expect(row.viewer <= row.member && row.member <= row.admin && row.admin <= row.owner).toBe(
        true,
      )
    }
  })
})

describe('the tenant role table', () => {
  it('has exactly the roles and permissions the product defines', () => {
    expect(Object.keys(TENANT_PERMISSIONS).sort()).toEqual([...TENANT_ROLES].sort())
    for (const role of TENANT_ROLES)
      for (const permission of TENANT_PERMISSIONS[role])
        expect(tenantPermissions, `${role} holds an unlisted permission`).toContain(permission)
  })

  it.each(tenantCells)('$role: $permission is $allowed', ({ role, permission, allowed }) => {
    expect(TENANT_PERMISSIONS[role].has(permission)).toBe(allowed)
    expect(mayInTenant(role, permission)).toBe(allowed)
  })
})

describe('the role table as the routes enforce it', () => {
  let stack: TestStack
  beforeAll(async () => {
    stack = await startTestStack()
  })
  afterAll(() => stack?.close())

  interface WorkspaceFixture {
    tenantId: string
    workspaceId: string
    /** The user holding the role under test. */
    actor: TestUser
    owner: TestUser
    /** A plain member the actor may try to act on. */
    bystander: TestUser
  }

  /** A fresh workspace in which `role` is held by `actor`, with usage by the actor and by the owner. */
  async function workspaceFixture(role: WorkspaceRole): Promise<WorkspaceFixture> {
    const { tenantId, workspaceId, owner, others } = await workspaceWith(stack, 'member')
    const [bystander] = others
    let actor = owner
    if (role !== 'owner') {
      actor = await stack.user(role)
      await stack.addMember(owner, workspaceId, actor, role)
    }
    const startedAt = new Date(Date.now() - 60_000).toISOString()
    const record = (userId: string) => ({
      callId: randomUUID(),
      kind: 'model',
      tenantId,
      workspaceId,
      userId,
      provider: 'oai',
      model: 'gpt-4o-mini',
      inputTokens: 10,
      outputTokens: 5,
      costUsd: 0.0001,
      durationMs: 500,
      startedAt,
      endedAt: new Date().toISOString(),
      status: 'completed',
    })
    const usage = await stack.call(
      await stack.serviceToken('api-gateway'),
      'POST',
      '/internal/v1/usage',
      { records: [record(actor.id), record(bystander.id)] },
    )
    expect(usage.statusCode).toBe(200)
    return { tenantId, workspaceId, actor, owner, bystander }
  }

  type Verdict = 'allowed' | 'forbidden'

  /** 403 WSP_FORBIDDEN is the table saying no; the expected success status is it saying yes. */
  function verdictOf(response: LightMyRequestResponse, success: number): Verdict {
    if (response.statusCode === success) return 'allowed'
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    return 'forbidden'
  }

  /** One representative route per permission, answering what the actor's role was allowed. */
  const probes: Record<WorkspacePermission, (fixture: WorkspaceFixture) => Promise<Verdict>> = {
    'workspace.read': async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}`), 200),
    'workspace.update': async ({ actor, workspaceId }) =>
      verdictOf(
        await stack.call(actor.token, 'PATCH', `/v1/workspaces/${workspaceId}`, {
          name: `Renamed ${randomUUID().slice(0, 8)}`,
        }),
        200,
      ),
    'workspace.delete': async ({ actor, workspaceId }) => {
      const response = await stack.call(actor.token, 'DELETE', `/v1/workspaces/${workspaceId}`)
      const verdict = verdictOf(response, 200)
      if (verdict === 'allowed') {
        // Back for the probes that follow.
        const restored = await stack.call(
          actor.token,
          'POST',
          `/v1/workspaces/${workspaceId}/restore`,
        )
        expect(restored.statusCode).toBe(200)
      }
      return verdict
    },
    'members.read': async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/members`), 200),
    'members.manage': async ({ actor, workspaceId }) =>
      verdictOf(
        await stack.call(actor.token, 'POST', `/v1/workspaces/${workspaceId}/members`, {
          email: uniqueEmail('probe'),
          role: 'viewer',
        }),
        202,
      ),
    'members.manage-owners': async ({ actor, workspaceId, bystander }) =>
      verdictOf(
        await stack.call(
          actor.token,
          'PATCH',
          `/v1/workspaces/${workspaceId}/members/${bystander.id}`,
          { role: 'owner' },
        ),
        200,
      ),
    'policy.read': async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/policy`), 200),
    'policy.write': async ({ actor, owner, workspaceId }) => {
      const current = await stack.call(owner.token, 'GET', `/v1/workspaces/${workspaceId}/policy`)
      return verdictOf(
        await stack.call(actor.token, 'PUT', `/v1/workspaces/${workspaceId}/policy`, {
          ...current.json<Record<string, unknown>>(),
          systemPrompt: `Probe ${randomUUID()}`,
        }),
        200,
      )
    },
    'policy.history': async ({ actor, workspaceId }) =>
      verdictOf(
        await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/policy/versions`),
        200,
      ),
    'usage.read-own': async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/usage`), 200),
    // Everyone may ask; the table decides whether the answer covers everyone or only the caller.
    'usage.read-all': async ({ actor, workspaceId }) => {
      const response = await stack.call(
        actor.token,
        'GET',
        `/v1/workspaces/${workspaceId}/usage?groupBy=member`,
      )
      expect(response.statusCode).toBe(200)
      const body = response.json<{ totals: { calls: number }; items: Array<{ key: string }> }>()
      const keys = body.items.map((item) => item.key)
      if (body.totals.calls === 2 && keys.length === 2) return 'allowed'
      expect(body.totals.calls).toBe(1)
      expect(keys).toEqual([actor.id])
      return 'forbidden'
    },
    'quota.read': async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/quota`), 200),
    'audit.read': async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/audit`), 200),
    export: async ({ actor, workspaceId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/workspaces/${workspaceId}/export`), 200),
  }

  it.each(WORKSPACE_ROLES)(
    'answers a workspace %s as the table says, route by route',
    async (role) => {
      const fixture = await workspaceFixture(role)
      const expected: Record<string, Verdict> = {}
      const actual: Record<string, Verdict> = {}
      for (const permission of workspacePermissions) {
        expected[permission] = EXPECTED_WORKSPACE[permission][role] ? 'allowed' : 'forbidden'
        actual[permission] = await probes[permission](fixture)
      }
      expect(actual).toEqual(expected)
    },
  )

  interface TenantFixture {
    tenantId: string
    actor: TestUser
    owner: TestUser
    bystander: TestUser
  }

  /** A fresh tenant in which `role` is held by `actor`, with a plain member to act on. */
  async function tenantFixture(role: TenantRole): Promise<TenantFixture> {
    const { tenantId, owner, others } = await workspaceWith(stack, 'member', 'member')
    const [member, bystander] = others
    if (role === 'owner') return { tenantId, actor: owner, owner, bystander }
    if (role === 'admin') {
      const promoted = await stack.call(
        owner.token,
        'PATCH',
        `/v1/tenants/${tenantId}/members/${member.id}`,
        { role: 'admin' },
      )
      expect(promoted.statusCode).toBe(200)
    }
    return { tenantId, actor: member, owner, bystander }
  }

  const tenantProbes: Record<TenantPermission, (fixture: TenantFixture) => Promise<Verdict>> = {
    'tenant.read': async ({ actor, tenantId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/tenants/${tenantId}`), 200),
    'tenant.update': async ({ actor, tenantId }) =>
      verdictOf(
        await stack.call(actor.token, 'PATCH', `/v1/tenants/${tenantId}`, {
          name: `Renamed ${randomUUID().slice(0, 8)}`,
        }),
        200,
      ),
    'tenant.members.read': async ({ actor, tenantId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/tenants/${tenantId}/members`), 200),
    'tenant.members.manage': async ({ actor, tenantId, bystander }) =>
      verdictOf(
        await stack.call(actor.token, 'PATCH', `/v1/tenants/${tenantId}/members/${bystander.id}`, {
          role: 'member',
        }),
        200,
      ),
    'tenant.audit.read': async ({ actor, tenantId }) =>
      verdictOf(await stack.call(actor.token, 'GET', `/v1/tenants/${tenantId}/audit`), 200),
    'workspaces.create': async ({ actor, tenantId }) =>
      verdictOf(
        await stack.call(actor.token, 'POST', `/v1/tenants/${tenantId}/workspaces`, {
          name: 'Probe',
        }),
        201,
      ),
  }

  it.each(TENANT_ROLES)('answers a tenant %s as the table says, route by route', async (role) => {
    const fixture = await tenantFixture(role)
    const expected: Record<string, Verdict> = {}
    const actual: Record<string, Verdict> = {}
    for (const permission of tenantPermissions) {
      expected[permission] = EXPECTED_TENANT[permission][role] ? 'allowed' : 'forbidden'
      actual[permission] = await tenantProbes[permission](fixture)
    }
    expect(actual).toEqual(expected)
  })
})
