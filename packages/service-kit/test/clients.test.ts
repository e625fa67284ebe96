import { testMongoUrl, testRedisUrl, uniqueTestName } from '@platform/local-infra/vitest'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { createServiceApp, mongoPlugin, redisPlugin } from '../src/index.js'
import { testApp } from './helpers.js'

describe('the MongoDB and Redis clients', () => {
  it('connect at registration and close with the app', async () => {
    // Closed explicitly: closing is what this test is about.
    const app = await createServiceApp({
      service: 'clients-test',
      errorPrefix: 'GW',
      logLevel: 'silent',
      logPretty: false,
    })
    const dbName = uniqueTestName('service_kit_clients')
    try {
      await app.register(mongoPlugin, { url: testMongoUrl(), dbName })
      await app.register(redisPlugin, { url: testRedisUrl() })
      await app.ready()

      expect(app.mongo.readyState).toBe(1)
      expect(app.mongo.name).toBe(dbName)
      expect(app.redis.status).toBe('ready')
      const key = `${dbName}:ping`
      await app.redis.set(key, 'pong', 'EX', 60)
      expect(await app.redis.get(key)).toBe('pong')
      await app.mongo.collection('probes').insertOne({ key })
      expect(await app.mongo.collection('probes').countDocuments({ key })).toBe(1)
      await app.mongo.dropDatabase()
      await app.redis.del(key)
    } finally {
      await app.close()
    }

    expect(app.redis.status).toBe('end')
    expect(app.mongo.readyState).toBe(0)
  })

  it('has ended the Redis connection by the time app.close() resolves', async () => {
    const app = await createServiceApp({
      service: 'clients-test',
      errorPrefix: 'GW',
      logLevel: 'silent',
      logPretty: false,
    })
    try {
      await app.register(redisPlugin, { url: testRedisUrl() })
      await app.ready()
      expect(await app.redis.ping()).toBe('PONG')
    } finally {
      await app.close()
    }
    expect(app.redis.status).toBe('end')
  })

  it('has closed the MongoDB connection by the time app.close() resolves', async () => {
    const app = await createServiceApp({
      service: 'clients-test',
      errorPrefix: 'GW',
      logLevel: 'silent',
      logPretty: false,
    })
    try {
      await app.register(mongoPlugin, {
        url: testMongoUrl(),
        dbName: uniqueTestName('service_kit_close'),
      })
      await app.ready()
      expect(app.mongo.readyState).toBe(1)
    } finally {
      await app.close()
    }
    expect(app.mongo.readyState).toBe(0)
  })

  it('makes building fail when MongoDB cannot be reached', async () => {
    const app = await testApp()
    const started = performance.now()
    await expect(
      app.register(mongoPlugin, {
        url: 'mongodb://127.0.0.1:1',
        dbName: uniqueTestName('unreachable'),
        serverSelectionTimeoutMS: 500,
      }),
    ).rejects.toThrow(/ECONNREFUSED|Server selection timed out/)
    expect(performance.now() - started).toBeLessThan(10_000)
    expect(app.hasDecorator('mongo')).toBe(false)
  })

  it('makes building fail when Redis cannot be reached', async () => {
    const app = await testApp()
    await expect(
      app.register(redisPlugin, { url: 'redis://127.0.0.1:1', connectTimeoutMs: 500 }),
    ).rejects.toThrow()
    expect(app.hasDecorator('redis')).toBe(false)
  })

  it('refuses to register without the health plugin before it', async () => {
    const bare = Fastify({ logger: false })
    try {
      await expect(bare.register(redisPlugin, { url: testRedisUrl() }).ready()).rejects.toThrow(
        /health/,
      )
    } finally {
      await bare.close()
    }
  })
})
