import { randomUUID } from 'node:crypto'
import { testRedisUrl } from '@platform/local-infra/vitest'
import { INTERNAL_AUDIENCE, type WorkspacePolicy } from '@platform/shared-types'
import type { InjectOptions } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  attackerKeyPair,
  expectErrorBody,
  platformClaims,
  signEd25519,
  signHs256,
  signWithRealKey,
  startTcpProxy,
  type TcpProxy,
  tamperPayload,
  unsignedToken,
} from '../helpers/hostile-requests.js'
import {
  bearer,
  PASSWORD,
  startTestStack,
  type TestStack,
  type TestUser,
  uniqueEmail,
} from '../helpers/stack.js'
import { expectUnchanged, snapshotState } from '../helpers/state-snapshot.js'

/*
 * Hostile input against the workspace-service: broken and oversized bodies, operator injection
 * in bodies, query strings and paths, prototype pollution, forged and revoked tokens, and Redis
 * going away. Each attack runs between two snapshots of every collection and every Redis key
 * and must end in the exact API.md §1 error with nothing stored.
 */

let stack: TestStack
/** Redis as the workspace-service sees it: through a hop the last tests cut. */
let redisHop: TcpProxy
let owner: TestUser
let member: TestUser
let tenantId: string
let workspaceId: string
let gatewayToken: string
let authServiceToken: string

beforeAll(async () => {
  redisHop = await startTcpProxy(testRedisUrl())
  stack = await startTestStack({ REDIS_URL: redisHop.url })
  // The auth-service's own audit events would land here every few seconds; stopped, nothing
  // arrives between two snapshots but what the attack wrote.
  await stack.auth.identity.audit.stop()
  owner = await stack.user('owner')
  member = await stack.user('member')
  ;({ tenantId, workspaceId } = await stack.tenant(owner, 'Target'))
  await stack.addMember(owner, workspaceId, member, 'member')
  gatewayToken = await stack.serviceToken('api-gateway')
  authServiceToken = await stack.serviceToken('auth-service')
})
afterAll(async () => {
  await stack?.close()
  await redisHop?.close()
})

const workspacePath = () => `/v1/workspaces/${workspaceId}`

/** Sends one attack between two snapshots; the refusal must be exact and nothing stored. */
async function attack(request: InjectOptions, status: number, code: string) {
  const before = await snapshotState(stack)
  const response = await stack.app.inject(request)
  const body = expectErrorBody(response, status, code, `${request.method} ${request.url}`)
  const after = await snapshotState(stack)
  expectUnchanged(before, after, `${request.method} ${request.url}`)
  return body
}

/** A request authenticated as the tenant's owner, or with the token given. */
function asOwner(
  method: InjectOptions['method'],
  url: string,
  payload?: unknown,
  token = owner.token,
): InjectOptions {
  return {
    method,
    url,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }),
  }
}

/** Whether a 400's details name `field`, by its path or (an unknown key) in the message. */
const detailsNaming = (
  body: { details?: Array<{ path: string; message: string }> | undefined },
  field: string,
) =>
  (body.details ?? []).some(
    (detail) =>
      detail.path === field ||
      detail.path.startsWith(`${field}.`) ||
      detail.message.includes(`"${field.split('.').at(-1)}"`),
  )

function usageRecord(overrides: Record<string, unknown> = {}) {
  const at = Date.now() - 60_000
  return {
    callId: `call-${randomUUID()}`,
    kind: 'model',
    tenantId,
    workspaceId,
    userId: member.id,
    provider: 'oai',
    model: 'gpt-4o-mini',
    inputTokens: 10,
    outputTokens: 5,
    costUsd: 0.0001,
    durationMs: 100,
    startedAt: new Date(at).toISOString(),
    endedAt: new Date(at + 100).toISOString(),
    status: 'completed',
    ...overrides,
  }
}

async function currentPolicy(): Promise<WorkspacePolicy> {
  const response = await stack.call(owner.token, 'GET', `${workspacePath()}/policy`)
  expect(response.statusCode, response.body).toBe(200)
  return response.json<WorkspacePolicy>()
}

// ---------------------------------------------------------------------------------------------
// Bodies

interface BodyRoute {
  name: string
  method: 'POST' | 'PATCH' | 'PUT'
  url: () => string
  token: () => string
  /** A body the route accepts; the attacks start from it. */
  valid: () => Promise<Record<string, unknown>>
  /** What the valid body answers. */
  accepted: number
  /** The route's body limit. */
  bodyLimit: number
}

const V1_BODY_LIMIT = 256 * 1024

const usageRoute: BodyRoute = {
  name: 'POST /internal/v1/usage',
  method: 'POST',
  url: () => '/internal/v1/usage',
  token: () => gatewayToken,
  valid: async () => ({ records: [usageRecord()] }),
  accepted: 200,
  bodyLimit: 2 * 1024 * 1024,
}

const bodyRoutes: BodyRoute[] = [
  {
    name: 'POST /v1/tenants',
    method: 'POST',
    url: () => '/v1/tenants',
    token: () => owner.token,
    valid: async () => ({ name: 'Second Tenant' }),
    accepted: 201,
    bodyLimit: V1_BODY_LIMIT,
  },
  {
    name: 'PATCH /v1/tenants/:tid',
    method: 'PATCH',
    url: () => `/v1/tenants/${tenantId}`,
    token: () => owner.token,
    valid: async () => ({ name: 'Target Renamed', branding: { accentColor: '#1a73e8' } }),
    accepted: 200,
    bodyLimit: V1_BODY_LIMIT,
  },
  {
    name: 'PATCH /v1/workspaces/:wid',
    method: 'PATCH',
    url: workspacePath,
    token: () => owner.token,
    valid: async () => ({ name: 'Renamed Workspace' }),
    accepted: 200,
    bodyLimit: V1_BODY_LIMIT,
  },
  {
    name: 'PUT /v1/workspaces/:wid/policy',
    method: 'PUT',
    url: () => `${workspacePath()}/policy`,
    token: () => owner.token,
    valid: async () => ({ ...(await currentPolicy()), systemPrompt: 'Be brief.' }),
    accepted: 200,
    bodyLimit: V1_BODY_LIMIT,
  },
  {
    name: 'POST /v1/workspaces/:wid/members',
    method: 'POST',
    url: () => `${workspacePath()}/members`,
    token: () => owner.token,
    valid: async () => ({ email: uniqueEmail('invitee'), role: 'member' }),
    accepted: 202,
    bodyLimit: V1_BODY_LIMIT,
  },
  usageRoute,
]

const JSON_TYPE = 'application/json'
const VALIDATION: [number, string] = [400, 'WSP_VALIDATION']
const UNSUPPORTED: [number, string] = [415, 'WSP_UNSUPPORTED_MEDIA_TYPE']

interface RawAttack {
  name: string
  payload: string
  contentType?: string
  expected?: [number, string]
}

const rawAttacks: RawAttack[] = [
  { name: 'truncated JSON', payload: '{"name":"Acme","time', contentType: JSON_TYPE },
  { name: 'trailing garbage after the object', payload: '{"name":"x"} x', contentType: JSON_TYPE },
  { name: 'two concatenated objects', payload: '{"name":"x"}{"name":"y"}', contentType: JSON_TYPE },
  { name: 'single-quoted pseudo-JSON', payload: "{'name':'x'}", contentType: JSON_TYPE },
  { name: 'a JSON array instead of an object', payload: '[{"name":"x"}]', contentType: JSON_TYPE },
  { name: 'a JSON string instead of an object', payload: '"x"', contentType: JSON_TYPE },
  { name: 'JSON null', payload: 'null', contentType: JSON_TYPE },
  { name: 'an empty body labelled JSON', payload: '', contentType: JSON_TYPE },
  {
    name: '__proto__ pollution payload',
    payload: '{"__proto__":{"polluted":"yes","isAdmin":true},"name":"x"}',
    contentType: JSON_TYPE,
  },
  {
    name: 'constructor.prototype pollution payload',
    payload: '{"constructor":{"prototype":{"polluted":"yes"}},"name":"x"}',
    contentType: JSON_TYPE,
  },
  {
    name: '__proto__ pollution one level down',
    payload: '{"name":"x","branding":{"__proto__":{"polluted":"yes"}}}',
    contentType: JSON_TYPE,
  },
  { name: 'text/plain carrying JSON', payload: '{"name":"x"}', contentType: 'text/plain' },
  {
    name: 'form-urlencoded',
    payload: 'name=x&role=owner',
    contentType: 'application/x-www-form-urlencoded',
    expected: UNSUPPORTED,
  },
  {
    name: 'XML',
    payload: '<tenant><name>x</name></tenant>',
    contentType: 'application/xml',
    expected: UNSUPPORTED,
  },
  { name: 'a body without a content-type', payload: '{"name":"x"}', expected: UNSUPPORTED },
  {
    name: 'deeply nested arrays (10 000 levels)',
    payload: `{"name":${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
    contentType: JSON_TYPE,
  },
]

const rawRequest = (route: BodyRoute, payload: string, contentType?: string): InjectOptions => ({
  method: route.method,
  url: route.url(),
  headers: {
    ...bearer(route.token()),
    ...(contentType === undefined ? {} : { 'content-type': contentType }),
  },
  payload,
})

describe.each(bodyRoutes)('bodies on $name', (route) => {
  it('accepts its valid body (the control every attack below starts from)', async () => {
    const response = await stack.app.inject(
      rawRequest(route, JSON.stringify(await route.valid()), JSON_TYPE),
    )
    expect(response.statusCode, response.body).toBe(route.accepted)
  })

  it.each(rawAttacks)('$name → the exact 4xx, nothing stored, nothing polluted', async (raw) => {
    const [status, code] = raw.expected ?? VALIDATION
    await attack(rawRequest(route, raw.payload, raw.contentType), status, code)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined()
  })

  it('an unknown extra field → 400 WSP_VALIDATION naming it', async () => {
    const body = await attack(
      rawRequest(route, JSON.stringify({ ...(await route.valid()), isAdmin: true }), JSON_TYPE),
      ...VALIDATION,
    )
    expect(
      (body.details ?? []).some((detail) => `${detail.path} ${detail.message}`.includes('isAdmin')),
      JSON.stringify(body.details),
    ).toBe(true)
  })

  it(`a body past the route's limit (${route.bodyLimit / 1024} KiB) → 413 WSP_PAYLOAD_TOO_LARGE`, async () => {
    const padded = { ...(await route.valid()), padding: 'x'.repeat(route.bodyLimit + 1024) }
    await attack(rawRequest(route, JSON.stringify(padded), JSON_TYPE), 413, 'WSP_PAYLOAD_TOO_LARGE')
  })
})

// ---------------------------------------------------------------------------------------------
// Operator injection in JSON bodies

interface FieldAttack {
  name: string
  method: 'POST' | 'PATCH' | 'PUT'
  url: () => string
  token?: () => string
  body: () => Promise<unknown> | unknown
  /** The field the 400's details must name. */
  names: string
}

const fieldAttacks: FieldAttack[] = [
  {
    name: 'POST members: the email as {"$gt": ""}',
    method: 'POST',
    url: () => `${workspacePath()}/members`,
    body: () => ({ email: { $gt: '' }, role: 'member' }),
    names: 'email',
  },
  {
    name: 'POST members: the role as {"$ne": null}',
    method: 'POST',
    url: () => `${workspacePath()}/members`,
    body: () => ({ email: 'someone@example.com', role: { $ne: null } }),
    names: 'role',
  },
  {
    name: 'PATCH tenant: the name as {"$ne": null}',
    method: 'PATCH',
    url: () => `/v1/tenants/${tenantId}`,
    body: () => ({ name: { $ne: null } }),
    names: 'name',
  },
  {
    name: 'PATCH tenant: the domains as {"$gt": ""}',
    method: 'PATCH',
    url: () => `/v1/tenants/${tenantId}`,
    body: () => ({ allowedEmailDomains: { $gt: '' } }),
    names: 'allowedEmailDomains',
  },
  {
    name: 'PATCH tenant: a $set operator as the whole update',
    method: 'PATCH',
    url: () => `/v1/tenants/${tenantId}`,
    body: () => ({ $set: { ownerCount: 0 } }),
    names: '$set',
  },
  {
    name: 'PATCH workspace: the name as {"$ne": null}',
    method: 'PATCH',
    url: workspacePath,
    body: () => ({ name: { $ne: null } }),
    names: 'name',
  },
  {
    name: 'PATCH member: the role as {"$in": ["owner"]}',
    method: 'PATCH',
    url: () => `${workspacePath()}/members/${member.id}`,
    body: () => ({ role: { $in: ['owner'] } }),
    names: 'role',
  },
  {
    name: 'PUT policy: the allowlist as {"$ne": null}',
    method: 'PUT',
    url: () => `${workspacePath()}/policy`,
    body: async () => ({ ...(await currentPolicy()), models: { allow: { $ne: null } } }),
    names: 'models',
  },
  {
    name: 'POST tenants: the name as {"$gt": ""}',
    method: 'POST',
    url: () => '/v1/tenants',
    body: () => ({ name: { $gt: '' } }),
    names: 'name',
  },
  {
    name: 'POST usage: a record tenantId as {"$ne": null}',
    method: 'POST',
    url: () => '/internal/v1/usage',
    token: () => gatewayToken,
    body: () => ({ records: [usageRecord({ tenantId: { $ne: null } })] }),
    names: 'records.0.tenantId',
  },
  {
    name: 'POST audit: an event workspaceId as {"$ne": null}',
    method: 'POST',
    url: () => '/internal/v1/audit',
    token: () => authServiceToken,
    body: () => ({
      events: [
        {
          eventId: randomUUID(),
          at: new Date().toISOString(),
          action: 'auth.login.succeeded',
          actor: { type: 'user', id: member.id },
          target: { type: 'session', id: null },
          tenantId,
          workspaceId: { $ne: null },
          ip: null,
          userAgent: null,
          before: null,
          after: null,
        },
      ],
    }),
    names: 'events.0.workspaceId',
  },
]

describe('operator injection in JSON bodies', () => {
  it.each(fieldAttacks)('$name → 400 WSP_VALIDATION naming the field', async (field) => {
    const body = await attack(
      asOwner(field.method, field.url(), await field.body(), field.token?.() ?? owner.token),
      ...VALIDATION,
    )
    expect(detailsNaming(body, field.names), JSON.stringify(body.details)).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// Query strings

const forgedCursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

interface QueryAttack {
  name: string
  url: () => string
  token?: () => string
  /** The query parameter the 400's details must name, where the schema refuses it. */
  names?: string
}

const queryAttacks: QueryAttack[] = [
  { name: 'cursor[$gt]= on members', url: () => `${workspacePath()}/members?cursor[$gt]=` },
  { name: 'limit=1e9', url: () => `${workspacePath()}/members?limit=1e9`, names: 'limit' },
  { name: 'limit=-1', url: () => `${workspacePath()}/members?limit=-1`, names: 'limit' },
  { name: 'limit=0', url: () => `${workspacePath()}/members?limit=0`, names: 'limit' },
  { name: 'limit=abc', url: () => `${workspacePath()}/members?limit=abc`, names: 'limit' },
  { name: 'limit=2.5', url: () => `${workspacePath()}/audit?limit=2.5`, names: 'limit' },
  { name: 'limit given twice', url: () => `${workspacePath()}/members?limit=10&limit=20` },
  { name: 'limit[$gt]=0', url: () => `${workspacePath()}/members?limit[$gt]=0` },
  { name: 'groupBy=year', url: () => `${workspacePath()}/usage?groupBy=year`, names: 'groupBy' },
  { name: 'from[$gt]= on usage', url: () => `${workspacePath()}/usage?from[$gt]=2020-01-01` },
  {
    name: 'from as a JavaScript expression',
    url: () => `${workspacePath()}/usage?from=${encodeURIComponent('new Date(0)')}`,
    names: 'from',
  },
  { name: 'tenantId[$ne]=x on the workspace list', url: () => '/v1/workspaces?tenantId[$ne]=x' },
  {
    name: 'a 65-character tenantId on the workspace list',
    url: () => `/v1/workspaces?tenantId=${'t'.repeat(65)}`,
    names: 'tenantId',
  },
  {
    name: 'a cursor whose position holds an operator',
    url: () => `${workspacePath()}/members?cursor=${forgedCursor([0, { $gt: '' }])}`,
  },
  {
    name: 'a cursor that is an operator object',
    url: () => `${workspacePath()}/audit?cursor=${forgedCursor({ $gt: '' })}`,
  },
  {
    name: 'a cursor that is not base64url JSON',
    url: () => `${workspacePath()}/policy/versions?cursor=${encodeURIComponent('%%%{')}`,
  },
  {
    name: 'a 513-character cursor',
    url: () => `${workspacePath()}/members?cursor=${'c'.repeat(513)}`,
    names: 'cursor',
  },
  {
    name: 'userId[$ne]= on the internal membership lookup',
    url: () => `/internal/v1/memberships?userId[$ne]=x&workspaceId=${workspaceId}`,
    token: () => gatewayToken,
  },
  {
    name: 'workspaceId[$regex]= on the internal membership lookup',
    url: () => `/internal/v1/memberships?userId=${member.id}&workspaceId[$regex]=.*`,
    token: () => gatewayToken,
  },
]

describe('query strings', () => {
  it('pages through members with limit and the cursor it gave out (the control)', async () => {
    const first = await stack.call(owner.token, 'GET', `${workspacePath()}/members?limit=1`)
    expect(first.statusCode, first.body).toBe(200)
    const page = first.json<{ items: Array<{ userId: string }>; nextCursor: string | null }>()
    expect(page.items).toHaveLength(1)
    expect(page.nextCursor).toEqual(expect.any(String))
    const next = await stack.call(
      owner.token,
      'GET',
      `${workspacePath()}/members?limit=1&cursor=${page.nextCursor}`,
    )
    expect(next.statusCode, next.body).toBe(200)
    expect(next.json<{ items: Array<{ userId: string }> }>().items[0]?.userId).not.toBe(
      page.items[0]?.userId,
    )
  })

  it.each(queryAttacks)('$name → 400 WSP_VALIDATION, nothing stored', async (query) => {
    const body = await attack(
      asOwner('GET', query.url(), undefined, query.token?.() ?? owner.token),
      ...VALIDATION,
    )
    if (query.names !== undefined)
      expect(detailsNaming(body, `querystring.${query.names}`), JSON.stringify(body.details)).toBe(
        true,
      )
  })
})

// ---------------------------------------------------------------------------------------------
// Path parameters

interface PathAttack {
  name: string
  method: InjectOptions['method']
  url: () => string
  payload?: unknown
  token?: () => string
  expected: [number, string]
}

const operatorJson = encodeURIComponent('{"$ne":null}')

const pathAttacks: PathAttack[] = [
  {
    name: 'a workspace id of $ne',
    method: 'GET',
    url: () => '/v1/workspaces/$ne',
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'a workspace id that is an operator object in JSON',
    method: 'GET',
    url: () => `/v1/workspaces/${operatorJson}/policy`,
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'a tenant id of $where',
    method: 'PATCH',
    url: () => '/v1/tenants/$where',
    payload: { name: 'x' },
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'a member id of $gt on a role change',
    method: 'PATCH',
    url: () => `${workspacePath()}/members/%24gt`,
    payload: { role: 'viewer' },
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'a member id of $ne on a removal',
    method: 'DELETE',
    url: () => `${workspacePath()}/members/$ne`,
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'an invitation id of $ne on a revocation',
    method: 'DELETE',
    url: () => `${workspacePath()}/invitations/$ne`,
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'an invitation token that is an operator object in JSON',
    method: 'POST',
    url: () => `/v1/invitations/${operatorJson}/accept`,
    expected: [404, 'WSP_INVITATION_INVALID'],
  },
  {
    name: 'a workspace id of $ne on the internal effective policy',
    method: 'GET',
    url: () => '/internal/v1/workspaces/$ne/effective-policy',
    token: () => gatewayToken,
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'a 64-character workspace id (the longest allowed) that does not exist',
    method: 'GET',
    url: () => `/v1/workspaces/${'w'.repeat(64)}`,
    expected: [404, 'WSP_NOT_FOUND'],
  },
  {
    name: 'a 65-character workspace id',
    method: 'GET',
    url: () => `/v1/workspaces/${'w'.repeat(65)}`,
    expected: [400, 'WSP_VALIDATION'],
  },
  {
    name: 'a 65-character member id',
    method: 'DELETE',
    url: () => `${workspacePath()}/members/${'u'.repeat(65)}`,
    expected: [400, 'WSP_VALIDATION'],
  },
  {
    name: 'a 101-character invitation token (past the router’s 100-character parameter limit)',
    method: 'POST',
    url: () => `/v1/invitations/${'t'.repeat(101)}/accept`,
    expected: [414, 'WSP_REQUEST_ERROR'],
  },
  {
    name: 'a 10 000-character workspace id',
    method: 'GET',
    url: () => `/v1/workspaces/${'w'.repeat(10_000)}`,
    expected: [414, 'WSP_REQUEST_ERROR'],
  },
  {
    name: 'a malformed percent-encoding in the workspace id',
    method: 'GET',
    url: () => '/v1/workspaces/%E0%A4%A',
    expected: [400, 'WSP_BAD_REQUEST'],
  },
  {
    name: 'a NUL byte in the workspace id',
    method: 'GET',
    url: () => `/v1/workspaces/${workspaceId}%00`,
    expected: [404, 'WSP_NOT_FOUND'],
  },
]

describe('path parameters', () => {
  it('answers an unknown user on the internal membership list with an empty list', async () => {
    const response = await stack.call(gatewayToken, 'GET', '/internal/v1/users/$ne/memberships')
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json()).toEqual({ items: [], lastUsedWorkspaceId: null })
  })

  it.each(pathAttacks)('$name → the exact refusal, nothing stored', async (path) => {
    const body = await attack(
      asOwner(path.method, path.url(), path.payload, path.token?.() ?? owner.token),
      ...path.expected,
    )
    // A refusal may name the id it was given, not echo a path of any length.
    expect(body.message.length).toBeLessThan(200)
  })
})

// ---------------------------------------------------------------------------------------------
// Tokens

interface TokenAttack {
  name: string
  /** The Authorization header, or none. */
  authorization: () => Promise<string | undefined>
  /** On `GET /v1/workspaces/:wid`. */
  user: [number, string]
  /** On `GET /internal/v1/workspaces/:wid/effective-policy`. */
  internal: [number, string]
  /** Why the user route refuses it, where the message says. */
  message?: RegExp
}

const UNAUTHENTICATED: [number, string] = [401, 'WSP_UNAUTHENTICATED']
const hourAgo = () => Math.floor(Date.now() / 1000) - 3600
let attackerKeys: Awaited<ReturnType<typeof attackerKeyPair>>
let revokedToken: string

beforeAll(async () => {
  attackerKeys = await attackerKeyPair()
  // A real session, signed out through the auth-service: its access token stays well-formed.
  const login = await stack.auth.inject({
    method: 'POST',
    url: '/auth/v1/login',
    payload: { email: owner.email, password: PASSWORD, workspaceId },
  })
  expect(login.statusCode, login.body).toBe(200)
  revokedToken = login.json<{ accessToken: string }>().accessToken
  const logout = await stack.auth.inject({
    method: 'POST',
    url: '/auth/v1/logout',
    headers: bearer(revokedToken),
  })
  expect(logout.statusCode, logout.body).toBe(204)
})

const bearerOf = async (token: Promise<string> | string) => `Bearer ${await token}`

const tokenAttacks: TokenAttack[] = [
  {
    name: 'no Authorization header',
    authorization: async () => undefined,
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
    message: /bearer token is required/,
  },
  {
    name: "'Bearer x'",
    authorization: async () => 'Bearer x',
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'an empty bearer',
    authorization: async () => 'Bearer ',
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'Basic credentials',
    authorization: async () =>
      `Basic ${Buffer.from(`${owner.email}:${PASSWORD}`).toString('base64')}`,
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'alg none with the owner’s claims',
    authorization: () =>
      bearerOf(unsignedToken({ alg: 'none', typ: 'JWT' }, platformClaims(owner.id))),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'signed by an attacker’s Ed25519 key under a made-up kid',
    authorization: () =>
      bearerOf(
        signEd25519(
          { alg: 'EdDSA', kid: randomUUID(), typ: 'JWT' },
          platformClaims(owner.id),
          attackerKeys.privateKey,
        ),
      ),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'signed by an attacker’s Ed25519 key under the real kid',
    authorization: async () => {
      const { kid } = await stack.auth.identity.keys.current()
      return bearerOf(
        signEd25519(
          { alg: 'EdDSA', kid, typ: 'JWT' },
          platformClaims(owner.id),
          attackerKeys.privateKey,
        ),
      )
    },
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
    message: /signature is invalid/,
  },
  {
    name: 'expired, signed by an attacker’s Ed25519 key',
    authorization: () =>
      bearerOf(
        signEd25519(
          { alg: 'EdDSA', kid: randomUUID(), typ: 'JWT' },
          platformClaims(owner.id, { iat: hourAgo(), exp: hourAgo() + 600 }),
          attackerKeys.privateKey,
        ),
      ),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'expired, signed by the real key',
    authorization: () =>
      bearerOf(
        signWithRealKey(stack, platformClaims(owner.id, { iat: hourAgo(), exp: hourAgo() + 600 })),
      ),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
    message: /expired/,
  },
  {
    name: 'another issuer, signed by the real key',
    authorization: () =>
      bearerOf(signWithRealKey(stack, platformClaims(owner.id, { iss: 'https://evil.test' }))),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
    message: /not issued for this use/,
  },
  {
    name: 'a real token with its subject edited (signature kept)',
    authorization: () =>
      bearerOf(
        tamperPayload(owner.token, (claims) => {
          claims.sub = member.id
        }),
      ),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'HS256 keyed with the published public key',
    authorization: async () => {
      const jwks = await stack.auth.inject({ method: 'GET', url: '/.well-known/jwks.json' })
      const [key] = jwks.json<{ keys: Array<{ kid: string; x: string }> }>().keys
      if (key === undefined) throw new Error('no published key')
      return bearerOf(
        signHs256(
          { alg: 'HS256', kid: key.kid, typ: 'JWT' },
          platformClaims(owner.id),
          Buffer.from(key.x, 'base64url'),
        ),
      )
    },
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'a service token (audience internal) on a user route',
    authorization: () => bearerOf(gatewayToken),
    user: UNAUTHENTICATED,
    internal: [200, ''],
  },
  {
    name: 'a user token (audience platform) on an internal route',
    authorization: () => bearerOf(owner.token),
    user: [200, ''],
    internal: UNAUTHENTICATED,
  },
  {
    name: 'a user token re-labelled with the internal audience (signature kept)',
    authorization: () =>
      bearerOf(
        tamperPayload(owner.token, (claims) => {
          claims.aud = INTERNAL_AUDIENCE
        }),
      ),
    user: UNAUTHENTICATED,
    internal: UNAUTHENTICATED,
  },
  {
    name: 'a revoked session’s access token',
    authorization: () => bearerOf(revokedToken),
    user: [401, 'WSP_SESSION_REVOKED'],
    internal: UNAUTHENTICATED,
  },
  {
    name: 'a service token of a service the internal route does not serve',
    authorization: () => bearerOf(stack.serviceToken('workspace-service')),
    user: UNAUTHENTICATED,
    internal: [403, 'WSP_FORBIDDEN'],
  },
  {
    name: 'a real-key token with valid claims (the control)',
    authorization: () => bearerOf(signWithRealKey(stack, platformClaims(owner.id))),
    user: [200, ''],
    internal: UNAUTHENTICATED,
  },
]

function tokenRequest(url: string, authorization: string | undefined): InjectOptions {
  return {
    method: 'GET',
    url,
    headers: authorization === undefined ? {} : { authorization },
  }
}

describe.each(tokenAttacks)('a token: $name', (forged) => {
  it(`on a user route → ${forged.user.join(' ')}`, async () => {
    const request = tokenRequest(workspacePath(), await forged.authorization())
    const [status, code] = forged.user
    if (status === 200) {
      const response = await stack.app.inject(request)
      expect(response.statusCode, response.body).toBe(200)
      expect(response.json()).toMatchObject({ id: workspaceId })
      return
    }
    const body = await attack(request, status, code)
    if (forged.message !== undefined) expect(body.message).toMatch(forged.message)
  })

  it(`on an internal route → ${forged.internal.join(' ')}`, async () => {
    const request = tokenRequest(
      `/internal/v1/workspaces/${workspaceId}/effective-policy`,
      await forged.authorization(),
    )
    const [status, code] = forged.internal
    if (status === 200) {
      const response = await stack.app.inject(request)
      expect(response.statusCode, response.body).toBe(200)
      expect(response.json()).toMatchObject({ workspaceId, tenantId })
      return
    }
    await attack(request, status, code)
  })
})

// ---------------------------------------------------------------------------------------------
// A usage batch past the default body limit (last before the outage: a thousand ledger rows
// make every later snapshot slower)

describe('the usage batch limit', () => {
  it('takes a batch past the 256 KiB default but under its own 2 MiB limit', async () => {
    const records = Array.from({ length: 1000 }, () =>
      usageRecord({ model: `gpt-4o-mini-${'m'.repeat(150)}` }),
    )
    const payload = JSON.stringify({ records })
    expect(payload.length).toBeGreaterThan(256 * 1024)
    expect(payload.length).toBeLessThan(2 * 1024 * 1024)
    const before = await stack.app.tenancy.models.Ledger.countDocuments({ workspaceId })
    const response = await stack.app.inject(rawRequest(usageRoute, payload, JSON_TYPE))
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json()).toEqual({ appended: 1000, duplicates: 0 })
    expect(await stack.app.tenancy.models.Ledger.countDocuments({ workspaceId })).toBe(
      before + 1000,
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Redis going away under the running service

async function untilRedisAnswers() {
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      await stack.app.redis.ping()
      return
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

describe('with Redis unreachable', () => {
  it('refuses user routes with 503 WSP_DEPENDENCY_UNAVAILABLE (the revocation check fails closed), writes nothing, and recovers', async () => {
    const before = await snapshotState(stack)
    await redisHop.cut()
    try {
      const read = await stack.call(owner.token, 'GET', workspacePath())
      const body = expectErrorBody(read, 503, 'WSP_DEPENDENCY_UNAVAILABLE', 'read')
      expect(body.message).toMatch(/session store/)
      const write = await stack.call(owner.token, 'PATCH', workspacePath(), {
        name: 'During outage',
      })
      expectErrorBody(write, 503, 'WSP_DEPENDENCY_UNAVAILABLE', 'write')
      const create = await stack.call(owner.token, 'POST', '/v1/tenants', { name: 'During outage' })
      expectErrorBody(create, 503, 'WSP_DEPENDENCY_UNAVAILABLE', 'create')

      const ready = await stack.app.inject({ method: 'GET', url: '/readyz' })
      expect(ready.statusCode, ready.body).toBe(503)
      expect(ready.json()).toMatchObject({ code: 'WSP_NOT_READY', checks: { redis: 'failing' } })
      expect(ready.body).not.toMatch(/ECONNREFUSED|ECONNRESET|MaxRetriesPerRequest|\n\s+at /)

      // Service tokens are not checked against the revocation list: the gateway keeps its policy.
      const policy = await stack.call(
        gatewayToken,
        'GET',
        `/internal/v1/workspaces/${workspaceId}/effective-policy`,
      )
      expect(policy.statusCode, policy.body).toBe(200)
    } finally {
      await redisHop.restore()
    }
    await untilRedisAnswers()
    const after = await snapshotState(stack)
    expectUnchanged(before, after, 'during the outage')
    const recovered = await stack.call(owner.token, 'GET', workspacePath())
    expect(recovered.statusCode, recovered.body).toBe(200)
  })
})
