import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import mongoose, { type Connection } from 'mongoose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPLICA_SET_NAME } from '../src/index.js'
import { testMongoUrl, testRedisUrl, uniqueTestName } from '../src/vitest.js'

// These tests prove the servers every other test uses are the real thing, not emulators.
describe('the MongoDB tests run against', () => {
  let connection: Connection

  beforeAll(async () => {
    connection = await mongoose
      .createConnection(testMongoUrl(), { dbName: uniqueTestName('real_mongo') })
      .asPromise()
  })
  afterAll(async () => {
    await connection.dropDatabase()
    await connection.close()
  })

  it('is MongoDB 7 running as the replica set rs0', async () => {
    const admin = connection.db?.admin()
    const buildInfo = await admin?.command({ buildInfo: 1 })
    const hello = await admin?.command({ hello: 1 })
    expect(buildInfo?.version).toMatch(/^7\.\d+\.\d+$/)
    expect(hello?.setName).toBe(REPLICA_SET_NAME)
    expect(hello?.isWritablePrimary).toBe(true)
  })

  it('rejects a duplicate key with the server error E11000', async () => {
    const Account = connection.model(
      'Account',
      new mongoose.Schema({ email: { type: String, unique: true } }),
    )
    await Account.init()
    await Account.create({ email: 'a@example.com' })
    const duplicate = await Account.create({ email: 'a@example.com' }).catch((error) => error)
    expect(duplicate).toBeInstanceOf(mongoose.mongo.MongoServerError)
    expect(duplicate.code).toBe(11000)
    expect(await Account.countDocuments()).toBe(1)
  })

  it('removes a document when its TTL index says it expired', async () => {
    const admin = connection.db?.admin()
    if (admin === undefined) throw new Error('not connected')
    const { ttlMonitorSleepSecs } = (await admin.command({
      getParameter: 1,
      ttlMonitorSleepSecs: 1,
    })) as { ttlMonitorSleepSecs: number }
    const sessions = connection.collection('sessions')
    await sessions.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 })
    await sessions.insertMany([
      { name: 'expired', expiresAt: new Date(Date.now() - 1000) },
      { name: 'alive', expiresAt: new Date(Date.now() + 3_600_000) },
    ])
    // The TTL monitor sweeps every ttlMonitorSleepSecs; three sweeps are plenty.
    const deadline = Date.now() + Math.max(3, ttlMonitorSleepSecs * 3) * 1000 + 5000
    while (Date.now() < deadline && (await sessions.countDocuments({ name: 'expired' })) > 0) {
      await sleep(250)
    }
    expect(await sessions.countDocuments({ name: 'expired' })).toBe(0)
    expect(await sessions.countDocuments({ name: 'alive' })).toBe(1)
  }, 120_000)

  it('rolls a transaction back and commits another', async () => {
    const ledger = connection.collection('ledger')
    await ledger.insertOne({ _id: 'seed' as unknown as mongoose.mongo.ObjectId })
    const session = await connection.startSession()
    try {
      const failure = await session
        .withTransaction(async () => {
          await ledger.insertOne({ entry: 'first' }, { session })
          await ledger.insertOne({ entry: 'second' }, { session })
          throw new Error('the second write disagrees')
        })
        .catch((error: Error) => error)
      expect(failure).toBeInstanceOf(Error)
      expect(await ledger.countDocuments({ entry: { $exists: true } })).toBe(0)

      await session.withTransaction(async () => {
        await ledger.insertOne({ entry: 'kept' }, { session })
      })
      expect(await ledger.countDocuments({ entry: 'kept' })).toBe(1)
    } finally {
      await session.endSession()
    }
  })

  it('sums 50 concurrent $inc writers exactly', async () => {
    const counters = connection.collection<{ _id: string; value: number }>('counters')
    await counters.insertOne({ _id: 'tokens', value: 0 })
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        counters.updateOne({ _id: 'tokens' }, { $inc: { value: i + 1 } }),
      ),
    )
    const counter = await counters.findOne({ _id: 'tokens' })
    expect(counter?.value).toBe((50 * 51) / 2)
  })
})

describe('the Redis tests run against', () => {
  let redis: Redis
  const prefix = uniqueTestName('real_redis')

  beforeAll(() => {
    redis = new Redis(testRedisUrl())
  })
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })

  it('is a real Redis server that reports its version', async () => {
    const info = await redis.info('server')
    expect(info).toMatch(/^redis_version:\d+\.\d+\.\d+\r?$/m)
    expect(info).toMatch(/^process_id:\d+\r?$/m)
  })

  it('runs a Lua script atomically', async () => {
    const key = `${prefix}:budget`
    const reserve = `
      local used = redis.call('INCRBY', KEYS[1], ARGV[1])
      if used > tonumber(ARGV[2]) then
        redis.call('DECRBY', KEYS[1], ARGV[1])
        return -1
      end
      return used`
    const results = await Promise.all(
      Array.from({ length: 20 }, () => redis.eval(reserve, 1, key, 10, 150)),
    )
    expect(results.filter((r) => r === -1)).toHaveLength(5)
    expect(await redis.get(key)).toBe('150')
  })
})
