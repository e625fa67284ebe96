import { randomUUID } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { findFreePort } from '@platform/local-infra'
import { PLATFORM_AUDIENCE, TOKEN_SIGNING_ALGORITHM } from '@platform/shared-types'
import { decodeJwt, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { type EchoedRequest, startEchoUpstream } from '../helpers/echo-upstream.js'
import { bearer, startPlatform } from '../helpers/platform.js'

/** Sends `path` exactly as written: inject() and fetch() would resolve its dot segments first. */
function rawRequest(base: string, method: string, path: string, headers: Record<string, string>) {
  const { hostname, port } = new URL(base)
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const outgoing = httpRequest({ host: hostname, port, method, path, headers }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        body += chunk
      })
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
    })
    outgoing.on('error', reject)
    outgoing.end('{}')
  })
}

/** The real auth-service behind the gateway, and an echo server standing in for `/v1`. */
async function platformWithEcho(gatewayEnv: NodeJS.ProcessEnv = {}) {
  const echo = await startEchoUpstream('workspace-service')
  const platform = await startPlatform({ workspaceProxyUrl: echo.url, gatewayEnv })
  const alice = await platform.user('alice')
  return { ...platform, echo, alice }
}

describe('routing to the services', () => {
  it('sends /auth/v1 and /.well-known to the auth-service', async () => {
    const { gateway, alice } = await platformWithEcho()
    const me = await gateway.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: bearer(alice.token),
    })
    expect(me.statusCode).toBe(200)
    expect(me.json()).toMatchObject({ user: { id: alice.id, email: alice.email } })
    const jwks = await gateway.inject({ method: 'GET', url: '/.well-known/jwks.json' })
    expect(jwks.statusCode).toBe(200)
    expect(jwks.json<{ keys: unknown[] }>().keys.length).toBeGreaterThan(0)
  })

  it('sends /v1 to the workspace-service with its path and query unchanged', async () => {
    const { gateway, alice, echo } = await platformWithEcho()
    const url = '/v1/workspaces?limit=5&cursor=abc'
    const response = await gateway.inject({ method: 'GET', url, headers: bearer(alice.token) })
    expect(response.statusCode).toBe(200)
    expect(response.json<EchoedRequest>()).toMatchObject({ method: 'GET', url })
    expect(echo.received).toHaveLength(1)
  })

  it('streams a request body through byte for byte, whatever its type', async () => {
    const { gateway, alice, echo } = await platformWithEcho()
    const body = '{"name":"Research",  "odd": "spacing kept"}'
    const response = await gateway.inject({
      method: 'POST',
      url: '/v1/workspaces',
      headers: { ...bearer(alice.token), 'content-type': 'application/json' },
      payload: body,
    })
    expect(response.statusCode).toBe(200)
    expect(echo.received.at(-1)?.body).toBe(body)

    const text = await gateway.inject({
      method: 'PUT',
      url: '/v1/workspaces/w1/notes',
      headers: { ...bearer(alice.token), 'content-type': 'text/plain' },
      payload: 'not json at all {',
    })
    expect(text.statusCode).toBe(200)
    expect(echo.received.at(-1)?.body).toBe('not json at all {')
  })

  it('passes an upstream error through unchanged, so its code names the service', async () => {
    const { gateway, alice } = await platformWithEcho()
    const response = await gateway.inject({
      method: 'POST',
      url: '/v1/conflict',
      headers: bearer(alice.token),
      payload: {},
    })
    expect(response.statusCode).toBe(409)
    expect(response.json()).toEqual({
      statusCode: 409,
      code: 'WSP_CONFLICT',
      error: 'Conflict',
      message: 'Already a member',
    })
  })

  it('forwards the platform token unchanged and sets the forwarding headers itself', async () => {
    const { gateway, alice, echo } = await platformWithEcho()
    const response = await gateway.inject({
      method: 'GET',
      url: '/v1/workspaces',
      remoteAddress: '203.0.113.7',
      headers: {
        ...bearer(alice.token),
        'x-forwarded-for': '10.0.0.1',
        'x-forwarded-host': 'evil.example',
        'x-tenant-id': 'tenant-b',
        'x-user-id': 'someone-else',
        'x-librechat-user-id': '0123456789abcdef01234567',
        forwarded: 'for=10.0.0.1',
        'x-request-id': 'trace-123',
      },
    })
    expect(response.statusCode).toBe(200)
    const forwarded = echo.received.at(-1)?.headers ?? {}
    expect(forwarded.authorization).toBe(`Bearer ${alice.token}`)
    expect(forwarded['x-forwarded-for']).toBe('203.0.113.7')
    expect(forwarded['x-request-id']).toBe('trace-123')
    for (const stripped of [
      'x-forwarded-host',
      'x-tenant-id',
      'x-user-id',
      'x-librechat-user-id',
      'forwarded',
    ])
      expect(forwarded[stripped], stripped).toBeUndefined()
    expect(response.headers['x-request-id']).toBe('trace-123')
  })
})

describe('the token at the door', () => {
  it('lets the public routes through without a token', async () => {
    const { gateway } = await platformWithEcho()
    const login = await gateway.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: 'nobody@example.com', password: 'wrong password here' },
    })
    expect(login.statusCode).toBe(401)
    expect(login.json()).toMatchObject({ code: 'AUTH_INVALID_CREDENTIALS' })
    const discovery = await gateway.inject({
      method: 'GET',
      url: '/.well-known/openid-configuration',
    })
    expect(discovery.statusCode).toBe(200)
  })

  it.each([
    ['GET', '/v1/workspaces'],
    ['POST', '/v1/tenants'],
    ['GET', '/auth/v1/me'],
    ['GET', '/auth/v1/sessions'],
    ['POST', '/auth/v1/token/switch'],
    ['GET', '/dev/v1/projects'],
    ['GET', '/api/models'],
    ['POST', '/api/agents/chat/oai'],
  ] as const)(
    'refuses %s %s without a token, before any upstream hears of it',
    async (method, url) => {
      const { gateway, echo } = await platformWithEcho()
      const response = await gateway.inject({
        method,
        url,
        payload: method === 'POST' ? {} : undefined,
      })
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject({ statusCode: 401, code: 'GW_UNAUTHENTICATED' })
      expect(echo.received).toHaveLength(0)
    },
  )

  it.each([
    ['a malformed token', 'not-a-jwt'],
    ['a token signed by someone else', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'],
  ])('refuses %s with 401 GW_UNAUTHENTICATED', async (_label, token) => {
    const { gateway, echo } = await platformWithEcho()
    const response = await gateway.inject({
      method: 'GET',
      url: '/v1/workspaces',
      headers: bearer(token),
    })
    expect(response.statusCode).toBe(401)
    expect(response.json()).toMatchObject({ code: 'GW_UNAUTHENTICATED' })
    expect(echo.received).toHaveLength(0)
  })

  it('refuses an expired token signed with the real key, with 401 GW_UNAUTHENTICATED', async () => {
    const { gateway, echo, auth, alice } = await platformWithEcho()
    const key = await auth.identity.keys.current()
    const signed = (issuedAt: number) =>
      new SignJWT({ sid: randomUUID() })
        .setProtectedHeader({ alg: TOKEN_SIGNING_ALGORITHM, kid: key.kid, typ: 'JWT' })
        .setIssuer(String(decodeJwt(alice.token).iss))
        .setAudience(PLATFORM_AUDIENCE)
        .setSubject(alice.id)
        .setJti(randomUUID())
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + 900)
        .sign(key.privateKey)
    const now = Math.floor(Date.now() / 1000)
    const call = async (token: string) =>
      gateway.inject({ method: 'GET', url: '/v1/workspaces', headers: bearer(token) })

    const expired = await call(await signed(now - 3600))
    expect(expired.statusCode).toBe(401)
    expect(expired.json()).toMatchObject({ code: 'GW_UNAUTHENTICATED' })
    expect(echo.received).toHaveLength(0)
    // The same token, still valid: only its expiry was refused.
    expect((await call(await signed(now))).statusCode).toBe(200)
    expect(echo.received).toHaveLength(1)
  })

  it('refuses a signed-out session at once with 401 GW_TOKEN_REVOKED', async () => {
    const { gateway, echo } = await platformWithEcho()
    const email = `bob-${Date.now()}@example.com`
    await gateway.inject({
      method: 'POST',
      url: '/auth/v1/register',
      payload: { email, password: 'correct horse battery staple', name: 'Bob' },
    })
    const login = await gateway.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email, password: 'correct horse battery staple' },
    })
    const { accessToken } = login.json<{ accessToken: string }>()
    expect(
      (await gateway.inject({ method: 'GET', url: '/v1/workspaces', headers: bearer(accessToken) }))
        .statusCode,
    ).toBe(200)
    const logout = await gateway.inject({
      method: 'POST',
      url: '/auth/v1/logout',
      headers: bearer(accessToken),
    })
    expect(logout.statusCode).toBe(204)
    const after = await gateway.inject({
      method: 'GET',
      url: '/v1/workspaces',
      headers: bearer(accessToken),
    })
    expect(after.statusCode).toBe(401)
    expect(after.json()).toMatchObject({ code: 'GW_TOKEN_REVOKED' })
    expect(echo.received).toHaveLength(1)
  })
})

describe('upstreams that are missing, down or slow', () => {
  it('answers 503 GW_UPSTREAM_UNAVAILABLE for the code-runtime when it is not configured', async () => {
    const { gateway, alice } = await platformWithEcho()
    const response = await gateway.inject({
      method: 'GET',
      url: '/dev/v1/projects',
      headers: bearer(alice.token),
    })
    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'GW_UPSTREAM_UNAVAILABLE',
      error: 'Service Unavailable',
      message: 'The code-runtime is not configured on this gateway',
    })
  })

  it('answers /api and the web UI 503 GW_LIBRECHAT_NOT_CONFIGURED without LibreChat settings', async () => {
    const { gateway, alice } = await platformWithEcho()
    for (const [url, headers] of [
      ['/api/models', bearer(alice.token)],
      ['/', {}],
      ['/c/new', {}],
    ] as const) {
      const response = await gateway.inject({ method: 'GET', url, headers })
      expect(response.statusCode, url).toBe(503)
      expect(response.json()).toMatchObject({ code: 'GW_LIBRECHAT_NOT_CONFIGURED' })
    }
  })

  it('answers 503 GW_UPSTREAM_UNAVAILABLE in its own shape when the service is down', async () => {
    const closedPort = await findFreePort()
    const platform = await startPlatform({ workspaceProxyUrl: `http://127.0.0.1:${closedPort}` })
    const alice = await platform.user('alice')
    const response = await platform.gateway.inject({
      method: 'GET',
      url: '/v1/workspaces',
      headers: bearer(alice.token),
    })
    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'GW_UPSTREAM_UNAVAILABLE',
      error: 'Service Unavailable',
      message: 'The workspace-service is not answering; try again shortly',
    })
  })

  it('answers 504 GW_UPSTREAM_TIMEOUT when the service does not answer in time', async () => {
    const { gateway, alice } = await platformWithEcho({ UPSTREAM_TIMEOUT_MS: '300' })
    const response = await gateway.inject({
      method: 'GET',
      url: '/v1/slow',
      headers: bearer(alice.token),
    })
    expect(response.statusCode).toBe(504)
    expect(response.json()).toMatchObject({ statusCode: 504, code: 'GW_UPSTREAM_TIMEOUT' })
  })
})

describe('what the gateway never routes', () => {
  it.each([
    '/internal',
    '/internal/v1/memberships?userId=u1',
    '/internal/v1/service-token',
    '/llm/oai/v1/chat/completions',
    '/mcp/github',
    '/API/agents/chat/oai',
    '/Internal/v1/usage',
    '/V1/workspaces',
  ])('answers %s 404 GW_NOT_FOUND, with or without a token', async (url) => {
    const { gateway, alice, echo } = await platformWithEcho()
    for (const method of ['GET', 'POST'] as const)
      for (const headers of [{}, bearer(alice.token)]) {
        const response = await gateway.inject({ method, url, headers })
        expect(response.statusCode, `${method} ${url}`).toBe(404)
        expect(response.json()).toMatchObject({ statusCode: 404, code: 'GW_NOT_FOUND' })
      }
    expect(echo.received).toHaveLength(0)
  })

  it.each([
    '/auth/v1/../../internal/v1/service-token',
    '/v1/%2e%2e/internal/v1/usage',
    '/v1/..%2finternal/v1/usage',
    '/api/../v1/workspaces',
    '/api/%2E%2E/v1/workspaces',
    '/v1//workspaces',
    '//v1/workspaces',
    '/v1/workspaces/%2F..',
    '/v1\\..\\internal',
    '/.well-known/../internal/v1/keys/rotate',
    '/v1/workspaces/.',
    // The router would decode these to another route than the upstream's raw match.
    '/api/agents/chat/%61bort',
    '/api/agents/chat/%41BORT',
    '/v1/%77orkspaces',
    '/api/agents%2Dchat',
    '/api/%7Econfig',
  ])('refuses the non-canonical path %s with 400 before routing it', async (path) => {
    const { gatewayUrl, alice, echo } = await platformWithEcho()
    for (const headers of [{}, bearer(alice.token)]) {
      const response = await rawRequest(gatewayUrl, 'POST', path, {
        ...headers,
        'content-type': 'application/json',
      })
      expect(response.status, path).toBe(400)
      expect(JSON.parse(response.body)).toMatchObject({ statusCode: 400, code: 'GW_VALIDATION' })
    }
    expect(echo.received).toHaveLength(0)
  })

  it('answers an unknown route 404 in the error shape', async () => {
    const { gateway, alice } = await platformWithEcho()
    const response = await gateway.inject({
      method: 'POST',
      url: '/nowhere?x=1',
      headers: bearer(alice.token),
    })
    expect(response.statusCode).toBe(404)
    expect(response.json()).toEqual({
      statusCode: 404,
      code: 'GW_NOT_FOUND',
      error: 'Not Found',
      message: 'Route POST /nowhere not found',
    })
  })
})

describe('health', () => {
  it('is ready when its MongoDB and Redis answer', async () => {
    const { gateway } = await platformWithEcho()
    const response = await gateway.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ready', checks: { mongo: 'ok', redis: 'ok' } })
  })
})
