import { findFreePort } from '@platform/local-infra'
import { describe, expect, it } from 'vitest'
import { buildTestGateway } from '../helpers/build.js'
import { type EchoedRequest, startEchoUpstream } from '../helpers/echo-upstream.js'

async function gatewayWithUpstreams(env: NodeJS.ProcessEnv = {}) {
  const auth = await startEchoUpstream('auth-service')
  const workspace = await startEchoUpstream('workspace-service')
  const gateway = await buildTestGateway({
    AUTH_SERVICE_URL: auth.url,
    WORKSPACE_SERVICE_URL: workspace.url,
    ...env,
  })
  return { gateway, auth, workspace }
}

describe('routing to the services', () => {
  it.each([
    ['/auth/v1/me', 'auth-service'],
    ['/.well-known/jwks.json', 'auth-service'],
    ['/v1/workspaces?limit=5&cursor=abc', 'workspace-service'],
  ])('sends %s to the %s with its path and query unchanged', async (url, service) => {
    const { gateway } = await gatewayWithUpstreams()
    const response = await gateway.inject({ method: 'GET', url })
    expect(response.statusCode).toBe(200)
    expect(response.json<EchoedRequest>()).toMatchObject({ service, method: 'GET', url })
  })

  it('streams a request body through byte for byte, whatever its type', async () => {
    const { gateway, workspace } = await gatewayWithUpstreams()
    const body = '{"name":"Research",  "odd": "spacing kept"}'
    const response = await gateway.inject({
      method: 'POST',
      url: '/v1/workspaces',
      headers: { 'content-type': 'application/json' },
      payload: body,
    })
    expect(response.statusCode).toBe(200)
    expect(workspace.received.at(-1)?.body).toBe(body)

    const text = await gateway.inject({
      method: 'PUT',
      url: '/v1/workspaces/w1/notes',
      headers: { 'content-type': 'text/plain' },
      payload: 'not json at all {',
    })
    expect(text.statusCode).toBe(200)
    expect(workspace.received.at(-1)?.body).toBe('not json at all {')
  })

  it('passes an upstream error through unchanged, so its code names the service', async () => {
    const { gateway } = await gatewayWithUpstreams()
    const response = await gateway.inject({ method: 'POST', url: '/v1/conflict', payload: {} })
    expect(response.statusCode).toBe(409)
    expect(response.json()).toEqual({
      statusCode: 409,
      code: 'WSP_CONFLICT',
      error: 'Conflict',
      message: 'Already a member',
    })
  })

  it('forwards the bearer token unchanged and sets forwarding headers itself', async () => {
    const { gateway, auth } = await gatewayWithUpstreams()
    const response = await gateway.inject({
      method: 'GET',
      url: '/auth/v1/sessions',
      remoteAddress: '203.0.113.7',
      headers: {
        authorization: 'Bearer header.payload.signature',
        'x-forwarded-for': '10.0.0.1',
        'x-forwarded-host': 'evil.example',
        'x-tenant-id': 'tenant-b',
        'x-user-id': 'someone-else',
        forwarded: 'for=10.0.0.1',
        'x-request-id': 'trace-123',
      },
    })
    expect(response.statusCode).toBe(200)
    const forwarded = auth.received.at(-1)?.headers ?? {}
    expect(forwarded.authorization).toBe('Bearer header.payload.signature')
    expect(forwarded['x-forwarded-for']).toBe('203.0.113.7')
    expect(forwarded['x-request-id']).toBe('trace-123')
    expect(forwarded['x-forwarded-host']).toBeUndefined()
    expect(forwarded['x-tenant-id']).toBeUndefined()
    expect(forwarded['x-user-id']).toBeUndefined()
    expect(forwarded.forwarded).toBeUndefined()
    expect(response.headers['x-request-id']).toBe('trace-123')
  })
})

describe('upstreams that are missing, down or slow', () => {
  it.each([
    ['/auth/v1/login', 'POST', 'auth-service'],
    ['/.well-known/openid-configuration', 'GET', 'auth-service'],
    ['/v1/tenants', 'POST', 'workspace-service'],
    ['/dev/v1/projects', 'GET', 'code-runtime'],
  ])(
    'answers %s 503 GW_UPSTREAM_UNAVAILABLE when its service is not configured',
    async (url, method, service) => {
      const gateway = await buildTestGateway()
      const response = await gateway.inject({ method: method as 'GET' | 'POST', url })
      expect(response.statusCode).toBe(503)
      expect(response.json()).toEqual({
        statusCode: 503,
        code: 'GW_UPSTREAM_UNAVAILABLE',
        error: 'Service Unavailable',
        message: `The ${service} is not configured on this gateway`,
      })
    },
  )

  it('answers 503 GW_UPSTREAM_UNAVAILABLE in its own shape when the service is down', async () => {
    const closedPort = await findFreePort()
    const gateway = await buildTestGateway({
      WORKSPACE_SERVICE_URL: `http://127.0.0.1:${closedPort}`,
    })
    const response = await gateway.inject({ method: 'GET', url: '/v1/workspaces' })
    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'GW_UPSTREAM_UNAVAILABLE',
      error: 'Service Unavailable',
      message: 'The workspace-service is not answering; try again shortly',
    })
  })

  it('answers 504 GW_UPSTREAM_TIMEOUT when the service does not answer in time', async () => {
    const { gateway } = await gatewayWithUpstreams({ UPSTREAM_TIMEOUT_MS: '300' })
    const response = await gateway.inject({ method: 'GET', url: '/v1/slow' })
    expect(response.statusCode).toBe(504)
    expect(response.json()).toMatchObject({ statusCode: 504, code: 'GW_UPSTREAM_TIMEOUT' })
  })
})

describe('what the gateway never routes', () => {
  it.each(['/internal', '/internal/v1/memberships?userId=u1', '/internal/v1/service-token'])(
    'answers %s 404 GW_NOT_FOUND',
    async (url) => {
      const { gateway, auth, workspace } = await gatewayWithUpstreams()
      for (const method of ['GET', 'POST'] as const) {
        const response = await gateway.inject({ method, url })
        expect(response.statusCode).toBe(404)
        expect(response.json()).toMatchObject({ statusCode: 404, code: 'GW_NOT_FOUND' })
      }
      expect([...auth.received, ...workspace.received]).toHaveLength(0)
    },
  )

  it('never lets dot segments smuggle a request into /internal upstream', async () => {
    const { gateway, auth, workspace } = await gatewayWithUpstreams()
    for (const url of [
      '/auth/v1/../../internal/v1/service-token',
      '/v1/%2e%2e/internal/v1/usage',
      '/v1/..%2finternal/v1/usage',
    ]) {
      await gateway.inject({ method: 'POST', url, payload: {} })
    }
    const reached = [...auth.received, ...workspace.received].map((request) => request.url)
    for (const path of reached) expect(path.startsWith('/internal')).toBe(false)
  })

  it('answers an unknown route 404 in the error shape', async () => {
    const gateway = await buildTestGateway()
    const response = await gateway.inject({ method: 'GET', url: '/nowhere?x=1' })
    expect(response.statusCode).toBe(404)
    expect(response.json()).toEqual({
      statusCode: 404,
      code: 'GW_NOT_FOUND',
      error: 'Not Found',
      message: 'Route GET /nowhere not found',
    })
  })
})

describe('health', () => {
  it('is ready when its MongoDB and Redis answer', async () => {
    const gateway = await buildTestGateway()
    const response = await gateway.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ready', checks: { mongo: 'ok', redis: 'ok' } })
  })
})
