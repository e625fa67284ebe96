import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { testRedisUrl } from '@platform/local-infra/vitest'
import { revokedSessionKey } from '@platform/shared-types'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest'
import { createRevocationWatch, type RevocationWatch } from '../src/index.js'

let admin: Redis

beforeAll(() => {
  admin = new Redis(testRedisUrl())
})

afterAll(async () => {
  await admin?.quit()
})

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(5)
  }
}

/** A service client with a key prefix of its own, its watch, and a count of its EXISTS calls. */
async function watched(options: { maxAgeMs?: number } = {}) {
  const keyPrefix = `test-${randomUUID()}:`
  const redis = new Redis(testRedisUrl(), { keyPrefix })
  const exists = vi.spyOn(redis, 'exists')
  const watch = createRevocationWatch({ redis, ...options })
  onTestFinished(async () => {
    watch.close()
    await redis.quit()
  })
  await until('the watch is live', () => watch.live)
  const revoke = (sessionId: string) =>
    admin.set(`${keyPrefix}${revokedSessionKey(sessionId)}`, '1', 'EX', 60)
  const unrevoke = (sessionId: string) => admin.del(`${keyPrefix}${revokedSessionKey(sessionId)}`)
  const cutWatch = async () => {
    const clients = String(await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))
    const mine = clients
      .split('\n')
      .filter((line) => line.includes(`name=revocation-watch:${keyPrefix} `))
      .map((line) => /\bid=(\d+)/.exec(line)?.[1])
    expect(mine).toHaveLength(1)
    await admin.call('CLIENT', 'KILL', 'ID', String(mine[0]))
  }
  return { watch, exists, revoke, unrevoke, cutWatch }
}

const checks = async (watch: RevocationWatch, sessionId: string, times: number) => {
  const answers = []
  for (let i = 0; i < times; i++) answers.push(await watch.isRevoked(sessionId))
  return answers
}

describe('createRevocationWatch', () => {
  it('asks Redis once per session, then answers from memory', async () => {
    const { watch, exists } = await watched()
    const sessionId = randomUUID()
    expect(await checks(watch, sessionId, 50)).toEqual(Array(50).fill(false))
    expect(exists).toHaveBeenCalledTimes(1)
    expect(await watch.isRevoked(randomUUID())).toBe(false)
    expect(exists).toHaveBeenCalledTimes(2)
  })

  it('learns a revocation as soon as it is written, from the invalidation', async () => {
    const { watch, exists, revoke } = await watched()
    const sessionId = randomUUID()
    const bystander = randomUUID()
    expect(await watch.isRevoked(sessionId)).toBe(false)
    expect(await watch.isRevoked(bystander)).toBe(false)
    await revoke(sessionId)
    await until('the revocation is seen', () => watch.isRevoked(sessionId), 1000)
    // Only the revoked session's answer was dropped; the bystander is still answered from memory.
    const callsAfterRevocation = exists.mock.calls.length
    expect(await checks(watch, bystander, 5)).toEqual(Array(5).fill(false))
    expect(await checks(watch, sessionId, 5)).toEqual(Array(5).fill(true))
    expect(exists).toHaveBeenCalledTimes(callsAfterRevocation)
  })

  it('sees a revocation lifted (a key deleted) too', async () => {
    const { watch, revoke, unrevoke } = await watched()
    const sessionId = randomUUID()
    await revoke(sessionId)
    expect(await watch.isRevoked(sessionId)).toBe(true)
    await unrevoke(sessionId)
    await until('the lifted revocation is seen', async () => !(await watch.isRevoked(sessionId)))
  })

  it('asks Redis for every check while its connection is lost, and watches again after', async () => {
    const { watch, exists, revoke, cutWatch } = await watched()
    const sessionId = randomUUID()
    expect(await watch.isRevoked(sessionId)).toBe(false)
    await cutWatch()
    await until('the watch notices', () => !watch.live)
    // While nothing watches, a revocation must still be seen at once: memory is not used.
    await revoke(sessionId)
    expect(await watch.isRevoked(sessionId)).toBe(true)
    await until('the watch is back', () => watch.live)
    const other = randomUUID()
    const before = exists.mock.calls.length
    expect(await checks(watch, other, 10)).toEqual(Array(10).fill(false))
    expect(exists).toHaveBeenCalledTimes(before + 1)
    expect(await watch.isRevoked(sessionId)).toBe(true)
  })

  it('asks again once an answer is older than maxAgeMs', async () => {
    const { watch, exists } = await watched({ maxAgeMs: 50 })
    const sessionId = randomUUID()
    await watch.isRevoked(sessionId)
    await watch.isRevoked(sessionId)
    expect(exists).toHaveBeenCalledTimes(1)
    await sleep(80)
    await watch.isRevoked(sessionId)
    expect(exists).toHaveBeenCalledTimes(2)
  })

  it('fails the check (callers fail closed) when Redis cannot be asked', async () => {
    const redis = new Redis({
      port: 1,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      connectTimeout: 500,
    })
    redis.on('error', () => undefined)
    const watch = createRevocationWatch({ redis })
    onTestFinished(() => {
      watch.close()
      redis.disconnect()
    })
    expect(watch.live).toBe(false)
    await expect(watch.isRevoked(randomUUID())).rejects.toThrow()
  })
})
