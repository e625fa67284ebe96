import { describe, expect, it } from 'vitest'
import { LogCollector, testApp } from './helpers.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('request ids', () => {
  it('gives every reply a fresh x-request-id, success or error', async () => {
    const app = await testApp()
    const ok = await app.inject({ method: 'GET', url: '/healthz' })
    const missing = await app.inject({ method: 'GET', url: '/missing' })
    expect(ok.statusCode).toBe(200)
    expect(ok.headers['x-request-id']).toMatch(UUID)
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'GW_NOT_FOUND' })
    expect(missing.headers['x-request-id']).toMatch(UUID)
    expect(missing.headers['x-request-id']).not.toBe(ok.headers['x-request-id'])
  })

  it.each([
    'gw-7f3a9c1e',
    'b1946ac9-2d4b-4c8e-9f21-0a1b2c3d4e5f',
    'trace:abc.def_123',
    'x'.repeat(128),
  ])('keeps the well-formed incoming id %s', async (incoming) => {
    const app = await testApp()
    const response = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': incoming },
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ok' })
    expect(response.headers['x-request-id']).toBe(incoming)
  })

  it.each([
    ['spaces', 'an id with spaces'],
    ['more than 128 characters', 'x'.repeat(129)],
    ['a newline-free injection attempt', '"},{"level":60,"msg":"forged"'],
    ['a slash', '../../etc/passwd'],
    ['nothing', ''],
  ])('replaces an incoming id with %s by a fresh UUID', async (_label, incoming) => {
    const app = await testApp()
    const response = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': incoming },
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ok' })
    expect(response.headers['x-request-id']).toMatch(UUID)
    expect(response.headers['x-request-id']).not.toBe(incoming)
  })

  it('logs the id it answers with as requestId', async () => {
    const logs = new LogCollector()
    const app = await testApp({ logLevel: 'info', logDestination: logs })
    const response = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': 'gw-trace-1' },
    })
    expect(response.statusCode).toBe(200)
    expect(response.headers['x-request-id']).toBe('gw-trace-1')
    const completed = logs.lines.find((line) => line.msg === 'request completed')
    expect(completed).toMatchObject({ requestId: 'gw-trace-1', service: 'test-service' })
  })
})
