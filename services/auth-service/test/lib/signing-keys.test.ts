import { testMongoUrl, testRedisUrl, uniqueTestName } from '@platform/local-infra/vitest'
import { Redis } from 'ioredis'
import { type JWK, errors as joseErrors } from 'jose'
import mongoose, { type Connection } from 'mongoose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSecretBox } from '../../src/lib/crypto.js'
import {
  createSigningKeyStore,
  type SigningKeyStore,
  type SigningKeyStoreOptions,
} from '../../src/lib/signing-keys.js'
import { TEST_SECRETS } from '../helpers/build.js'

const ROTATION_SECONDS = 1000
const PRE_PUBLISH_SECONDS = 100
const LONGEST_TOKEN_SECONDS = 300
/** signing-keys.ts keeps a retired key published this much longer than the longest token. */
const CLOCK_SKEW_SECONDS = 60

/** The key resolver looks only at the header; the token itself is not needed. */
const NO_TOKEN = { payload: '', signature: '' }

interface KeyDocument {
  _id: string
  status: 'next' | 'active' | 'retired'
  publicJwk: JWK
  sealedPrivateJwk: string
  retiredAt: Date | null
  unpublishAt: Date | null
}

describe('createSigningKeyStore', () => {
  let base: Connection
  let redis: Redis
  const box = createSecretBox(TEST_SECRETS.AUTH_KEY_ENCRYPTION_KEY, 'signing-key')

  beforeAll(async () => {
    base = await mongoose.createConnection(testMongoUrl()).asPromise()
    redis = new Redis(testRedisUrl(), { keyPrefix: `${uniqueTestName('keys')}:` })
  })
  afterAll(async () => {
    await redis.quit()
    await base.close()
  })

  /**
   * A database of the test's own. The stores a test makes on it stand for replicas: each has its
   * own view of the keys. They share one connection because two connections creating the same
   * collection at once can wedge the test MongoDB (under wine), which is not what is under test.
   */
  const freshDatabase = () => {
    const connection = base.useDb(uniqueTestName('keys'), { useCache: false })
    return () => connection
  }
  const storeOn = (connection: Connection, options: Partial<SigningKeyStoreOptions> = {}) =>
    createSigningKeyStore({
      connection,
      redis,
      box,
      rotationSeconds: ROTATION_SECONDS,
      longestTokenSeconds: LONGEST_TOKEN_SECONDS,
      prePublishSeconds: PRE_PUBLISH_SECONDS,
      // Every call reads MongoDB, so an injected clock is seen at once.
      refreshSeconds: 0,
      ...options,
    })
  const keysOf = (connection: Connection) =>
    connection.collection<KeyDocument>('signing_keys').find().toArray()
  const kids = async (store: SigningKeyStore) =>
    (await store.publishedKeys()).map((jwk) => jwk.kid).sort()

  it('keeps the private key sealed', async () => {
    const connection = freshDatabase()()
    const store = storeOn(connection)
    const { kid } = await store.current()
    const [document, ...others] = await keysOf(connection)
    expect(others).toHaveLength(0)
    expect(document).toMatchObject({ _id: kid, status: 'active' })
    expect(document).not.toHaveProperty('d')
    expect(document?.publicJwk).not.toHaveProperty('d')
    expect(document?.publicJwk).toMatchObject({
      kty: 'OKP',
      crv: 'Ed25519',
      kid,
      alg: 'EdDSA',
      use: 'sig',
    })
    expect(document?.sealedPrivateJwk).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/)

    const privateJwk = JSON.parse(box.open(document?.sealedPrivateJwk ?? '')) as JWK
    expect(privateJwk.d).toEqual(expect.any(String))
    expect(JSON.stringify(document)).not.toContain(privateJwk.d)
    expect(await store.publishedKeys()).toEqual([document?.publicJwk])
  })

  it('creates the first key once when five replicas start at once', async () => {
    const replica = freshDatabase()
    // Nothing has built the collection or its indexes yet: the stores race from a bare database.
    const stores = Array.from({ length: 5 }, () => storeOn(replica()))
    const keys = await Promise.all(stores.map((store) => store.current()))
    expect(new Set(keys.map((key) => key.kid)).size).toBe(1)
    const documents = await keysOf(replica())
    expect(documents.filter((document) => document.status === 'active')).toHaveLength(1)
  })

  it('pre-publishes the next key, then rotates to it on schedule', async () => {
    const connection = freshDatabase()()
    const start = Date.now()
    let clock = start
    const at = (seconds: number) => {
      clock = start + seconds * 1000
    }
    const store = storeOn(connection, { now: () => new Date(clock) })
    const { kid: first } = await store.current()

    at(ROTATION_SECONDS - PRE_PUBLISH_SECONDS - 1)
    expect(await store.rotateIfDue()).toBeNull()
    expect(await kids(store)).toEqual([first])

    // In the pre-publish window: verifiers learn the next key before anything is signed with it.
    at(ROTATION_SECONDS - PRE_PUBLISH_SECONDS)
    expect(await store.rotateIfDue()).toBeNull()
    const next = (await keysOf(connection)).find((document) => document.status === 'next')
    expect(next).toBeDefined()
    expect(await kids(store)).toEqual([first, next?._id].sort())
    expect((await store.current()).kid).toBe(first)
    at(ROTATION_SECONDS - 1)
    expect(await store.rotateIfDue()).toBeNull()
    expect(await keysOf(connection)).toHaveLength(2)

    at(ROTATION_SECONDS)
    expect(await store.rotateIfDue()).toEqual({ kid: next?._id, retiredKid: first })
    expect((await store.current()).kid).toBe(next?._id)
    const retired = (await keysOf(connection)).find((document) => document._id === first)
    expect(retired?.status).toBe('retired')
    expect(retired?.retiredAt?.getTime()).toBe(clock)
    expect(retired?.unpublishAt?.getTime()).toBe(
      clock + (LONGEST_TOKEN_SECONDS + CLOCK_SKEW_SECONDS) * 1000,
    )
    expect(await kids(store)).toEqual([first, next?._id].sort())

    // The retired key stays published while tokens it signed can still be alive…
    at(ROTATION_SECONDS + LONGEST_TOKEN_SECONDS + CLOCK_SKEW_SECONDS - 1)
    expect(await kids(store)).toContain(first)
    expect(await store.verificationKey({ alg: 'EdDSA', kid: first }, NO_TOKEN)).toBeDefined()
    // …and leaves the JWKS after that.
    at(ROTATION_SECONDS + LONGEST_TOKEN_SECONDS + CLOCK_SKEW_SECONDS + 1)
    expect(await kids(store)).toEqual([next?._id])
    await expect(
      store.verificationKey({ alg: 'EdDSA', kid: first }, NO_TOKEN),
    ).rejects.toBeInstanceOf(joseErrors.JWKSNoMatchingKey)
  })

  it('leaves exactly one active key when two replicas rotate on demand at once', async () => {
    const replica = freshDatabase()
    const [a, b] = [storeOn(replica()), storeOn(replica())]
    const { kid: first } = await a.current()
    expect((await b.current()).kid).toBe(first)

    const results = await Promise.allSettled([a.rotate(), b.rotate()])
    const rotated = results.flatMap((result) =>
      result.status === 'fulfilled' ? [result.value] : [],
    )
    expect(rotated.length).toBeGreaterThanOrEqual(1)
    const active = (await keysOf(replica())).filter((document) => document.status === 'active')
    expect(active).toHaveLength(1)
    expect(rotated.map((result) => result.kid)).toContain(active[0]?._id)
    expect(active[0]?._id).not.toBe(first)
    expect((await a.current()).kid).toBe(active[0]?._id)
    expect((await b.current()).kid).toBe(active[0]?._id)
  })

  it('leaves exactly one active key when two replicas find the rotation due at once', async () => {
    const replica = freshDatabase()
    let clock = Date.now()
    const now = () => new Date(clock)
    const [a, b] = [storeOn(replica(), { now }), storeOn(replica(), { now })]
    const { kid: first } = await a.current()
    clock += ROTATION_SECONDS * 1000

    const results = await Promise.all([a.rotateIfDue(), b.rotateIfDue()])
    const documents = await keysOf(replica())
    expect(documents.filter((document) => document.status === 'active')).toHaveLength(1)
    const active = documents.find((document) => document.status === 'active')
    expect(active?._id).not.toBe(first)
    expect(results.filter((result) => result !== null)).toEqual([
      { kid: active?._id, retiredKid: first },
    ])
    // A later check by either finds nothing left to do.
    expect(await Promise.all([a.rotateIfDue(), b.rotateIfDue()])).toEqual([null, null])
  })

  it('cannot open a key sealed under another AUTH_KEY_ENCRYPTION_KEY', async () => {
    const replica = freshDatabase()
    await storeOn(replica()).current()
    const [document] = await keysOf(replica())
    const sealed = document?.sealedPrivateJwk ?? ''

    const otherSecret = createSecretBox(
      'another-key-encryption-key-0123456789abcdef',
      'signing-key',
    )
    expect(() => otherSecret.open(sealed)).toThrow()
    // Nor under the right secret for another purpose.
    const otherPurpose = createSecretBox(TEST_SECRETS.AUTH_KEY_ENCRYPTION_KEY, 'totp-secret')
    expect(() => otherPurpose.open(sealed)).toThrow()

    // A replica with the wrong secret refuses to start signing rather than make a key of its own.
    await expect(storeOn(replica(), { box: otherSecret }).current()).rejects.toThrow()
    expect(await keysOf(replica())).toHaveLength(1)
  })
})
