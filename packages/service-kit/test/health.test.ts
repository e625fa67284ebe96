import { setTimeout as sleep } from 'node:timers/promises'
import { testMongoUrl, testRedisUrl, uniqueTestName } from '@platform/local-infra/vitest'
import { ErrorResponseSchema } from '@platform/shared-types'
import Fastify from 'fastify'
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import {
  createServiceApp,
  errorHandlerPlugin,
  healthPlugin,
  mongoPlugin,
  redisPlugin,
  type ServiceApp,
} from '../src/index.js'
import { testApp } from './helpers.js'

/** A service app with this file's own database on the real MongoDB and the real Redis. */
async function appWithClients(): Promise<ServiceApp> {
  const app = await testApp()
  await app.register(mongoPlugin, {
    url: testMongoUrl(),
    dbName: uniqueTestName('service_kit_health'),
  })
  await app.register(redisPlugin, { url: testRedisUrl() })
  return app
}

const never = () => new Promise<void>(() => {})

describe('/healthz', () => {
  it('answers 200 {status: ok} without asking any dependency', async () => {
    const app = await testApp()
    app.readiness.add('broken', async () => {
      throw new Error('down')
    })
    const response = await app.inject({ method: 'GET', url: '/healthz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ok' })
  })

  it('answers only GET', async () => {
    const app = await testApp()
    const response = await app.inject({ method: 'POST', url: '/healthz', payload: {} })
    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject({ statusCode: 404, code: 'GW_NOT_FOUND' })
  })
})

describe('/readyz', () => {
  it('answers 200 with no checks registered', async () => {
    const app = await testApp()
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ready', checks: {} })
  })

  describe('with MongoDB and Redis', () => {
    let app: ServiceApp

    beforeAll(async () => {
      // One app for the describe block: closed in afterAll rather than per test.
      app = await createServiceApp({
        service: 'health-test',
        errorPrefix: 'GW',
        logLevel: 'silent',
        logPretty: false,
      })
      await app.register(mongoPlugin, {
        url: testMongoUrl(),
        dbName: uniqueTestName('service_kit_ready'),
      })
      await app.register(redisPlugin, { url: testRedisUrl() })
      await app.ready()
    })
    afterAll(async () => {
      await app?.close()
    })

    it('answers 200 with every check ok while both answer', async () => {
      const response = await app.inject({ method: 'GET', url: '/readyz' })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ status: 'ready', checks: { mongo: 'ok', redis: 'ok' } })
    })
  })

  it('answers 503 GW_NOT_READY naming redis once its connection is gone', async () => {
    const app = await appWithClients()
    const before = await app.inject({ method: 'GET', url: '/readyz' })
    expect(before.statusCode).toBe(200)

    app.redis.disconnect()
    const response = await app.inject({ method: 'GET', url: '/readyz' })

    expect(response.statusCode).toBe(503)
    const body = response.json()
    expect(body).toEqual({
      statusCode: 503,
      code: 'GW_NOT_READY',
      error: 'Service Unavailable',
      message: 'Not ready: redis failing',
      checks: { mongo: 'ok', redis: 'failing' },
    })
    // The 503 is the one error shape, with the checks on top.
    const { checks: _checks, ...errorFields } = body
    expect(ErrorResponseSchema.strict().parse(errorFields)).toEqual(errorFields)
  })

  it('answers 503 naming mongo once its connection is closed', async () => {
    const app = await appWithClients()
    await app.mongo.close()
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'GW_NOT_READY',
      error: 'Service Unavailable',
      message: 'Not ready: mongo failing',
      checks: { mongo: 'failing', redis: 'ok' },
    })
  })

  it('names every failing check, and keeps the passing ones ok', async () => {
    const app = await testApp()
    app.readiness.add('cache', async () => {})
    app.readiness.add('queue', async () => {
      throw new Error('queue at amqp://guest:guest@10.0.0.9 is down')
    })
    app.readiness.add('search', async () => {
      throw new Error('no route to host')
    })
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'GW_NOT_READY',
      error: 'Service Unavailable',
      message: 'Not ready: queue, search failing',
      checks: { cache: 'ok', queue: 'failing', search: 'failing' },
    })
    expect(response.payload).not.toContain('guest')
  })

  it('fails a check that never answers once checkTimeoutMs has passed', async () => {
    const app = Fastify({ logger: false })
    onTestFinished(async () => {
      await app.close()
    })
    app.setValidatorCompiler(validatorCompiler)
    app.setSerializerCompiler(serializerCompiler)
    await app.register(errorHandlerPlugin, { prefix: 'RT' })
    await app.register(healthPlugin, { prefix: 'RT', checkTimeoutMs: 100 })
    app.readiness.add('fast', async () => {})
    app.readiness.add('hung', never)

    const started = performance.now()
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    const elapsed = performance.now() - started

    expect(response.statusCode).toBe(503)
    expect(response.json()).toEqual({
      statusCode: 503,
      code: 'RT_NOT_READY',
      error: 'Service Unavailable',
      message: 'Not ready: hung failing',
      checks: { fast: 'ok', hung: 'failing' },
    })
    expect(elapsed).toBeGreaterThanOrEqual(90)
    expect(elapsed).toBeLessThan(1500)
  })

  it('passes a slow check that answers within the timeout', async () => {
    const app = Fastify({ logger: false })
    onTestFinished(async () => {
      await app.close()
    })
    app.setValidatorCompiler(validatorCompiler)
    app.setSerializerCompiler(serializerCompiler)
    await app.register(errorHandlerPlugin, { prefix: 'RT' })
    await app.register(healthPlugin, { prefix: 'RT', checkTimeoutMs: 1000 })
    app.readiness.add('slow', () => sleep(50))
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ready', checks: { slow: 'ok' } })
  })

  it('fails a hung check within the default timeout of a service app', async () => {
    const app = await testApp()
    app.readiness.add('hung', never)
    const started = performance.now()
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    expect(performance.now() - started).toBeLessThan(5000)
    expect(response.statusCode).toBe(503)
    expect(response.json()).toMatchObject({
      code: 'GW_NOT_READY',
      checks: { hung: 'failing' },
    })
  })
})
