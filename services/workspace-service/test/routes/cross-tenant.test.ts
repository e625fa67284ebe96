import { randomBytes, randomUUID } from 'node:crypto'
import type { WorkspacePolicy } from '@platform/shared-types'
import type { LightMyRequestResponse, RouteOptions } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectErrorBody } from '../helpers/hostile-requests.js'
import { startTestStack, type TestStack, type TestUser } from '../helpers/stack.js'
import {
  expectUnchanged,
  expectUnchangedWithin,
  type StateSnapshot,
  snapshotState,
} from '../helpers/state-snapshot.js'

/*
 * Tenant isolation over every route the app registers. Each route is called by outsiders to a
 * fully populated tenant ("B") with a request the route would accept from B's own side (a
 * control test proves it), so what refuses the outsider is tenancy, never validation. An
 * outsider must get B's refusal for things that do not exist, nothing of B in any body, and B's
 * stored state must stay exactly as it was.
 */

// ---------------------------------------------------------------------------------------------
// The routes the app registers, seen through its onRoute hook

/** The service kit's own routes: no tenant data behind them. */
const KIT_ROUTES = new Set(['/healthz', '/readyz', '/metrics'])

/** `METHOD /url/:param` of every route, in registration order, HEAD twins left out. */
const registered: string[] = []

function collectRoute(route: RouteOptions) {
  const methods = Array.isArray(route.method) ? route.method : [route.method]
  // A prefixed plugin's '/' is registered as '/prefix/' (and '/prefix'): one route.
  const url = route.url.length > 1 ? route.url.replace(/\/+$/, '') : route.url
  for (const method of methods) {
    const key = `${method} ${url}`
    if (method === 'HEAD' || KIT_ROUTES.has(url) || registered.includes(key)) continue
    registered.push(key)
  }
}

// ---------------------------------------------------------------------------------------------
// A fully populated tenant

interface TenantFixture {
  tenantId: string
  workspaceId: string
  /** A second workspace of the tenant, soft-deleted: only its owners may restore it. */
  deletedWorkspaceId: string
  owner: TestUser
  admin: TestUser
  member: TestUser
  invitation: { id: string; token: string; email: string }
  /** Every id, name, address and secret of the tenant, by what it is. */
  secrets: Record<string, string>
}

let stack: TestStack

function expectStatus(response: LightMyRequestResponse, status: number, what: string) {
  expect(response.statusCode, `${what}: ${response.body}`).toBe(status)
}

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString()

function usageRecord(target: TenantFixture, userId: string) {
  return {
    callId: `call-${randomUUID()}`,
    kind: 'model' as const,
    tenantId: target.tenantId,
    workspaceId: target.workspaceId,
    userId,
    provider: 'oai',
    model: 'gpt-4o-mini',
    inputTokens: 1200,
    outputTokens: 300,
    costUsd: 0.0021,
    durationMs: 900,
    startedAt: minutesAgo(2),
    endedAt: minutesAgo(1),
    status: 'completed' as const,
  }
}

function auditEvent(target: TenantFixture, actorId: string) {
  return {
    eventId: `evt-${randomUUID()}`,
    at: minutesAgo(1),
    action: 'auth.login.succeeded',
    actor: { type: 'user' as const, id: actorId },
    target: { type: 'session', id: randomUUID() },
    tenantId: target.tenantId,
    workspaceId: target.workspaceId,
    ip: '203.0.113.7',
    userAgent: 'cross-tenant-test',
    before: null,
    after: null,
  }
}

/** A policy different from every workspace's, valid for `PUT …/policy`. */
const TAKEOVER_POLICY: WorkspacePolicy = {
  models: { allow: ['claude:claude-*'] },
  mcp: { servers: ['github'], tools: { github: ['search_*'] } },
  params: { maxOutputTokens: 2048, temperature: { max: 1 } },
  systemPrompt: 'Taken over',
  quota: {
    monthlyTokens: 1,
    monthlyCostUsd: null,
    memberMonthlyTokens: null,
    rpm: 1,
    memberRpm: null,
    tpm: null,
    memberTpm: null,
    maxConcurrentStreams: 1,
    overage: 'block',
  },
}

/**
 * A tenant with everything a tenant can hold: owner, admin and member, a pending invitation, a
 * policy change, usage in the ledger, audit events from another service, a deleted workspace.
 */
async function populateTenant(label: string, title: string): Promise<TenantFixture> {
  const [owner, admin, member] = await Promise.all([
    stack.user(`${label}-owner`),
    stack.user(`${label}-admin`),
    stack.user(`${label}-member`),
  ])
  const created = await stack.call(owner.token, 'POST', '/v1/tenants', {
    name: `${title} Holdings`,
    timeZone: 'Europe/Berlin',
    workspaceName: `${title} Research`,
  })
  expectStatus(created, 201, 'create the tenant')
  const { tenant, workspace } = created.json<{
    tenant: { id: string }
    workspace: { id: string }
  }>()
  const base = `/v1/workspaces/${workspace.id}`

  const branded = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenant.id}`, {
    branding: { displayName: `${title} Brand` },
  })
  expectStatus(branded, 200, 'brand the tenant')
  await stack.addMember(owner, workspace.id, admin, 'admin')
  await stack.addMember(owner, workspace.id, member, 'member')

  const inviteeEmail = `${label}-invitee-${randomBytes(4).toString('hex')}@example.com`
  const invited = await stack.call(owner.token, 'POST', `${base}/members`, {
    email: inviteeEmail,
    role: 'member',
  })
  expectStatus(invited, 202, 'invite')
  const invitation = invited.json<{ invitation: { id: string }; token: string }>()

  const policy = await stack.call(owner.token, 'GET', `${base}/policy`)
  expectStatus(policy, 200, 'read the policy')
  const changed = await stack.call(owner.token, 'PUT', `${base}/policy`, {
    ...policy.json<WorkspacePolicy>(),
    models: { allow: ['oai:gpt-4o-mini'] },
    systemPrompt: `${title} secret prompt`,
  })
  expectStatus(changed, 200, 'change the policy')

  const archive = await stack.call(owner.token, 'POST', `/v1/tenants/${tenant.id}/workspaces`, {
    name: `${title} Archive`,
  })
  expectStatus(archive, 201, 'create a second workspace')
  const archiveId = archive.json<{ id: string }>().id
  expectStatus(
    await stack.call(owner.token, 'DELETE', `/v1/workspaces/${archiveId}`),
    200,
    'delete the second workspace',
  )

  const fixture: TenantFixture = {
    tenantId: tenant.id,
    workspaceId: workspace.id,
    deletedWorkspaceId: archiveId,
    owner,
    admin,
    member,
    invitation: {
      id: invitation.invitation.id,
      token: invitation.token,
      email: inviteeEmail,
    },
    secrets: {},
  }
  const gateway = await stack.serviceToken('api-gateway')
  const usage = [usageRecord(fixture, member.id), usageRecord(fixture, owner.id)]
  const appended = await stack.call(gateway, 'POST', '/internal/v1/usage', { records: usage })
  expectStatus(appended, 200, 'append usage')
  const events = [auditEvent(fixture, member.id)]
  const stored = await stack.call(
    await stack.serviceToken('auth-service'),
    'POST',
    '/internal/v1/audit',
    {
      events,
    },
  )
  expectStatus(stored, 200, 'store audit events')

  fixture.secrets = {
    tenantId: tenant.id,
    tenantName: `${title} Holdings`,
    brand: `${title} Brand`,
    workspaceId: workspace.id,
    workspaceName: `${title} Research`,
    deletedWorkspaceId: archiveId,
    deletedWorkspaceName: `${title} Archive`,
    systemPrompt: `${title} secret prompt`,
    invitationId: invitation.invitation.id,
    invitationToken: invitation.token,
    inviteeEmail,
    ...Object.fromEntries(
      (['owner', 'admin', 'member'] as const).flatMap((role) => {
        const user = fixture[role]
        return [
          [`${role}Id`, user.id],
          [`${role}Email`, user.email],
          [`${role}Name`, user.name],
        ]
      }),
    ),
    ...Object.fromEntries(usage.map((record, index) => [`callId${index}`, record.callId])),
    ...Object.fromEntries(events.map((event, index) => [`eventId${index}`, event.eventId])),
  }
  return fixture
}

// ---------------------------------------------------------------------------------------------
// The route table: a request each route accepts, aimed at the target tenant

type ParamName = 'tid' | 'wid' | 'userId' | 'invitationId' | 'token'

const DEFAULT_PARAMS: Record<ParamName, (target: TenantFixture) => string> = {
  tid: (target) => target.tenantId,
  wid: (target) => target.workspaceId,
  userId: (target) => target.member.id,
  invitationId: (target) => target.invitation.id,
  token: (target) => target.invitation.token,
}

type AttackerKind = 'unscoped' | 'scoped-to-own' | 'claims-target'

interface RouteCase {
  /** Path parameters filled with something other than the default resource of the target. */
  params?: Partial<Record<ParamName, (target: TenantFixture) => string>>
  query?: (target: TenantFixture) => Record<string, string>
  /** `self` is the caller: an attacker trying to write itself in, or a newcomer in the control. */
  body?: (target: TenantFixture, self: TestUser) => unknown
  /**
   * A route that names no tenant acts on the caller's own: the status each kind of attacker gets
   * there. Absent: the route names the target, and an outsider must find nothing.
   */
  ownScope?: (kind: AttackerKind) => [number, string | null]
  /** On the target's side the control request is sent by its owner, unless said otherwise. */
  controlCaller?: 'invitee' | 'api-gateway'
}

const ROUTES: Record<string, RouteCase> = {
  'POST /v1/tenants': {
    body: () => ({ name: 'Spare Tenant' }),
    ownScope: () => [201, null],
  },
  'GET /v1/tenants': { ownScope: () => [200, null] },
  'GET /v1/tenants/:tid': {},
  'PATCH /v1/tenants/:tid': {
    body: () => ({
      name: 'Hijacked',
      branding: { displayName: 'Hijacked', accentColor: '#ff0000' },
      limits: { monthlyTokens: 1 },
      allowedEmailDomains: ['attacker.test'],
    }),
  },
  'GET /v1/tenants/:tid/members': { query: () => ({ limit: '100' }) },
  'PATCH /v1/tenants/:tid/members/:userId': { body: () => ({ role: 'admin' }) },
  'GET /v1/tenants/:tid/audit': { query: () => ({ limit: '100' }) },
  'POST /v1/tenants/:tid/workspaces': { body: () => ({ name: 'Annex' }) },
  'GET /v1/workspaces': {
    // The filter names the target tenant; the list is of the caller's own workspaces.
    query: (target) => ({ tenantId: target.tenantId, limit: '100' }),
    ownScope: () => [200, null],
  },
  'POST /v1/workspaces': {
    body: () => ({ name: 'Annex' }),
    // Unscoped, the attacker runs two tenants and must say which; scoped, it creates in its
    // own; with claims naming the target's tenant, that tenant is not there for it.
    ownScope: (kind) =>
      kind === 'unscoped'
        ? [400, 'WSP_VALIDATION']
        : kind === 'scoped-to-own'
          ? [201, null]
          : [404, 'WSP_NOT_FOUND'],
  },
  'GET /v1/workspaces/:wid': {},
  'PATCH /v1/workspaces/:wid': { body: () => ({ name: 'Hijacked' }) },
  'DELETE /v1/workspaces/:wid': {},
  'POST /v1/workspaces/:wid/restore': {
    params: { wid: (target) => target.deletedWorkspaceId },
  },
  'GET /v1/workspaces/:wid/members': { query: () => ({ limit: '100' }) },
  'POST /v1/workspaces/:wid/members': {
    body: (_target, self) => ({ email: self.email, role: 'owner' }),
  },
  'PATCH /v1/workspaces/:wid/members/:userId': { body: () => ({ role: 'admin' }) },
  'DELETE /v1/workspaces/:wid/members/:userId': {},
  'GET /v1/workspaces/:wid/invitations': { query: () => ({ limit: '100' }) },
  'DELETE /v1/workspaces/:wid/invitations/:invitationId': {},
  'GET /v1/workspaces/:wid/policy': {},
  'PUT /v1/workspaces/:wid/policy': { body: () => TAKEOVER_POLICY },
  'GET /v1/workspaces/:wid/policy/versions': { query: () => ({ limit: '100' }) },
  'GET /v1/workspaces/:wid/usage': {
    query: () => ({ groupBy: 'member', from: minutesAgo(60), to: new Date().toISOString() }),
  },
  'GET /v1/workspaces/:wid/quota': {},
  'GET /v1/workspaces/:wid/audit': { query: () => ({ limit: '100' }) },
  'GET /v1/workspaces/:wid/export': {},
  'POST /v1/invitations/:token/accept': { controlCaller: 'invitee' },
  'GET /internal/v1/memberships': {
    query: (target) => ({ userId: target.member.id, workspaceId: target.workspaceId }),
    controlCaller: 'api-gateway',
  },
  'GET /internal/v1/users/:userId/memberships': { controlCaller: 'api-gateway' },
  'GET /internal/v1/workspaces/:wid/effective-policy': { controlCaller: 'api-gateway' },
  'GET /internal/v1/workspaces/:wid/quota': {
    query: (target) => ({ userId: target.member.id }),
    controlCaller: 'api-gateway',
  },
  'POST /internal/v1/usage': {
    body: (target) => ({ records: [usageRecord(target, target.member.id)] }),
    controlCaller: 'api-gateway',
  },
  'POST /internal/v1/audit': {
    body: (target) => ({ events: [auditEvent(target, target.member.id)] }),
    controlCaller: 'api-gateway',
  },
}

interface PreparedRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  url: string
  body: unknown
}

function caseOf(route: string): RouteCase {
  const routeCase = ROUTES[route]
  if (routeCase === undefined) throw new Error(`${route} is not in the route table`)
  return routeCase
}

function prepare(route: string, target: TenantFixture, self: TestUser): PreparedRequest {
  const routeCase = caseOf(route)
  const [method, pattern] = route.split(' ') as [PreparedRequest['method'], string]
  const path = pattern.replace(/:([A-Za-z]+)/g, (_match, name: string) => {
    const fill = routeCase.params?.[name as ParamName] ?? DEFAULT_PARAMS[name as ParamName]
    if (fill === undefined) throw new Error(`${route}: no value for :${name}`)
    return encodeURIComponent(fill(target))
  })
  const query = routeCase.query?.(target)
  return {
    method,
    url: query === undefined ? path : `${path}?${new URLSearchParams(query)}`,
    body: routeCase.body?.(target, self),
  }
}

/** What an outsider gets from a route that names the target tenant. */
function refusalFor(route: string): [number, string] {
  if (route.includes(' /internal/')) return [401, 'WSP_UNAUTHENTICATED']
  if (route === 'POST /v1/invitations/:token/accept') return [404, 'WSP_INVITATION_INVALID']
  return [404, 'WSP_NOT_FOUND']
}

// ---------------------------------------------------------------------------------------------
// What an answer may not hold

/** The secrets in `text`, except those the caller itself sent (an id echoed in a 404). */
function leakedSecrets(text: string, target: TenantFixture, sent: string): string[] {
  return Object.entries(target.secrets)
    .filter(([, value]) => text.includes(value) && !sent.includes(value))
    .map(([name]) => name)
}

/** A stand-in of the same shape for a secret: an id or token that never existed. */
function decoyOf(value: string): string {
  const prefix = /^[a-z]{3,4}[_-]/.exec(value)?.[0] ?? ''
  const random = randomBytes(value.length).toString('base64url').replace(/[-_]/g, 'x')
  return `${prefix}${random}`.slice(0, Math.max(value.length, prefix.length + 8))
}

function replaceAll(text: string, pairs: ReadonlyArray<readonly [string, string]>) {
  let result = text
  // Longer values first, so one that contains another is replaced whole.
  for (const [from, to] of [...pairs].sort(([a], [b]) => b.length - a.length))
    result = result.split(from).join(to)
  return result
}

/** The tenant and workspace a token's claims name, if any: what the caller itself asserted. */
function claimedScope(token: string): string {
  const [, payload] = token.split('.')
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as {
    tid?: string
    wid?: string
  }
  return `${claims.tid ?? ''} ${claims.wid ?? ''}`
}

/** The tenant and workspace ids a forged token claims, which decoys may replace. */
interface ClaimedIds {
  tenantId: string
  workspaceId: string
}

/**
 * Sends the same request with every secret of the target that it carries (in the URL, the body
 * or the token's claims) swapped for an id that never existed, and compares the answers with
 * both mapped to the secrets' names: a refusal that differs would tell the attacker that the
 * target exists.
 */
async function expectSameAsForNothing(
  attacker: Attacker,
  token: string,
  request: PreparedRequest,
  response: LightMyRequestResponse,
  target: TenantFixture,
  label: string,
) {
  const sent = `${request.url} ${JSON.stringify(request.body ?? null)} ${claimedScope(token)}`
  const used = Object.entries(target.secrets).filter(([, value]) => sent.includes(value))
  const decoys = used.map(([name, value]) => [name, value, decoyOf(value)] as const)
  const toDecoy = decoys.map(([, value, decoy]) => [value, decoy] as const)
  const swap = (value: string) => toDecoy.find(([from]) => from === value)?.[1] ?? value
  const decoyToken =
    attacker.kind === 'claims-target'
      ? await attacker.token({
          tenantId: swap(target.tenantId),
          workspaceId: swap(target.workspaceId),
        })
      : token
  const decoyUrl = replaceAll(request.url, toDecoy)
  const decoyBody =
    request.body === undefined
      ? undefined
      : JSON.parse(replaceAll(JSON.stringify(request.body), toDecoy))
  const control = await stack.call(decoyToken, request.method, decoyUrl, decoyBody)
  const named = replaceAll(
    response.body,
    decoys.map(([name, value]) => [value, `<${name}>`] as const),
  )
  const namedControl = replaceAll(
    control.body,
    decoys.map(([name, , decoy]) => [decoy, `<${name}>`] as const),
  )
  expect({ status: control.statusCode, body: namedControl }, label).toEqual({
    status: response.statusCode,
    body: named,
  })
}

// ---------------------------------------------------------------------------------------------
// The tenants

let tenantB: TenantFixture
/** Owner of tenant A (and of a second tenant, A2): the attacker. */
let ownerA: TestUser
let tenantA: { tenantId: string; workspaceId: string }
/** A signed-up user in no tenant at all. */
let outsider: TestUser

beforeAll(async () => {
  stack = await startTestStack({}, { onRoute: collectRoute })
  // The auth-service delivers its own audit events to this service every few seconds; stopped,
  // nothing lands in the snapshots but what the requests under test write.
  await stack.auth.identity.audit.stop()
  tenantB = await populateTenant('bravo', 'Bravo')
  ownerA = await stack.user('alpha-owner')
  tenantA = await stack.tenant(ownerA, 'Alpha')
  await stack.tenant(ownerA, 'Alpha Two')
  outsider = await stack.user('outsider')
})
afterAll(() => stack?.close())

// ---------------------------------------------------------------------------------------------

describe('the route table', () => {
  it('names exactly the routes the app registers, so no new route escapes the attacks below', () => {
    expect(registered.length).toBeGreaterThan(0)
    const missing = registered.filter((route) => ROUTES[route] === undefined)
    const stale = Object.keys(ROUTES).filter((route) => !registered.includes(route))
    expect({ missing, stale }).toEqual({ missing: [], stale: [] })
  })

  it("holds requests each route accepts from the target tenant's own side", async () => {
    for (const route of registered) {
      const target = await populateTenant('ctl', `Control ${randomBytes(3).toString('hex')}`)
      const newcomer = await stack.user('newcomer')
      const request = prepare(route, target, newcomer)
      const routeCase = caseOf(route)
      let token = target.owner.token
      if (routeCase.controlCaller === 'api-gateway') token = await stack.serviceToken('api-gateway')
      if (routeCase.controlCaller === 'invitee') {
        const invitee = await registerWithEmail(target.invitation.email)
        token = invitee.token
      }
      const response = await stack.call(token, request.method, request.url, request.body)
      expect(response.statusCode, `${route}: ${response.body}`).toBeGreaterThanOrEqual(200)
      expect(response.statusCode, `${route}: ${response.body}`).toBeLessThan(300)
    }
  })
})

async function registerWithEmail(email: string): Promise<TestUser> {
  const registered = await stack.auth.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email, password: 'correct horse battery staple', name: 'Invitee' },
  })
  expectStatus(registered, 201, 'register the invitee')
  const { user } = registered.json<{ user: { id: string; email: string; name: string } }>()
  return {
    ...user,
    token: await stack.auth.identity.tokens.accessToken(user.id, randomUUID(), null),
  }
}

interface Attacker {
  name: string
  kind: AttackerKind
  user: () => TestUser
  /** Its token; one that claims a scope claims the ids given (B's unless a decoy's). */
  token: (claimed: ClaimedIds) => Promise<string>
}

/** A token for `user` whose tid, wid and role claims say: owner of that workspace. */
const claimingOwnership = (user: TestUser, claimed: ClaimedIds) =>
  stack.auth.identity.tokens.accessToken(user.id, randomUUID(), { ...claimed, role: 'owner' })

const attackers: Attacker[] = [
  {
    name: "tenant A's owner with an unscoped token",
    kind: 'unscoped',
    user: () => ownerA,
    token: async () => ownerA.token,
  },
  {
    name: "tenant A's owner with a token scoped to A's workspace",
    kind: 'scoped-to-own',
    user: () => ownerA,
    token: () => stack.scopedToken(ownerA, tenantA.workspaceId),
  },
  {
    name: "tenant A's owner with a token whose claims say it owns B's workspace",
    kind: 'claims-target',
    user: () => ownerA,
    token: (claimed) => claimingOwnership(ownerA, claimed),
  },
  {
    name: "a user of no tenant with a token whose claims say it owns B's workspace",
    kind: 'claims-target',
    user: () => outsider,
    token: (claimed) => claimingOwnership(outsider, claimed),
  },
]

describe.each(attackers)('$name', (attacker) => {
  it('gets nothing of tenant B from any registered route, and changes nothing of it', async () => {
    const token = await attacker.token(tenantB)
    const bIds = [tenantB.tenantId, tenantB.workspaceId, tenantB.deletedWorkspaceId]
    for (const route of registered) {
      const request = prepare(route, tenantB, attacker.user())
      const own = caseOf(route).ownScope?.(attacker.kind)
      const label = `${attacker.name}: ${route} (${request.url})`

      const before: StateSnapshot = await snapshotState(stack)
      const response = await stack.call(token, request.method, request.url, request.body)
      const after = await snapshotState(stack)

      const sent = `${request.url} ${JSON.stringify(request.body ?? null)} ${claimedScope(token)}`
      if (own === undefined || own[1] !== null) {
        const [status, code] = own === undefined ? refusalFor(route) : [own[0], own[1] ?? '']
        expectErrorBody(response, status, code, label)
        // A refusal writes nothing at all, anywhere.
        expectUnchanged(before, after, label)
        expect(leakedSecrets(response.body, tenantB, sent), label).toEqual([])
        await expectSameAsForNothing(attacker, token, request, response, tenantB, label)
      } else {
        // The route acted on the attacker's own tenant: B's rows are untouched and none of B
        // comes back, not even what the request named.
        expect(response.statusCode, `${label}: ${response.body}`).toBe(own[0])
        expectUnchangedWithin(before, after, bIds, label)
        expect(leakedSecrets(response.body, tenantB, ''), label).toEqual([])
        if (route === 'GET /v1/workspaces') expect(response.json().items, label).toEqual([])
      }
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Roles come from membership rows, never from the token

describe("a user who is a member in A and a viewer in B (demoted from B's admin)", () => {
  let dual: TestUser
  /** Signed in to B while still its admin: the token's role claim says admin. */
  let staleAdminToken: string
  let tokens: Array<[string, string]>

  beforeAll(async () => {
    dual = await stack.user('dual')
    await stack.addMember(ownerA, tenantA.workspaceId, dual, 'member')
    await stack.addMember(tenantB.owner, tenantB.workspaceId, dual, 'admin')
    staleAdminToken = await stack.scopedToken(dual, tenantB.workspaceId)
    const demoted = await stack.call(
      tenantB.owner.token,
      'PATCH',
      `/v1/workspaces/${tenantB.workspaceId}/members/${dual.id}`,
      { role: 'viewer' },
    )
    expectStatus(demoted, 200, 'demote to viewer')
    tokens = [
      ['unscoped', dual.token],
      ["scoped to A's workspace", await stack.scopedToken(dual, tenantA.workspaceId)],
      ["B's admin token from before the demotion", staleAdminToken],
      [
        "claims saying it owns B's workspace",
        await stack.auth.identity.tokens.accessToken(dual.id, randomUUID(), {
          tenantId: tenantB.tenantId,
          workspaceId: tenantB.workspaceId,
          role: 'owner',
        }),
      ],
    ]
  })

  it("holds a B token whose role claim is still admin, though B's rows say viewer", () => {
    const [, payload] = staleAdminToken.split('.')
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<
      string,
      unknown
    >
    expect(claims).toMatchObject({ wid: tenantB.workspaceId, role: 'admin' })
  })

  it("reads B's workspace, members and policy as a viewer, whichever token it holds", async () => {
    const base = `/v1/workspaces/${tenantB.workspaceId}`
    for (const [name, token] of tokens) {
      const workspace = await stack.call(token, 'GET', base)
      expect(workspace.statusCode, `${name}: ${workspace.body}`).toBe(200)
      expect(workspace.json(), name).toMatchObject({ id: tenantB.workspaceId, role: 'viewer' })
      const members = await stack.call(token, 'GET', `${base}/members`)
      expect(members.statusCode, `${name}: ${members.body}`).toBe(200)
      const policy = await stack.call(token, 'GET', `${base}/policy`)
      expect(policy.statusCode, `${name}: ${policy.body}`).toBe(200)
      expect(policy.json(), name).toMatchObject({ systemPrompt: 'Bravo secret prompt' })
    }
  })

  const writes: Array<
    [string, (fixture: TenantFixture) => [PreparedRequest['method'], string, unknown?]]
  > = [
    ['rename the workspace', (b) => ['PATCH', `/v1/workspaces/${b.workspaceId}`, { name: 'Mine' }]],
    ['delete the workspace', (b) => ['DELETE', `/v1/workspaces/${b.workspaceId}`]],
    [
      'replace the policy',
      (b) => ['PUT', `/v1/workspaces/${b.workspaceId}/policy`, TAKEOVER_POLICY],
    ],
    ['read the policy history', (b) => ['GET', `/v1/workspaces/${b.workspaceId}/policy/versions`]],
    [
      'add a member',
      (b) => [
        'POST',
        `/v1/workspaces/${b.workspaceId}/members`,
        { email: ownerA.email, role: 'admin' },
      ],
    ],
    [
      'promote a member',
      (b) => ['PATCH', `/v1/workspaces/${b.workspaceId}/members/${b.member.id}`, { role: 'admin' }],
    ],
    [
      'promote itself',
      () => [
        'PATCH',
        `/v1/workspaces/${tenantB.workspaceId}/members/${dual.id}`,
        { role: 'owner' },
      ],
    ],
    [
      'remove a member',
      (b) => ['DELETE', `/v1/workspaces/${b.workspaceId}/members/${b.member.id}`],
    ],
    ['list invitations', (b) => ['GET', `/v1/workspaces/${b.workspaceId}/invitations`]],
    [
      'revoke an invitation',
      (b) => ['DELETE', `/v1/workspaces/${b.workspaceId}/invitations/${b.invitation.id}`],
    ],
    ['read the audit log', (b) => ['GET', `/v1/workspaces/${b.workspaceId}/audit`]],
    ['export the workspace', (b) => ['GET', `/v1/workspaces/${b.workspaceId}/export`]],
    ['change the tenant settings', (b) => ['PATCH', `/v1/tenants/${b.tenantId}`, { name: 'Mine' }]],
    [
      'create a workspace in the tenant',
      (b) => ['POST', `/v1/tenants/${b.tenantId}/workspaces`, { name: 'Mine' }],
    ],
  ]

  it.each(writes)(
    'may not %s in B: 403 WSP_FORBIDDEN with every token, nothing written',
    async (what, build) => {
      const [method, url, body] = build(tenantB)
      for (const [name, token] of tokens) {
        const before = await snapshotState(stack)
        const response = await stack.call(token, method, url, body)
        const after = await snapshotState(stack)
        expectErrorBody(response, 403, 'WSP_FORBIDDEN', `${what} (${name})`)
        expectUnchanged(before, after, `${what} (${name})`)
      }
    },
  )
})
