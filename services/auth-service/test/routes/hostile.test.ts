import {
  createHash,
  createHmac,
  KeyObject,
  randomBytes,
  randomUUID,
  sign as signBytes,
} from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import {
  ErrorResponseSchema,
  INTERNAL_AUDIENCE,
  PLATFORM_AUDIENCE,
  REFRESH_COOKIE_NAME,
  type TokenPairResponse,
  TokenPairResponseSchema,
} from '@platform/shared-types'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { type CryptoKey, decodeJwt, exportJWK, generateKeyPair, type JWK } from 'jose'
import { Secret, TOTP } from 'otpauth'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { startTestAuth, TEST_PUBLIC_URL, TEST_SECRETS, type TestAuth } from '../helpers/build.js'
import {
  type ExpectedChanges,
  expectOnlyChanged,
  expectUnchanged,
  snapshotState,
} from '../helpers/state-snapshot.js'
import { startWorkspaceDouble, type WorkspaceDouble } from '../helpers/workspace-double.js'

/*
 * Hostile requests against every auth-service route except OAuth (tested with the OAuth routes).
 * Each test snapshots the app's MongoDB collections and Redis keys, performs one attack, checks
 * the exact 4xx in the API.md §1 error shape, and proves that nothing was stored, or exactly the
 * write the attack's defined consequence is (a failed sign-in is counted and audited, a replayed
 * refresh token ends its session).
 */

// ---------------------------------------------------------------------------------------------
// Error bodies

const StrictErrorSchema = z.strictObject(ErrorResponseSchema.shape)
// What a body must never carry: driver or library text, stack frames, source paths.
const INTERNALS =
  /Mongo|E11000|BSON|Cast to|ioredis|ReplyError|ECONNREFUSED|node_modules|\.ts:\d+|\n\s+at |\bat \S+ \(/

function expectErrorBody(response: LightMyRequestResponse, status: number, code: string) {
  expect(response.statusCode, response.body).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/json/)
  const body = StrictErrorSchema.parse(response.json())
  expect(body.statusCode).toBe(status)
  expect(body.code).toMatch(/^AUTH_[A-Z0-9_]+$/)
  expect(body.code, body.message).toBe(code)
  expect(body.error).toBe(STATUS_CODES[status])
  for (const text of [body.message, ...(body.details ?? []).map((detail) => detail.message)])
    expect(text).not.toMatch(INTERNALS)
  expect(response.body).not.toMatch(/"stack"/)
  return body
}

// ---------------------------------------------------------------------------------------------
// Tokens, crafted by hand so any header and any claim can be tried

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSeconds = () => Math.floor(Date.now() / 1000)

/** A compact JWS with exactly the header and payload given, signed with an Ed25519 key. */
function signEd25519(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key: CryptoKey,
): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  const signature = signBytes(null, Buffer.from(input), KeyObject.from(key))
  return `${input}.${signature.toString('base64url')}`
}

function signHs256(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  secret: Buffer,
) {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

const unsignedToken = (header: Record<string, unknown>, payload: Record<string, unknown>) =>
  `${b64url(header)}.${b64url(payload)}.`

/** A real token with its payload edited and its signature kept. */
function tamperPayload(token: string, edit: (claims: Record<string, unknown>) => void) {
  const [header, , signature] = token.split('.')
  const claims: Record<string, unknown> = { ...decodeJwt(token) }
  edit(claims)
  return `${header}.${b64url(claims)}.${signature}`
}

function tamperHeader(token: string, edit: (header: Record<string, unknown>) => void) {
  const [header, payload, signature] = token.split('.')
  const parsed = JSON.parse(Buffer.from(header ?? '', 'base64url').toString()) as Record<
    string,
    unknown
  >
  edit(parsed)
  return `${b64url(parsed)}.${payload}.${signature}`
}

// ---------------------------------------------------------------------------------------------
// The app, its users and the workspace-service stand-in

interface SignedInUser {
  id: string
  email: string
  password: string
  pair: TokenPairResponse
  sid: string
}

let auth: TestAuth
let graceAuth: TestAuth
let workspaces: WorkspaceDouble
/** The account the attacks aim at: a `member` of `ws-victim`. */
let victim: SignedInUser
/** A second account, owner of `ws-other`: "another user" in the cross-user attacks. */
let other: SignedInUser
/** An account whose session has been signed out: its access token is real but revoked. */
let revoked: SignedInUser
let attackerKey: { publicKey: CryptoKey; privateKey: CryptoKey }
let attackerJwk: JWK
let realJwk: JWK
let workspaceServiceToken: string
let authServiceToken: string

async function register(app: TestAuth, email: string, password: string) {
  const response = await app.app.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email, password, name: email.split('@')[0] },
  })
  expect(response.statusCode, response.body).toBe(201)
  return response.json<{ user: { id: string } }>().user.id
}

async function login(app: TestAuth, email: string, password: string): Promise<TokenPairResponse> {
  const response = await app.app.inject({
    method: 'POST',
    url: '/auth/v1/login',
    payload: { email, password },
  })
  expect(response.statusCode, response.body).toBe(200)
  return TokenPairResponseSchema.parse(response.json())
}

async function signUp(app: TestAuth, email: string, password = 'correct horse battery') {
  const id = await register(app, email, password)
  return signInAgain(app, { id, email, password })
}

/** A new session for an existing account. */
async function signInAgain(
  app: TestAuth,
  user: Pick<SignedInUser, 'id' | 'email' | 'password'>,
): Promise<SignedInUser> {
  const pair = await login(app, user.email, user.password)
  const sid = decodeJwt(pair.accessToken).sid
  if (typeof sid !== 'string') throw new Error('access token without sid')
  return { ...user, pair, sid }
}

async function serviceToken(service: string, secret: string) {
  const response = await auth.app.inject({
    method: 'POST',
    url: '/internal/v1/service-token',
    payload: { service, secret },
  })
  expect(response.statusCode, response.body).toBe(200)
  return response.json<{ token: string }>().token
}

/** Claims the auth-service itself would put in the victim's access token. */
function victimClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = nowSeconds()
  return {
    iss: auth.app.identity.issuer,
    aud: PLATFORM_AUDIENCE,
    sub: victim.id,
    sid: victim.sid,
    tid: 'tenant-of-ws-victim',
    wid: 'ws-victim',
    role: 'member',
    jti: randomUUID(),
    iat,
    exp: iat + 600,
    ...overrides,
  }
}

/**
 * Signs with the app's REAL current signing key. No attacker has it; the tests use it to show
 * that the claim checks hold on their own, even behind a valid signature.
 */
async function signWithRealKey(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
) {
  const key = await auth.app.identity.keys.current()
  return signEd25519({ alg: 'EdDSA', kid: key.kid, typ: 'JWT', ...header }, claims, key.privateKey)
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** Performs an attack between two snapshots and checks the refusal and the state. */
async function attack(
  target: TestAuth,
  request: InjectOptions,
  status: number,
  code: string,
  changes: ExpectedChanges = {},
) {
  const before = await snapshotState(target)
  const response = await target.app.inject(request)
  const body = expectErrorBody(response, status, code)
  const after = await snapshotState(target)
  expectOnlyChanged(before, after, changes)
  return body
}

/** The defined consequence of a failed sign-in: the limiter counts it and the audit log has it. */
const FAILED_LOGIN: ExpectedChanges = {
  counts: { audit_outbox: 1 },
  redisAdded: [/^auth:login-failures:account:/],
  redisWritten: [/^auth:login-failures:ip:/],
}
/**
 * The same where the account counter may already exist and go up: an account that failed before,
 * or a refused spelling whose trimmed form is an existing address (it counts against that one).
 */
const FAILED_LOGIN_COUNTED: ExpectedChanges = {
  counts: { audit_outbox: 1 },
  redisWritten: [/^auth:login-failures:account:/, /^auth:login-failures:ip:/],
}
/** A wrong MFA code counts against the sign-in limits (first failure of the account, then later ones). */
const FIRST_MFA_FAILURE: ExpectedChanges = {
  redisAdded: [/^auth:login-failures:account:/],
  redisWritten: [/^auth:login-failures:ip:/],
}
const MFA_FAILURE_COUNTED: ExpectedChanges = {
  redisWritten: [/^auth:login-failures:account:/, /^auth:login-failures:ip:/],
}

beforeAll(async () => {
  workspaces = await startWorkspaceDouble({
    issuer: TEST_PUBLIC_URL,
    jwks: async () =>
      (await auth.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json(),
  })
  auth = await startTestAuth({
    WORKSPACE_SERVICE_URL: workspaces.url,
    // Dozens of failed sign-ins come from the one test address; the per-IP limit has its own tests.
    LOGIN_MAX_FAILURES_PER_IP: '1000',
  })
  // Audit events stay in the outbox for this file, so every snapshot sees each one.
  await auth.app.identity.audit.stop()
  graceAuth = await startTestAuth({ REFRESH_REUSE_GRACE_SECONDS: '1' })

  const victimId = await register(auth, 'victim@example.com', 'correct horse battery')
  workspaces.addMember(victimId, { workspaceId: 'ws-victim', role: 'member' })
  victim = await signInAgain(auth, {
    id: victimId,
    email: 'victim@example.com',
    password: 'correct horse battery',
  })
  const otherId = await register(auth, 'other@example.com', 'other horse battery')
  workspaces.addMember(otherId, { workspaceId: 'ws-other', role: 'owner' })
  other = await signInAgain(auth, {
    id: otherId,
    email: 'other@example.com',
    password: 'other horse battery',
  })
  revoked = await signUp(auth, 'revoked@example.com')
  const logout = await auth.app.inject({
    method: 'POST',
    url: '/auth/v1/logout',
    headers: bearer(revoked.pair.accessToken),
  })
  expect(logout.statusCode, logout.body).toBe(204)

  attackerKey = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true })
  attackerJwk = { ...(await exportJWK(attackerKey.publicKey)), kid: randomUUID(), alg: 'EdDSA' }
  const jwks = await auth.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  const [published] = jwks.json<{ keys: JWK[] }>().keys
  if (published === undefined) throw new Error('no published key')
  realJwk = published
  workspaceServiceToken = await serviceToken(
    'workspace-service',
    TEST_SECRETS.SERVICE_SECRET_WORKSPACE,
  )
  authServiceToken = await serviceToken('auth-service', TEST_SECRETS.SERVICE_SECRET_AUTH)
})

afterAll(async () => {
  await auth?.app.close()
  await graceAuth?.app.close()
  await workspaces?.close()
})

// ---------------------------------------------------------------------------------------------
// Bodies

interface BodyRoute {
  name: string
  url: string
  /** Routes behind `requireUser` get a valid bearer, so the body is what is refused. */
  authenticated: boolean
  /** A body the route accepts, from which the field attacks start. */
  valid: () => Record<string, unknown>
  /** What a JSON `null` body means here (refresh and logout accept "no body"). */
  nullBody: [number, string]
}

let prober: SignedInUser
beforeAll(async () => {
  prober = await signUp(auth, 'prober@example.com')
})

const bodyRoutes: BodyRoute[] = [
  {
    name: 'register',
    url: '/auth/v1/register',
    authenticated: false,
    valid: () => ({ email: 'new@example.com', password: 'correct horse battery', name: 'New' }),
    nullBody: [400, 'AUTH_VALIDATION'],
  },
  {
    name: 'login',
    url: '/auth/v1/login',
    authenticated: false,
    valid: () => ({ email: 'victim@example.com', password: 'correct horse battery' }),
    nullBody: [400, 'AUTH_VALIDATION'],
  },
  {
    name: 'token/refresh',
    url: '/auth/v1/token/refresh',
    authenticated: false,
    valid: () => ({ refreshToken: victim.pair.refreshToken }),
    nullBody: [401, 'AUTH_REFRESH_INVALID'],
  },
  {
    name: 'token/switch',
    url: '/auth/v1/token/switch',
    authenticated: true,
    valid: () => ({ workspaceId: 'ws-victim' }),
    nullBody: [400, 'AUTH_VALIDATION'],
  },
  {
    name: 'logout',
    url: '/auth/v1/logout',
    authenticated: false,
    valid: () => ({ refreshToken: victim.pair.refreshToken }),
    nullBody: [401, 'AUTH_UNAUTHENTICATED'],
  },
  {
    name: 'mfa/totp/enable',
    url: '/auth/v1/mfa/totp/enable',
    authenticated: true,
    valid: () => ({ code: '123456' }),
    nullBody: [400, 'AUTH_VALIDATION'],
  },
  {
    name: 'mfa/totp/disable',
    url: '/auth/v1/mfa/totp/disable',
    authenticated: true,
    valid: () => ({ code: '123456' }),
    nullBody: [400, 'AUTH_VALIDATION'],
  },
  {
    name: 'service-token',
    url: '/internal/v1/service-token',
    authenticated: false,
    valid: () => ({ service: 'workspace-service', secret: TEST_SECRETS.SERVICE_SECRET_WORKSPACE }),
    nullBody: [400, 'AUTH_VALIDATION'],
  },
]

const rawRequest = (
  route: BodyRoute,
  payload: string,
  contentType: string | undefined,
): InjectOptions => ({
  method: 'POST',
  url: route.url,
  headers: {
    ...(contentType === undefined ? {} : { 'content-type': contentType }),
    ...(route.authenticated ? bearer(prober.pair.accessToken) : {}),
  },
  payload,
})

const jsonRequest = (route: BodyRoute, body: unknown): InjectOptions =>
  rawRequest(route, JSON.stringify(body), 'application/json')

interface RawAttack {
  name: string
  payload: string
  contentType?: string
  expect?: (route: BodyRoute) => [number, string]
}

const JSON_TYPE = 'application/json'
const VALIDATION: [number, string] = [400, 'AUTH_VALIDATION']
const UNSUPPORTED: [number, string] = [415, 'AUTH_UNSUPPORTED_MEDIA_TYPE']

const rawAttacks: RawAttack[] = [
  { name: 'truncated JSON', payload: '{"email":"a@example.com","pass', contentType: JSON_TYPE },
  {
    name: 'trailing garbage after the object',
    payload: '{"code":"1"} trailing',
    contentType: JSON_TYPE,
  },
  { name: 'two concatenated objects', payload: '{"a":1}{"b":2}', contentType: JSON_TYPE },
  {
    name: 'single-quoted pseudo-JSON',
    payload: "{'email':'a@example.com'}",
    contentType: JSON_TYPE,
  },
  {
    name: 'a JSON string instead of an object',
    payload: '"victim@example.com"',
    contentType: JSON_TYPE,
  },
  {
    name: 'a JSON array instead of an object',
    payload: '[{"code":"123456"}]',
    contentType: JSON_TYPE,
  },
  { name: 'a JSON number instead of an object', payload: '42', contentType: JSON_TYPE },
  { name: 'a JSON boolean instead of an object', payload: 'true', contentType: JSON_TYPE },
  {
    name: 'JSON null (allowed only where "no body" is)',
    payload: 'null',
    contentType: JSON_TYPE,
    expect: (route) => route.nullBody,
  },
  {
    name: '__proto__ pollution payload',
    payload: '{"__proto__":{"polluted":"yes","isAdmin":true},"code":"123456"}',
    contentType: JSON_TYPE,
  },
  {
    name: 'constructor.prototype pollution payload',
    payload: '{"constructor":{"prototype":{"polluted":"yes"}},"code":"123456"}',
    contentType: JSON_TYPE,
  },
  { name: 'an empty body labelled JSON', payload: '', contentType: JSON_TYPE },
  { name: 'a whitespace-only body labelled JSON', payload: '   \n ', contentType: JSON_TYPE },
  {
    name: 'text/plain carrying JSON',
    payload: '{"code":"123456"}',
    contentType: 'text/plain',
  },
  {
    name: 'form-urlencoded',
    payload: 'email=victim%40example.com&password=x',
    contentType: 'application/x-www-form-urlencoded',
    expect: () => UNSUPPORTED,
  },
  {
    name: 'XML',
    payload: '<login><email>victim@example.com</email></login>',
    contentType: 'application/xml',
    expect: () => UNSUPPORTED,
  },
  {
    name: 'a body without a content-type',
    payload: '{"code":"123456"}',
    expect: () => UNSUPPORTED,
  },
  {
    name: 'deeply nested arrays (10 000 levels)',
    payload: `{"code":${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
    contentType: JSON_TYPE,
  },
  {
    name: 'deeply nested objects (5 000 levels)',
    payload: `{"code":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}`,
    contentType: JSON_TYPE,
  },
]

describe.each(bodyRoutes)('malformed bodies on $name', (route) => {
  it.each(rawAttacks)('$name → clean 4xx, nothing stored', async (raw) => {
    const [status, code] = raw.expect?.(route) ?? VALIDATION
    await attack(auth, rawRequest(route, raw.payload, raw.contentType), status, code)
    // The parser refused the pollution payloads; nothing may have reached Object.prototype.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined()
  })

  it('a body over 64 KiB → 413 AUTH_PAYLOAD_TOO_LARGE', async () => {
    const body = { ...route.valid(), padding: 'x'.repeat(65 * 1024) }
    await attack(auth, jsonRequest(route, body), 413, 'AUTH_PAYLOAD_TOO_LARGE')
  })

  it('a 10 MB string field → 413 AUTH_PAYLOAD_TOO_LARGE', async () => {
    const [field] = Object.keys(route.valid())
    const body = { ...route.valid(), [field ?? 'x']: 'p'.repeat(10 * 1024 * 1024) }
    await attack(auth, jsonRequest(route, body), 413, 'AUTH_PAYLOAD_TOO_LARGE')
  })

  it('an unknown extra field → 400 AUTH_VALIDATION naming it', async () => {
    const body = await attack(
      auth,
      jsonRequest(route, { ...route.valid(), isAdmin: true }),
      400,
      'AUTH_VALIDATION',
    )
    expect(
      body.details?.some((detail) => `${detail.path} ${detail.message}`.includes('isAdmin')),
      JSON.stringify(body.details),
    ).toBe(true)
  })
})

interface FieldAttack {
  name: string
  route: string
  body: () => unknown
  status?: number
  code?: string
  /** A field the 400's details must name. */
  names?: string
  changes?: ExpectedChanges
}

const routeNamed = (name: string) => {
  const route = bodyRoutes.find((candidate) => candidate.name === name)
  if (route === undefined) throw new Error(`no body route ${name}`)
  return route
}

const fieldAttacks: FieldAttack[] = [
  { name: 'all fields missing', route: 'register', body: () => ({}), names: 'email' },
  {
    name: 'password missing',
    route: 'register',
    body: () => ({ email: 'new@example.com', name: 'New' }),
    names: 'password',
  },
  {
    name: 'email as a number',
    route: 'register',
    body: () => ({ email: 42, password: 'correct horse battery', name: 'New' }),
    names: 'email',
  },
  {
    name: 'password as an array',
    route: 'register',
    body: () => ({ email: 'new@example.com', password: ['correct horse battery'], name: 'New' }),
    names: 'password',
  },
  {
    name: 'a 129-character password',
    route: 'register',
    body: () => ({ email: 'new@example.com', password: 'p'.repeat(129), name: 'New' }),
    names: 'password',
  },
  {
    name: 'a null byte in the email',
    route: 'register',
    body: () => ({ email: 'new\u0000@example.com', password: 'correct horse battery', name: 'N' }),
    code: 'AUTH_INVALID_EMAIL',
  },
  {
    name: 'a null byte in the name',
    route: 'register',
    body: () => ({
      email: 'nul@example.com',
      password: 'correct horse battery',
      name: 'Eve\u0000',
    }),
    names: 'name',
  },
  {
    name: 'a right-to-left override in the name',
    route: 'register',
    body: () => ({
      email: 'rlo@example.com',
      password: 'correct horse battery',
      name: 'Eve\u202Enimda',
    }),
    names: 'name',
  },
  { name: 'all fields missing', route: 'login', body: () => ({}), names: 'email' },
  {
    name: 'NoSQL operator object as the email',
    route: 'login',
    body: () => ({ email: { $ne: null }, password: 'correct horse battery' }),
    names: 'email',
  },
  {
    name: 'NoSQL operator object as the password',
    route: 'login',
    body: () => ({ email: 'victim@example.com', password: { $gt: '' } }),
    names: 'password',
  },
  {
    name: 'NoSQL operator object as the workspaceId',
    route: 'login',
    body: () => ({
      email: 'victim@example.com',
      password: 'correct horse battery',
      workspaceId: { $ne: null },
    }),
    names: 'workspaceId',
  },
  {
    name: 'a null byte after the victim email, with the right password (not the victim)',
    route: 'login',
    body: () => ({ email: 'victim@example.com\u0000', password: 'correct horse battery' }),
    status: 401,
    code: 'AUTH_INVALID_CREDENTIALS',
    changes: FAILED_LOGIN,
  },
  {
    name: 'a null byte inside the password',
    route: 'login',
    body: () => ({ email: 'victim@example.com', password: 'correct horse\u0000battery' }),
    status: 401,
    code: 'AUTH_INVALID_CREDENTIALS',
    changes: FAILED_LOGIN_COUNTED,
  },
  {
    name: 'refreshToken as a NoSQL operator object',
    route: 'token/refresh',
    body: () => ({ refreshToken: { $ne: null } }),
    names: 'refreshToken',
  },
  {
    name: 'refreshToken as an array',
    route: 'token/refresh',
    body: () => ({ refreshToken: ['a', 'b'] }),
    names: 'refreshToken',
  },
  {
    name: 'refreshToken null',
    route: 'token/refresh',
    body: () => ({ refreshToken: null }),
    names: 'refreshToken',
  },
  {
    name: 'an empty refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: '' }),
    names: 'refreshToken',
  },
  {
    name: 'a 10 KB refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: 'r'.repeat(10 * 1024) }),
    names: 'refreshToken',
  },
  {
    name: 'a random refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: randomBytes(32).toString('base64url') }),
    status: 401,
    code: 'AUTH_REFRESH_INVALID',
  },
  {
    name: 'the operator as a string refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: '{"$ne":null}' }),
    status: 401,
    code: 'AUTH_REFRESH_INVALID',
  },
  {
    name: 'SQL injection as the refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: "' OR '1'='1'; --" }),
    status: 401,
    code: 'AUTH_REFRESH_INVALID',
  },
  {
    name: 'a null byte in the refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: `${victim.pair.refreshToken}\u0000` }),
    status: 401,
    code: 'AUTH_REFRESH_INVALID',
  },
  {
    name: 'the access token as the refreshToken',
    route: 'token/refresh',
    body: () => ({ refreshToken: victim.pair.accessToken.slice(0, 512) }),
    status: 401,
    code: 'AUTH_REFRESH_INVALID',
  },
  { name: 'workspaceId missing', route: 'token/switch', body: () => ({}), names: 'workspaceId' },
  {
    name: 'workspaceId as a NoSQL operator object',
    route: 'token/switch',
    body: () => ({ workspaceId: { $ne: null } }),
    names: 'workspaceId',
  },
  {
    name: 'a null byte in the workspaceId',
    route: 'token/switch',
    body: () => ({ workspaceId: 'ws-other\u0000' }),
    status: 403,
    code: 'AUTH_NOT_A_MEMBER',
  },
  {
    name: "another user's workspace",
    route: 'token/switch',
    body: () => ({ workspaceId: 'ws-other' }),
    status: 403,
    code: 'AUTH_NOT_A_MEMBER',
  },
  {
    name: 'path traversal as the workspaceId',
    route: 'token/switch',
    body: () => ({ workspaceId: '../users/victim/memberships' }),
    status: 403,
    code: 'AUTH_NOT_A_MEMBER',
  },
  {
    name: 'refreshToken as a NoSQL operator object',
    route: 'logout',
    body: () => ({ refreshToken: { $ne: null } }),
    names: 'refreshToken',
  },
  {
    name: 'an unknown sessionId field',
    route: 'logout',
    body: () => ({ sessionId: victim.sid }),
    names: 'sessionId',
  },
  { name: 'code missing', route: 'mfa/totp/enable', body: () => ({}), names: 'code' },
  {
    name: 'code as a NoSQL operator object',
    route: 'mfa/totp/enable',
    body: () => ({ code: { $ne: null } }),
    names: 'code',
  },
  {
    name: 'code as a number',
    route: 'mfa/totp/disable',
    body: () => ({ code: 123456 }),
    names: 'code',
  },
  { name: 'all fields missing', route: 'service-token', body: () => ({}), names: 'service' },
  {
    name: 'secret as a NoSQL operator object',
    route: 'service-token',
    body: () => ({ service: 'auth-service', secret: { $gt: '' } }),
    names: 'secret',
  },
  {
    name: 'service as an array',
    route: 'service-token',
    body: () => ({ service: ['auth-service'], secret: TEST_SECRETS.SERVICE_SECRET_AUTH }),
    names: 'service',
  },
]

describe('field attacks', () => {
  it.each(fieldAttacks)('$route: $name', async (field) => {
    const route = routeNamed(field.route)
    const body = await attack(
      auth,
      jsonRequest(route, field.body()),
      field.status ?? 400,
      field.code ?? 'AUTH_VALIDATION',
      field.changes,
    )
    if (field.names !== undefined)
      expect(
        body.details?.some(
          (detail) =>
            detail.path.split('.')[0] === field.names ||
            detail.message.includes(`"${field.names}"`),
        ),
        JSON.stringify(body.details),
      ).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// Unicode tricks in email addresses

/** Addresses that imitate victim@example.com but are refused as addresses. */
const refusedLookalikes: [string, string][] = [
  ['zero-width space in the local part', 'vic\u200Btim@example.com'],
  ['zero-width joiner before the @', 'victim\u200D@example.com'],
  ['right-to-left override', 'victim\u202E@example.com'],
  ['reversed text behind a right-to-left override', '\u202Emoc.elpmaxe@mitciv'],
  ['byte-order mark in front', '\uFEFFvictim@example.com'],
  ['soft hyphen', 'vic\u00ADtim@example.com'],
  ['combining grapheme joiner', 'vic\u034Ftim@example.com'],
  ['Hangul filler', 'victim\u3164@example.com'],
  ['null byte', 'victim\u0000@example.com'],
  ['CRLF header injection', 'victim@example.com\r\nBcc: thief@evil.test'],
  ['Cyrillic с mixed into the Latin local part', 'vi\u0441tim@example.com'],
  ['Greek α mixed into the Latin domain', 'victim@ex\u03B1mple.com'],
  ['Latin small capital ɪ passing for i', 'v\u026Actim@example.com'],
  [
    'whole-script Cyrillic lookalike domain (аррӏе.com)',
    'victim@\u0430\u0440\u0440\u04CF\u0435.com',
  ],
  ['the same lookalike domain typed as punycode', 'victim@xn--80ak6aa92e.com'],
  ['whole-script Cyrillic lookalike local part', '\u0430\u0440\u0440\u04CF\u0435@example.com'],
  ['combining dot above on i', 'vi\u0307ctim@example.com'],
  ['combining solidus overlay on c', 'vic\u0338tim@example.com'],
  ['standalone combining acute in front', '\u0301victim@example.com'],
  ['quoted local part', '"victim"@example.com'],
  ['IP-literal domain', 'victim@[127.0.0.1]'],
  ['two @ signs', 'victim@evil.test@example.com'],
  ['trailing root dot in the domain', 'victim@example.com.'],
]

/** Spellings that NFKC and case folding make the very same address as victim@example.com. */
const sameAddressSpellings: [string, string][] = [
  ['fullwidth ＠', 'victim\uFF20example.com'],
  ['fullwidth letters', '\uFF56\uFF49\uFF43\uFF54\uFF49\uFF4D@example.com'],
  [
    'mathematical bold letters',
    '\u{1D42F}\u{1D422}\u{1D41C}\u{1D42D}\u{1D422}\u{1D426}@example.com',
  ],
  ['only the case differs', 'VICTIM@Example.COM'],
  ['Turkish dotted capital İ', 'V\u0130CTIM@example.com'],
  ['ideographic full stop in the domain', 'victim@example\u3002com'],
  ['surrounding no-break spaces', '\u00A0victim@example.com\u00A0'],
]

describe('Unicode tricks on register', () => {
  it.each(refusedLookalikes)('%s → 400 AUTH_INVALID_EMAIL, nothing stored', async (_, email) => {
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/register',
        payload: { email, password: 'correct horse battery', name: 'Mallory' },
      },
      400,
      'AUTH_INVALID_EMAIL',
    )
  })

  it.each(sameAddressSpellings)(
    '%s is the existing address → 409 AUTH_EMAIL_TAKEN, nothing stored',
    async (_, email) => {
      await attack(
        auth,
        {
          method: 'POST',
          url: '/auth/v1/register',
          payload: { email, password: 'correct horse battery', name: 'Mallory' },
        },
        409,
        'AUTH_EMAIL_TAKEN',
      )
    },
  )
})

describe('Unicode tricks on login', () => {
  it.each(refusedLookalikes)(
    "%s with the victim's password → 401, only the failure counted and audited",
    async (_, email) => {
      await attack(
        auth,
        {
          method: 'POST',
          url: '/auth/v1/login',
          payload: { email, password: 'correct horse battery' },
        },
        401,
        'AUTH_INVALID_CREDENTIALS',
        FAILED_LOGIN_COUNTED,
      )
    },
  )

  it('an NFKC-equal spelling (fullwidth ＠) IS the same account: it signs in (by design)', async () => {
    const twin = await signUp(auth, 'twin@example.com')
    const before = await snapshotState(auth)
    const response = await auth.app.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: 'twin\uFF20example.com', password: twin.password },
    })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json<TokenPairResponse>().user.id).toBe(twin.id)
    expectOnlyChanged(before, await snapshotState(auth), {
      counts: { sessions: 1, refresh_tokens: 1, audit_outbox: 1 },
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Forged and misused access tokens

interface TokenCase {
  name: string
  headers: () => Promise<Record<string, string | string[]>>
  /** The code when the token belongs to a revoked session. */
  revokedSession?: true
}

const tokenCases: TokenCase[] = [
  {
    name: 'alg none with the victim claims',
    headers: async () => bearer(unsignedToken({ alg: 'none', typ: 'JWT' }, victimClaims())),
  },
  {
    name: 'alg NONE (upper case)',
    headers: async () => bearer(unsignedToken({ alg: 'NONE', typ: 'JWT' }, victimClaims())),
  },
  {
    name: "the victim's real token with its signature stripped",
    headers: async () => {
      const [header, payload] = victim.pair.accessToken.split('.')
      return bearer(`${header}.${payload}.`)
    },
  },
  {
    name: "the victim's real token re-headed as alg none",
    headers: async () => {
      const [, payload] = victim.pair.accessToken.split('.')
      return bearer(`${b64url({ alg: 'none', typ: 'JWT' })}.${payload}.`)
    },
  },
  {
    name: 'HS256 keyed with the public key bytes (key confusion)',
    headers: async () =>
      bearer(
        signHs256(
          { alg: 'HS256', kid: realJwk.kid, typ: 'JWT' },
          victimClaims(),
          Buffer.from(realJwk.x ?? '', 'base64url'),
        ),
      ),
  },
  {
    name: 'HS256 keyed with the JWKS x string',
    headers: async () =>
      bearer(
        signHs256(
          { alg: 'HS256', kid: realJwk.kid, typ: 'JWT' },
          victimClaims(),
          Buffer.from(realJwk.x ?? ''),
        ),
      ),
  },
  {
    name: 'HS256 keyed with the whole public JWK',
    headers: async () =>
      bearer(
        signHs256(
          { alg: 'HS256', kid: realJwk.kid, typ: 'JWT' },
          victimClaims(),
          Buffer.from(JSON.stringify(realJwk)),
        ),
      ),
  },
  {
    name: 'unknown kid (an attacker Ed25519 key)',
    headers: async () =>
      bearer(
        signEd25519(
          { alg: 'EdDSA', kid: attackerJwk.kid, typ: 'JWT' },
          victimClaims(),
          attackerKey.privateKey,
        ),
      ),
  },
  {
    name: 'no kid (an attacker Ed25519 key)',
    headers: async () =>
      bearer(signEd25519({ alg: 'EdDSA', typ: 'JWT' }, victimClaims(), attackerKey.privateKey)),
  },
  {
    name: 'the real kid over an attacker signature',
    headers: async () =>
      bearer(
        signEd25519(
          { alg: 'EdDSA', kid: realJwk.kid, typ: 'JWT' },
          victimClaims(),
          attackerKey.privateKey,
        ),
      ),
  },
  {
    name: 'an embedded jwk header with the attacker key',
    headers: async () =>
      bearer(
        signEd25519(
          { alg: 'EdDSA', typ: 'JWT', jwk: attackerJwk },
          victimClaims(),
          attackerKey.privateKey,
        ),
      ),
  },
  {
    name: 'jku and x5u headers pointing at an attacker key set',
    headers: async () =>
      bearer(
        signEd25519(
          {
            alg: 'EdDSA',
            typ: 'JWT',
            kid: attackerJwk.kid,
            jku: 'http://attacker.test/jwks.json',
            x5u: 'http://attacker.test/cert.pem',
          },
          victimClaims(),
          attackerKey.privateKey,
        ),
      ),
  },
  {
    name: 'kid as a NoSQL operator object',
    headers: async () =>
      bearer(
        signEd25519(
          { alg: 'EdDSA', typ: 'JWT', kid: { $ne: null } },
          victimClaims(),
          attackerKey.privateKey,
        ),
      ),
  },
  {
    name: 'kid as a path traversal',
    headers: async () =>
      bearer(
        signEd25519(
          { alg: 'EdDSA', typ: 'JWT', kid: '../../../../dev/null' },
          victimClaims(),
          attackerKey.privateKey,
        ),
      ),
  },
  {
    name: 'real key, an unknown critical header',
    headers: async () =>
      bearer(await signWithRealKey(victimClaims(), { crit: ['x-evil'], 'x-evil': true })),
  },
  {
    name: 'real key, expired (beyond the clock tolerance)',
    headers: async () =>
      bearer(
        await signWithRealKey(victimClaims({ iat: nowSeconds() - 960, exp: nowSeconds() - 30 })),
      ),
  },
  {
    name: 'real key, not valid yet (nbf in an hour)',
    headers: async () => bearer(await signWithRealKey(victimClaims({ nbf: nowSeconds() + 3600 }))),
  },
  {
    name: 'real key, iat as a string',
    headers: async () => bearer(await signWithRealKey(victimClaims({ iat: 'now' }))),
  },
  {
    name: 'real key, exp missing',
    headers: async () => bearer(await signWithRealKey(victimClaims({ exp: undefined }))),
  },
  {
    name: 'real key, wrong iss',
    headers: async () => bearer(await signWithRealKey(victimClaims({ iss: 'http://evil.test' }))),
  },
  {
    name: 'real key, iss with a trailing slash',
    headers: async () =>
      bearer(await signWithRealKey(victimClaims({ iss: `${TEST_PUBLIC_URL}/` }))),
  },
  {
    name: 'real key, aud internal (a service audience)',
    headers: async () => bearer(await signWithRealKey(victimClaims({ aud: INTERNAL_AUDIENCE }))),
  },
  {
    name: 'real key, aud [platform, internal]',
    headers: async () =>
      bearer(await signWithRealKey(victimClaims({ aud: [PLATFORM_AUDIENCE, INTERNAL_AUDIENCE] }))),
  },
  {
    name: 'real key, sid missing',
    headers: async () => bearer(await signWithRealKey(victimClaims({ sid: undefined }))),
  },
  {
    name: 'real key, wid without tid and role',
    headers: async () =>
      bearer(await signWithRealKey(victimClaims({ tid: undefined, role: undefined }))),
  },
  {
    name: 'real key, role superadmin',
    headers: async () => bearer(await signWithRealKey(victimClaims({ role: 'superadmin' }))),
  },
  {
    name: 'real key, empty sub',
    headers: async () => bearer(await signWithRealKey(victimClaims({ sub: '' }))),
  },
  {
    name: 'a real service token (aud internal) as a user token',
    headers: async () => bearer(workspaceServiceToken),
  },
  {
    name: "the victim's real token with role flipped to owner",
    headers: async () =>
      bearer(
        tamperPayload(victim.pair.accessToken, (claims) =>
          Object.assign(claims, { role: 'owner' }),
        ),
      ),
  },
  {
    name: "the victim's real token with sub changed to another user",
    headers: async () =>
      bearer(
        tamperPayload(victim.pair.accessToken, (claims) =>
          Object.assign(claims, { sub: other.id }),
        ),
      ),
  },
  {
    name: "the victim's real token with its header switched to HS256",
    headers: async () =>
      bearer(
        tamperHeader(victim.pair.accessToken, (header) => Object.assign(header, { alg: 'HS256' })),
      ),
  },
  { name: "'Bearer' with an empty token", headers: async () => ({ authorization: 'Bearer ' }) },
  { name: "'Bearer' alone", headers: async () => ({ authorization: 'Bearer' }) },
  {
    name: 'Basic credentials',
    headers: async () => ({
      authorization: `Basic ${Buffer.from('victim@example.com:correct horse battery').toString('base64')}`,
    }),
  },
  {
    name: "two Authorization headers, a forged one first and the victim's real one second",
    headers: async () => ({
      authorization: [
        `Bearer ${unsignedToken({ alg: 'none' }, victimClaims())}`,
        `Bearer ${victim.pair.accessToken}`,
      ],
    }),
  },
  {
    name: 'a 100 KB token',
    headers: async () =>
      bearer([1, 2, 3].map(() => randomBytes(25 * 1024).toString('base64url')).join('.')),
  },
  {
    name: 'a JWE-shaped token (five segments)',
    headers: async () => bearer(`${victim.pair.accessToken}.${b64url('x')}.${b64url('y')}`),
  },
  {
    name: 'a JSON-serialized JWS',
    headers: async () => ({
      authorization: `Bearer ${JSON.stringify({ payload: b64url(victimClaims()), signatures: [] })}`,
    }),
  },
  {
    name: 'the real token of a signed-out session',
    headers: async () => bearer(revoked.pair.accessToken),
    revokedSession: true,
  },
  {
    name: "real key, the victim's sub on a signed-out session's sid",
    headers: async () => bearer(await signWithRealKey(victimClaims({ sid: revoked.sid }))),
    revokedSession: true,
  },
]

interface BearerRoute {
  name: string
  request: () => InjectOptions
}

const bearerRoutes: BearerRoute[] = [
  { name: 'GET /auth/v1/me', request: () => ({ method: 'GET', url: '/auth/v1/me' }) },
  {
    name: 'POST /auth/v1/token/switch',
    request: () => ({
      method: 'POST',
      url: '/auth/v1/token/switch',
      payload: { workspaceId: 'ws-victim' },
    }),
  },
  { name: 'GET /auth/v1/sessions', request: () => ({ method: 'GET', url: '/auth/v1/sessions' }) },
  {
    name: "DELETE /auth/v1/sessions/<the victim's session>",
    request: () => ({ method: 'DELETE', url: `/auth/v1/sessions/${victim.sid}` }),
  },
  {
    name: 'POST /auth/v1/mfa/totp/setup',
    request: () => ({ method: 'POST', url: '/auth/v1/mfa/totp/setup' }),
  },
  { name: 'POST /auth/v1/logout', request: () => ({ method: 'POST', url: '/auth/v1/logout' }) },
]

describe('crafting machinery (controls)', () => {
  it('the state snapshot notices an insert, an edit, a new key, a bumped counter and a removal', async () => {
    const db = auth.app.mongo.db
    if (db === undefined) throw new Error('no database')
    const scratch = db.collection<{ _id: string; value: number }>('zz_snapshot_control')
    await auth.app.redis.set('control:counter', '1')
    const empty = await snapshotState(auth)
    await scratch.insertOne({ _id: 'one', value: 1 })
    await auth.app.redis.incr('control:counter')
    await auth.app.redis.set('control:new', 'x')
    const inserted = await snapshotState(auth)
    await scratch.updateOne({ _id: 'one' }, { $set: { value: 2 } })
    await auth.app.redis.del('control:new')
    const edited = await snapshotState(auth)
    try {
      expect(() => expectUnchanged(empty, inserted)).toThrow()
      expectOnlyChanged(empty, inserted, {
        counts: { zz_snapshot_control: 1 },
        redisAdded: ['control:new'],
        redisWritten: ['control:counter'],
      })
      expect(() => expectUnchanged(inserted, edited)).toThrow()
      expectOnlyChanged(inserted, edited, {
        modified: ['zz_snapshot_control/one'],
        redisRemoved: ['control:new'],
      })
      // An expected write that did not happen fails too.
      expect(() =>
        expectOnlyChanged(edited, edited, { redisAdded: [/^auth:revoked-session:/] }),
      ).toThrow()
    } finally {
      await scratch.drop()
      await auth.app.redis.del('control:counter')
    }
  })

  it('a token crafted with the real key and correct claims IS accepted', async () => {
    const response = await auth.app.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: bearer(await signWithRealKey(victimClaims())),
    })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json<{ user: { id: string } }>().user.id).toBe(victim.id)
  })

  it("the victim's real token IS accepted", async () => {
    const response = await auth.app.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: bearer(victim.pair.accessToken),
    })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json<{ currentWorkspaceId: string }>().currentWorkspaceId).toBe('ws-victim')
  })
})

describe.each(bearerRoutes)('forged tokens on $name', (route) => {
  const isLogout = route.name === 'POST /auth/v1/logout'
  it.each(tokenCases.filter((token) => !(isLogout && token.revokedSession)))(
    '$name → 401, nothing stored',
    async (token) => {
      // Logout treats any refused bearer as "no bearer" and then asks for a refresh token.
      const code = token.revokedSession ? 'AUTH_SESSION_REVOKED' : 'AUTH_UNAUTHENTICATED'
      await attack(auth, { ...route.request(), headers: await token.headers() }, 401, code)
    },
  )

  if (isLogout)
    it.each(tokenCases.filter((token) => token.revokedSession))(
      '$name → 204 (signing out of an ended session is already done), nothing stored',
      async (token) => {
        const before = await snapshotState(auth)
        const response = await auth.app.inject({
          ...route.request(),
          headers: await token.headers(),
        })
        expect(response.statusCode, response.body).toBe(204)
        expectUnchanged(before, await snapshotState(auth))
      },
    )
})

describe('the victim survives the token attacks', () => {
  it("the victim's session is still live after all the token attacks", async () => {
    const response = await auth.app.inject({
      method: 'GET',
      url: '/auth/v1/sessions',
      headers: bearer(victim.pair.accessToken),
    })
    expect(response.statusCode, response.body).toBe(200)
    const ids = response.json<{ items: { id: string }[] }>().items.map((item) => item.id)
    expect(ids).toContain(victim.sid)
  })
})

// ---------------------------------------------------------------------------------------------
// Refresh tokens

const refresh = (refreshToken: string, cookie?: string): InjectOptions => ({
  method: 'POST',
  url: '/auth/v1/token/refresh',
  payload: { refreshToken },
  ...(cookie === undefined ? {} : { cookies: { [REFRESH_COOKIE_NAME]: cookie } }),
})

/** The stored record of a refresh token: the service keeps only the token's SHA-256. */
const tokenRecord = (refreshToken: string) =>
  `refresh_tokens/${createHash('sha256').update(refreshToken).digest('base64url')}`

describe('refresh tokens', () => {
  it('used twice within the grace → 200 with the same pair; only the first use writes (rotation, new token, grace answer)', async () => {
    const session = await signInAgain(auth, victim)
    const first = await snapshotState(auth)
    const once = await auth.app.inject(refresh(session.pair.refreshToken))
    expect(once.statusCode, once.body).toBe(200)
    const middle = await snapshotState(auth)
    const twice = await auth.app.inject(refresh(session.pair.refreshToken))
    expect(twice.statusCode, twice.body).toBe(200)
    expect(twice.json()).toEqual(once.json())
    expectOnlyChanged(first, middle, {
      counts: { refresh_tokens: 1 },
      modified: [`sessions/${session.sid}`, tokenRecord(session.pair.refreshToken)],
      redisAdded: [/^auth:refresh-grace:/],
    })
    expectUnchanged(middle, await snapshotState(auth))
  })

  it('two parallel refreshes with one token both answer the same pair', async () => {
    const session = await signInAgain(auth, victim)
    const [a, b] = await Promise.all([
      auth.app.inject(refresh(session.pair.refreshToken)),
      auth.app.inject(refresh(session.pair.refreshToken)),
    ])
    expect(a?.statusCode, a?.body).toBe(200)
    expect(b?.statusCode, b?.body).toBe(200)
    expect(a?.json()).toEqual(b?.json())
  })

  it('used after the grace (1 s) → 401 AUTH_REFRESH_REUSED; the defined consequence: the session is revoked (mark, session update, audit event)', async () => {
    const session = await signUp(graceAuth, 'reuse@example.com')
    const rotated = await graceAuth.app.inject(refresh(session.pair.refreshToken))
    expect(rotated.statusCode, rotated.body).toBe(200)
    const next = TokenPairResponseSchema.parse(rotated.json())
    await new Promise((resolve) => setTimeout(resolve, 1_500))

    await attack(graceAuth, refresh(session.pair.refreshToken), 401, 'AUTH_REFRESH_REUSED', {
      counts: { audit_outbox: 1 },
      modified: [`sessions/${session.sid}`],
      redisAdded: [`auth:revoked-session:${session.sid}`],
    })
    // The whole family is gone: the token it was rotated into, and its access tokens.
    await attack(graceAuth, refresh(next.refreshToken), 401, 'AUTH_SESSION_REVOKED')
    await attack(
      graceAuth,
      { method: 'GET', url: '/auth/v1/me', headers: bearer(next.accessToken) },
      401,
      'AUTH_SESSION_REVOKED',
    )
    // A third try of the stolen token changes nothing more.
    await attack(graceAuth, refresh(session.pair.refreshToken), 401, 'AUTH_SESSION_REVOKED')
  })

  it("a signed-out session's refresh token → 401 AUTH_SESSION_REVOKED, nothing stored", async () => {
    await attack(auth, refresh(revoked.pair.refreshToken), 401, 'AUTH_SESSION_REVOKED')
  })

  it('a random cookie holding a NoSQL operator string → 401 AUTH_REFRESH_INVALID', async () => {
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/token/refresh',
        cookies: { [REFRESH_COOKIE_NAME]: '{"$ne":null}' },
      },
      401,
      'AUTH_REFRESH_INVALID',
    )
  })

  it("A's bearer with B's refresh token in the logout body ends only A's session (the bearer wins)", async () => {
    const a = await signInAgain(auth, victim)
    const b = await signInAgain(auth, other)
    const before = await snapshotState(auth)
    const response = await auth.app.inject({
      method: 'POST',
      url: '/auth/v1/logout',
      headers: bearer(a.pair.accessToken),
      payload: { refreshToken: b.pair.refreshToken },
    })
    expect(response.statusCode, response.body).toBe(204)
    expectOnlyChanged(before, await snapshotState(auth), {
      counts: { audit_outbox: 1 },
      modified: [`sessions/${a.sid}`],
      redisAdded: [`auth:revoked-session:${a.sid}`],
    })
    const stillB = await auth.app.inject(refresh(b.pair.refreshToken))
    expect(stillB.statusCode, stillB.body).toBe(200)
    expect(stillB.json<TokenPairResponse>().user.id).toBe(other.id)
  })

  it("A deleting B's session by id → 404 AUTH_NOT_FOUND; B unaffected", async () => {
    const a = await signInAgain(auth, victim)
    const b = await signInAgain(auth, other)
    await attack(
      auth,
      {
        method: 'DELETE',
        url: `/auth/v1/sessions/${b.sid}`,
        headers: bearer(a.pair.accessToken),
      },
      404,
      'AUTH_NOT_FOUND',
    )
    const me = await auth.app.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: bearer(b.pair.accessToken),
    })
    expect(me.statusCode, me.body).toBe(200)
  })

  it("A's cookie with B's refresh token in the body → the body wins and answers B's pair", async () => {
    // Acceptable: a refresh token is a bearer credential for its own session, so whoever holds
    // B's token can already refresh B's session with it alone; the cookie is only a transport
    // for browsers and grants nothing of A's here (A's token is left untouched).
    const a = await signInAgain(auth, victim)
    const b = await signInAgain(auth, other)
    const before = await snapshotState(auth)
    const response = await auth.app.inject(refresh(b.pair.refreshToken, a.pair.refreshToken))
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json<TokenPairResponse>().user.id).toBe(other.id)
    expect(decodeJwt(response.json<TokenPairResponse>().accessToken).sid).toBe(b.sid)
    expectOnlyChanged(before, await snapshotState(auth), {
      counts: { refresh_tokens: 1 },
      modified: [`sessions/${b.sid}`, tokenRecord(b.pair.refreshToken)],
      redisAdded: [/^auth:refresh-grace:/],
    })
    const stillA = await auth.app.inject(refresh(a.pair.refreshToken))
    expect(stillA.statusCode, stillA.body).toBe(200)
    expect(stillA.json<TokenPairResponse>().user.id).toBe(victim.id)
  })

  it("a forged bearer naming the victim's session, and no refresh token → logout refused, victim's session kept", async () => {
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/logout',
        headers: bearer(unsignedToken({ alg: 'none' }, victimClaims())),
      },
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })

  it('DELETE /sessions/:id with an over-long id → 400, with an operator-looking id → 404', async () => {
    await attack(
      auth,
      {
        method: 'DELETE',
        url: `/auth/v1/sessions/${'s'.repeat(65)}`,
        headers: bearer(victim.pair.accessToken),
      },
      400,
      'AUTH_VALIDATION',
    )
    await attack(
      auth,
      {
        method: 'DELETE',
        url: `/auth/v1/sessions/${encodeURIComponent('{"$ne":null}')}`,
        headers: bearer(victim.pair.accessToken),
      },
      404,
      'AUTH_NOT_FOUND',
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Service tokens and internal routes

const SERVICE_SECRETS = {
  'auth-service': TEST_SECRETS.SERVICE_SECRET_AUTH,
  'workspace-service': TEST_SECRETS.SERVICE_SECRET_WORKSPACE,
  'api-gateway': TEST_SECRETS.SERVICE_SECRET_GATEWAY,
  'code-runtime': TEST_SECRETS.SERVICE_SECRET_RUNTIME,
} as const
const SERVICES = Object.keys(SERVICE_SECRETS) as (keyof typeof SERVICE_SECRETS)[]

const serviceTokenRequest = (body: unknown): InjectOptions => ({
  method: 'POST',
  url: '/internal/v1/service-token',
  payload: JSON.stringify(body),
  headers: { 'content-type': 'application/json' },
})

describe('service-token requests', () => {
  it.each(SERVICES)('%s with a wrong secret → 401 AUTH_INVALID_CREDENTIALS', async (service) => {
    await attack(
      auth,
      serviceTokenRequest({ service, secret: randomBytes(24).toString('base64url') }),
      401,
      'AUTH_INVALID_CREDENTIALS',
    )
  })

  it.each(SERVICES)("%s with another service's secret → 401", async (service) => {
    const index = SERVICES.indexOf(service)
    const neighbour = SERVICES[(index + 1) % SERVICES.length] ?? 'auth-service'
    await attack(
      auth,
      serviceTokenRequest({ service, secret: SERVICE_SECRETS[neighbour] }),
      401,
      'AUTH_INVALID_CREDENTIALS',
    )
  })

  it.each(SERVICES)('%s with its secret plus a trailing newline → 401', async (service) => {
    await attack(
      auth,
      serviceTokenRequest({ service, secret: `${SERVICE_SECRETS[service]}\n` }),
      401,
      'AUTH_INVALID_CREDENTIALS',
    )
  })

  it.each([
    ['an unknown service', { service: 'evil-service', secret: 'x' }],
    ['a service name in another case', { service: 'Auth-Service', secret: 'x' }],
    ['an empty secret', { service: 'auth-service', secret: '' }],
    ['a 513-character secret', { service: 'auth-service', secret: 's'.repeat(513) }],
    ['the secret as {"$gt":""}', { service: 'auth-service', secret: { $gt: '' } }],
    ['an extra aud field', { service: 'auth-service', secret: 'x', aud: 'platform' }],
  ])('%s → 400 AUTH_VALIDATION', async (_, body) => {
    await attack(auth, serviceTokenRequest(body), 400, 'AUTH_VALIDATION')
  })
})

describe('internal routes', () => {
  const byEmail = (query: string, headers: Record<string, string> = {}): InjectOptions => ({
    method: 'GET',
    url: `/internal/v1/users/by-email?${query}`,
    headers,
  })
  const rotate = (headers: Record<string, string> = {}): InjectOptions => ({
    method: 'POST',
    url: '/internal/v1/keys/rotate',
    headers,
  })
  const forgedServiceToken = (sub: string) => {
    const iat = nowSeconds()
    return {
      iss: auth.app.identity.issuer,
      aud: INTERNAL_AUDIENCE,
      sub,
      jti: randomUUID(),
      iat,
      exp: iat + 300,
    }
  }

  it('users/by-email without a token → 401', async () => {
    await attack(auth, byEmail('email=victim%40example.com'), 401, 'AUTH_UNAUTHENTICATED')
  })

  it("users/by-email with a user's access token → 401", async () => {
    await attack(
      auth,
      byEmail('email=victim%40example.com', bearer(victim.pair.accessToken)),
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })

  it("users/by-email with the auth-service's own token (not a lookup caller) → 403", async () => {
    await attack(
      auth,
      byEmail('email=victim%40example.com', bearer(authServiceToken)),
      403,
      'AUTH_FORBIDDEN',
    )
  })

  it('users/by-email with an alg-none "workspace-service" token → 401', async () => {
    await attack(
      auth,
      byEmail(
        'email=victim%40example.com',
        bearer(unsignedToken({ alg: 'none' }, forgedServiceToken('workspace-service'))),
      ),
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })

  it.each([
    ['email[$ne]=x (an operator object)', 'email[$ne]=x'],
    ['email[$regex]=.* (an operator object)', 'email[$regex]=.*'],
    ['the email twice (an array)', 'email=victim%40example.com&email=other%40example.com'],
    ['__proto__[polluted]=1', 'email=victim%40example.com&__proto__[polluted]=1'],
    ['no email at all', ''],
  ])('users/by-email with %s → 400 AUTH_VALIDATION, not a user', async (_, query) => {
    await attack(auth, byEmail(query, bearer(workspaceServiceToken)), 400, 'AUTH_VALIDATION')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it("users/by-email with a homoglyph of the victim's email → 404", async () => {
    await attack(
      auth,
      byEmail(
        `email=${encodeURIComponent('vi\u0441tim@example.com')}`,
        bearer(workspaceServiceToken),
      ),
      404,
      'AUTH_NOT_FOUND',
    )
  })

  it('users/:id with an operator-looking id → 404; an over-long id → 400', async () => {
    await attack(
      auth,
      {
        method: 'GET',
        url: `/internal/v1/users/${encodeURIComponent('{"$ne":null}')}`,
        headers: bearer(workspaceServiceToken),
      },
      404,
      'AUTH_NOT_FOUND',
    )
    await attack(
      auth,
      {
        method: 'GET',
        url: `/internal/v1/users/${'u'.repeat(65)}`,
        headers: bearer(workspaceServiceToken),
      },
      400,
      'AUTH_VALIDATION',
    )
  })

  it('keys/rotate without a token → 401, no rotation', async () => {
    await attack(auth, rotate(), 401, 'AUTH_UNAUTHENTICATED')
  })

  it("keys/rotate with a user's access token → 401, no rotation", async () => {
    await attack(auth, rotate(bearer(victim.pair.accessToken)), 401, 'AUTH_UNAUTHENTICATED')
  })

  it("keys/rotate with the workspace-service's token → 403, no rotation", async () => {
    await attack(auth, rotate(bearer(workspaceServiceToken)), 403, 'AUTH_FORBIDDEN')
  })

  it('keys/rotate with an alg-none "auth-service" token → 401, no rotation', async () => {
    await attack(
      auth,
      rotate(bearer(unsignedToken({ alg: 'none' }, forgedServiceToken('auth-service')))),
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })

  it('keys/rotate with an HS256 "auth-service" token keyed with the public key → 401', async () => {
    await attack(
      auth,
      rotate(
        bearer(
          signHs256(
            { alg: 'HS256', kid: realJwk.kid },
            forgedServiceToken('auth-service'),
            Buffer.from(realJwk.x ?? '', 'base64url'),
          ),
        ),
      ),
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })

  it('keys/rotate with an attacker-signed "auth-service" token → 401', async () => {
    await attack(
      auth,
      rotate(
        bearer(
          signEd25519(
            { alg: 'EdDSA', kid: attackerJwk.kid, jwk: attackerJwk },
            forgedServiceToken('auth-service'),
            attackerKey.privateKey,
          ),
        ),
      ),
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })

  it("keys/rotate with the auth-service's real token tampered to live a day longer → 401", async () => {
    await attack(
      auth,
      rotate(
        bearer(
          tamperPayload(authServiceToken, (claims) =>
            Object.assign(claims, { exp: nowSeconds() + 86_400 }),
          ),
        ),
      ),
      401,
      'AUTH_UNAUTHENTICATED',
    )
  })
})

// ---------------------------------------------------------------------------------------------
// MFA

describe('MFA', () => {
  let off: SignedInUser
  let on: SignedInUser
  let onSecret: string
  let usedCode: string

  const totpOf = (secret: string) =>
    new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 })

  /** Codes that are wrong for `secret` now and for the neighbouring time steps. */
  function wrongCodes(secret: string, count: number) {
    const totp = totpOf(secret)
    const valid = new Set(
      [-30_000, 0, 30_000].map((offset) => totp.generate({ timestamp: Date.now() + offset })),
    )
    return ['000000', '111111', '222222', '333333', '444444', '555555']
      .filter((code) => !valid.has(code))
      .slice(0, count)
  }

  const mfa = (user: SignedInUser, action: string, body?: unknown): InjectOptions => ({
    method: 'POST',
    url: `/auth/v1/mfa/totp/${action}`,
    headers: bearer(user.pair.accessToken),
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  })

  beforeAll(async () => {
    off = await signUp(auth, 'mfa-off@example.com')
    on = await signUp(auth, 'mfa-on@example.com')
    const setup = await auth.app.inject(mfa(on, 'setup'))
    expect(setup.statusCode, setup.body).toBe(200)
    onSecret = setup.json<{ secret: string }>().secret
    usedCode = totpOf(onSecret).generate()
    const enable = await auth.app.inject(mfa(on, 'enable', { code: usedCode }))
    expect(enable.statusCode, enable.body).toBe(200)
  })

  it('enable without a setup → 409 AUTH_MFA_CONFLICT', async () => {
    await attack(auth, mfa(off, 'enable', { code: '123456' }), 409, 'AUTH_MFA_CONFLICT')
  })

  it('disable when MFA is off → 409 AUTH_MFA_CONFLICT', async () => {
    await attack(auth, mfa(off, 'disable', { code: '123456' }), 409, 'AUTH_MFA_CONFLICT')
  })

  it('enable with a wrong code six times → 401 AUTH_MFA_INVALID each, only the failures counted', async () => {
    const setup = await auth.app.inject(mfa(off, 'setup'))
    expect(setup.statusCode, setup.body).toBe(200)
    const secret = setup.json<{ secret: string }>().secret
    const before = await snapshotState(auth)
    for (const code of wrongCodes(secret, 3)) {
      const response = await auth.app.inject(mfa(off, 'enable', { code }))
      expectErrorBody(response, 401, 'AUTH_MFA_INVALID')
    }
    for (const code of ['abcdef', 'ABCDE-FGHJK', '１２３４５６']) {
      const response = await auth.app.inject(mfa(off, 'enable', { code }))
      expectErrorBody(response, 401, 'AUTH_MFA_INVALID')
    }
    expectOnlyChanged(before, await snapshotState(auth), FIRST_MFA_FAILURE)
  })

  it('setup while MFA is on → 409, the secret is not replaced', async () => {
    await attack(auth, mfa(on, 'setup'), 409, 'AUTH_MFA_CONFLICT')
  })

  it('disable with a wrong code → 401 AUTH_MFA_INVALID, MFA stays on, the failure counted', async () => {
    const [code] = wrongCodes(onSecret, 1)
    await attack(auth, mfa(on, 'disable', { code }), 401, 'AUTH_MFA_INVALID', FIRST_MFA_FAILURE)
  })

  it('disable with the code already used to enable (replay) → 401 AUTH_MFA_INVALID', async () => {
    await attack(
      auth,
      mfa(on, 'disable', { code: usedCode }),
      401,
      'AUTH_MFA_INVALID',
      MFA_FAILURE_COUNTED,
    )
  })

  it('login without a code → 401 AUTH_MFA_REQUIRED, nothing stored', async () => {
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/login',
        payload: { email: on.email, password: on.password },
      },
      401,
      'AUTH_MFA_REQUIRED',
    )
  })

  it('login with a wrong code → 401 AUTH_MFA_INVALID, only the failure counted and audited', async () => {
    const [code] = wrongCodes(onSecret, 1)
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/login',
        payload: { email: on.email, password: on.password, totp: code },
      },
      401,
      'AUTH_MFA_INVALID',
      FAILED_LOGIN_COUNTED,
    )
  })

  it('login replaying the code used to enable → 401 AUTH_MFA_INVALID, only the failure counted', async () => {
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/login',
        payload: { email: on.email, password: on.password, totp: usedCode },
      },
      401,
      'AUTH_MFA_INVALID',
      FAILED_LOGIN_COUNTED,
    )
  })

  it('login with the totp as an operator object → 400 AUTH_VALIDATION', async () => {
    await attack(
      auth,
      {
        method: 'POST',
        url: '/auth/v1/login',
        payload: { email: on.email, password: on.password, totp: { $ne: null } },
      },
      400,
      'AUTH_VALIDATION',
    )
  })
})

describe('nothing leaked into the prototype', () => {
  it('Object.prototype is clean after every pollution attempt', () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('isAdmin')
  })
})
