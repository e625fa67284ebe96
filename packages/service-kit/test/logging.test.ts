import { describe, expect, it } from 'vitest'
import { REDACTED_LOG_PATHS } from '../src/index.js'
import { LogCollector, testApp } from './helpers.js'

const BEARER = 'Bearer eyJhbGciOiJFZERTQSJ9.secret-access-token.signature'
const COOKIE = 'platform_refresh=secret-refresh-token-value'

describe('logging', () => {
  it('redacts authorization and cookie when a route logs the request headers', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'info', logDestination: logs })
    app.get('/echo', async (request) => {
      request.log.info({ headers: request.headers }, 'incoming headers')
      return { ok: true }
    })

    const response = await app.inject({
      method: 'GET',
      url: '/echo',
      headers: { authorization: BEARER, cookie: COOKIE, 'user-agent': 'vitest-agent' },
    })

    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ ok: true })
    const line = logs.lines.find((entry) => entry.msg === 'incoming headers')
    expect(line).toMatchObject({
      level: 30,
      service: 'test-service',
      headers: { authorization: '[Redacted]', cookie: '[Redacted]', 'user-agent': 'vitest-agent' },
    })
    expect(logs.text).not.toContain('secret-access-token')
    expect(logs.text).not.toContain('secret-refresh-token-value')
  })

  it('keeps headers out of a logged req object altogether', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'info', logDestination: logs })
    app.get('/echo', async (request) => {
      request.log.info({ req: request }, 'incoming request')
      return { ok: true }
    })

    const response = await app.inject({
      method: 'GET',
      url: '/echo?page=2',
      headers: { authorization: BEARER, cookie: COOKIE, 'x-api-key': 'secret-api-key' },
    })

    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ ok: true })
    const line = logs.lines.find((entry) => entry.msg === 'incoming request')
    expect(line?.req).toEqual(expect.objectContaining({ method: 'GET', url: '/echo?page=2' }))
    expect(line?.req).not.toHaveProperty('headers')
    expect(logs.text).not.toContain('secret-access-token')
    expect(logs.text).not.toContain('secret-refresh-token-value')
    expect(logs.text).not.toContain('secret-api-key')
  })

  it('never logs request headers on its own', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'trace', logDestination: logs })
    const response = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { authorization: BEARER, cookie: COOKIE },
    })
    expect(response.statusCode).toBe(200)
    expect(logs.lines.length).toBeGreaterThan(0)
    expect(logs.text).not.toContain('secret-access-token')
    expect(logs.text).not.toContain('secret-refresh-token-value')
  })

  it('lists the credential headers among its redacted paths', () => {
    expect(REDACTED_LOG_PATHS).toEqual(
      expect.arrayContaining([
        'req.headers.authorization',
        'headers.authorization',
        'headers.cookie',
      ]),
    )
  })

  it('logs a 500 at level 50 with the error while the client sees none of it', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'info', logDestination: logs })
    app.get('/fault', async () => {
      throw new Error('driver said: auth failed for admin:hunter2@10.0.0.7')
    })

    const response = await app.inject({ method: 'GET', url: '/fault' })

    expect(response.statusCode).toBe(500)
    expect(response.json()).toEqual({
      statusCode: 500,
      code: 'GW_INTERNAL',
      error: 'Internal Server Error',
      message: 'Internal Server Error',
    })
    expect(response.payload).not.toContain('hunter2')
    expect(response.payload).not.toContain('driver said')

    const failure = logs.lines.find((line) => line.level === 50)
    expect(failure).toMatchObject({
      level: 50,
      service: 'test-service',
      requestId: response.headers['x-request-id'],
      msg: 'request failed',
      err: {
        type: 'Error',
        message: 'driver said: auth failed for admin:hunter2@10.0.0.7',
        stack: expect.stringContaining('logging.test.ts'),
      },
    })
  })

  it('logs an own 5xx below error level, since it is an expected condition', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'info', logDestination: logs })
    app.get('/upstream', async () => {
      throw Object.assign(new Error('The workspace-service is not answering'), {
        code: 'GW_UPSTREAM_UNAVAILABLE',
        statusCode: 503,
      })
    })

    const response = await app.inject({ method: 'GET', url: '/upstream' })

    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'GW_UPSTREAM_UNAVAILABLE',
      error: 'Service Unavailable',
      message: 'The workspace-service is not answering',
    })
    expect(logs.lines.filter((line) => line.level >= 50)).toEqual([])
    expect(logs.lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        code: 'GW_UPSTREAM_UNAVAILABLE',
        msg: 'The workspace-service is not answering',
      }),
    )
  })

  it('logs nothing at all at level silent', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'silent', logDestination: logs })
    app.get('/fault', async () => {
      throw new Error('boom')
    })
    const response = await app.inject({ method: 'GET', url: '/fault' })
    expect(response.statusCode).toBe(500)
    expect(response.json()).toMatchObject({ code: 'GW_INTERNAL' })
    expect(logs.raw).toEqual([])
  })
})
