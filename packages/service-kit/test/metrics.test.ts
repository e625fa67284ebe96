import { describe, expect, it } from 'vitest'
import type { ServiceApp } from '../src/index.js'
import { testApp } from './helpers.js'

async function appWithItems(service: string): Promise<ServiceApp> {
  const app = await testApp({ service })
  app.get('/items/:id', async (request) => ({ id: (request.params as { id: string }).id }))
  return app
}

/** The value of one sample line of `http_requests_total`, or undefined when there is none. */
function requestCount(text: string, labels: Record<string, string>): number | undefined {
  const line = text
    .split('\n')
    .filter((row) => row.startsWith('http_requests_total{'))
    .find((row) =>
      Object.entries(labels).every(([key, value]) => row.includes(`${key}="${value}"`)),
    )
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

describe('/metrics', () => {
  it('serves Prometheus text counting requests by route pattern and service', async () => {
    const app = await appWithItems('catalog-service')
    for (const id of ['item-8f2a91', 'item-8f2a91', 'item-77c0de']) {
      const response = await app.inject({ method: 'GET', url: `/items/${id}` })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ id })
    }

    const response = await app.inject({ method: 'GET', url: '/metrics' })

    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = response.payload
    expect(text).toContain('# TYPE http_requests_total counter')
    expect(text).toContain('http_requests_total{')
    expect(text).toContain('route="/items/:id"')
    expect(text).toContain('service="catalog-service"')
    expect(text).not.toContain('item-8f2a91')
    expect(text).not.toContain('item-77c0de')
    expect(
      requestCount(text, {
        method: 'GET',
        route: '/items/:id',
        status_code: '200',
        service: 'catalog-service',
      }),
    ).toBe(3)
    expect(text).toContain('http_request_duration_seconds_bucket{')
    expect(text).toMatch(/^process_cpu_user_seconds_total\{service="catalog-service"\} /m)
  })

  it('counts unknown routes under one label, never the raw path', async () => {
    const app = await appWithItems('catalog-service')
    const missing = await app.inject({ method: 'GET', url: '/secret-path/user-123?token=abc' })
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'GW_NOT_FOUND' })

    const text = (await app.inject({ method: 'GET', url: '/metrics' })).payload
    expect(text).not.toContain('secret-path')
    expect(text).not.toContain('user-123')
    expect(requestCount(text, { status_code: '404' })).toBe(1)
  })

  it('counts errors with their status code', async () => {
    const app = await appWithItems('catalog-service')
    app.get('/fault', async () => {
      throw new Error('boom')
    })
    const fault = await app.inject({ method: 'GET', url: '/fault' })
    expect(fault.statusCode).toBe(500)
    expect(fault.json()).toMatchObject({ code: 'GW_INTERNAL' })

    const text = (await app.inject({ method: 'GET', url: '/metrics' })).payload
    expect(requestCount(text, { route: '/fault', status_code: '500' })).toBe(1)
  })

  it('keeps the counters of two apps in one process apart', async () => {
    const first = await appWithItems('first-service')
    const second = await appWithItems('second-service')
    for (let i = 0; i < 3; i++) {
      expect((await first.inject({ method: 'GET', url: `/items/${i}` })).statusCode).toBe(200)
    }
    expect((await second.inject({ method: 'GET', url: '/items/x' })).statusCode).toBe(200)

    const firstText = (await first.inject({ method: 'GET', url: '/metrics' })).payload
    const secondText = (await second.inject({ method: 'GET', url: '/metrics' })).payload

    expect(requestCount(firstText, { route: '/items/:id' })).toBe(3)
    expect(requestCount(secondText, { route: '/items/:id' })).toBe(1)
    expect(firstText).toContain('service="first-service"')
    expect(firstText).not.toContain('second-service')
    expect(secondText).toContain('service="second-service"')
    expect(secondText).not.toContain('first-service')
    expect(first.metrics).not.toBe(second.metrics)
  })
})
