import { randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { createServer as createTcpServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { testRedisUrl } from '@platform/local-infra/vitest'
import {
  INTERNAL_AUDIENCE,
  PLATFORM_AUDIENCE,
  revokedSessionKey,
  TOKEN_SIGNING_ALGORITHM,
} from '@platform/shared-types'
import { Redis, type RedisOptions } from 'ioredis'
import {
  base64url,
  CompactSign,
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  type JWTVerifyGetKey,
  SignJWT,
} from 'jose'
import { afterAll, assert, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import {
  bearerToken,
  createTokenVerifier,
  RevocationCheckUnavailableError,
  TokenRejectedError,
  type TokenRejection,
  type TokenVerifier,
  type TokenVerifierOptions,
} from '../src/index.js'

const ISSUER = 'https://platform.test'

interface TestKey {
  kid: string
  privateKey: CryptoKey
  publicKey: CryptoKey
  publicJwk: JWK
}

async function newEd25519Key(kid = `kid-${randomUUID()}`): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' })
  const publicJwk = {
    ...(await exportJWK(publicKey)),
    kid,
    alg: TOKEN_SIGNING_ALGORITHM,
    use: 'sig',
  }
  return { kid, privateKey, publicKey, publicJwk }
}

const nowSec = () => Math.floor(Date.now() / 1000)

/** A platform token's claims; an override of `undefined` leaves that claim out. */
function platformClaims(overrides: JWTPayload = {}): JWTPayload {
  const iat = nowSec()
  return {
    iss: ISSUER,
    aud: PLATFORM_AUDIENCE,
    sub: 'user-1',
    sid: `sid-${randomUUID()}`,
    jti: randomUUID(),
    iat,
    exp: iat + 300,
    ...overrides,
  }
}

function serviceClaims(overrides: JWTPayload = {}): JWTPayload {
  const iat = nowSec()
  return {
    iss: ISSUER,
    aud: INTERNAL_AUDIENCE,
    sub: 'workspace-service',
    jti: randomUUID(),
    iat,
    exp: iat + 60,
    ...overrides,
  }
}

function sign(
  key: Pick<TestKey, 'kid' | 'privateKey'>,
  claims: JWTPayload,
  header: Partial<JWTHeaderParameters> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: TOKEN_SIGNING_ALGORITHM, kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey)
}

const encodeJson = (value: unknown) => base64url.encode(JSON.stringify(value))
const decodeJson = (segment: string): unknown =>
  JSON.parse(new TextDecoder().decode(base64url.decode(segment)))

/** Serves a JWKS this test controls at `url` and counts how often it is fetched. */
class JwksServer {
  hits = 0
  published: JWK[]
  private readonly server: Server

  constructor(keys: JWK[]) {
    this.published = keys
    this.server = createServer((request, response) => {
      if (request.url !== '/.well-known/jwks.json') {
        response.writeHead(404).end()
        return
      }
      this.hits += 1
      response
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: this.published }))
    })
  }

  get url(): URL {
    const address = this.server.address()
    assert(address !== null && typeof address === 'object', 'the JWKS server is not listening')
    return new URL(`http://127.0.0.1:${address.port}/.well-known/jwks.json`)
  }

  async listen() {
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
  }

  async close() {
    // fetch keeps its connection alive; close() alone would wait for it.
    this.server.closeAllConnections()
    this.server.close()
    await once(this.server, 'close')
  }
}

/** A JWKS server for this test only, closed when it finishes. */
async function jwksServer(keys: JWK[]): Promise<JwksServer> {
  const server = new JwksServer(keys)
  await server.listen()
  onTestFinished(() => server.close())
  return server
}

/** A key resolver that always answers `key` and counts its calls. */
function countingKeys(key: CryptoKey): { keys: JWTVerifyGetKey; calls: () => number } {
  let calls = 0
  return {
    keys: async () => {
      calls += 1
      return key
    },
    calls: () => calls,
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<TokenRejectedError> {
  const outcome: unknown = await promise.then(
    (value) => ({ resolved: value }),
    (error: unknown) => error,
  )
  assert(
    outcome instanceof TokenRejectedError,
    `expected a TokenRejectedError, got ${JSON.stringify(outcome)}`,
  )
  return outcome
}

async function expectRejected(promise: Promise<unknown>, reason: TokenRejection) {
  expect((await rejectionOf(promise)).reason).toBe(reason)
}

/** A TCP port nothing listens on (it was just released). */
async function closedPort(): Promise<number> {
  const server = createTcpServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  assert(address !== null && typeof address === 'object')
  server.close()
  await once(server, 'close')
  return address.port
}

/** An ioredis client whose server is gone; it must fail commands rather than hang. */
async function unreachableRedis(options: RedisOptions): Promise<Redis> {
  const client = new Redis({
    host: '127.0.0.1',
    port: await closedPort(),
    lazyConnect: true,
    connectTimeout: 1000,
    ...options,
  })
  // Connection errors are the point here; without a listener ioredis prints them.
  client.on('error', () => undefined)
  onTestFinished(() => {
    client.disconnect()
  })
  return client
}

let redis: Redis
let signingKey: TestKey
let jwks: JwksServer

beforeAll(async () => {
  redis = new Redis(testRedisUrl())
  signingKey = await newEd25519Key()
  jwks = new JwksServer([signingKey.publicJwk])
  await jwks.listen()
})

afterAll(async () => {
  await jwks?.close()
  await redis?.quit()
})

function verifier(options: Partial<TokenVerifierOptions> = {}): TokenVerifier {
  return createTokenVerifier({ issuer: ISSUER, keys: jwks.url, redis, ...options })
}

describe('createTokenVerifier: accepted tokens', () => {
  it('returns the claims of a valid platform token', async () => {
    const claims = platformClaims()
    const verified = await verifier().verifyPlatformToken(await sign(signingKey, claims))
    expect(verified).toEqual(claims)
  })

  it('returns the claims of a valid service token', async () => {
    const claims = serviceClaims()
    const verified = await verifier().verifyServiceToken(await sign(signingKey, claims))
    expect(verified).toEqual(claims)
  })

  it('returns the tenant, workspace and role of a scoped token', async () => {
    const claims = platformClaims({ tid: 'tenant-1', wid: 'workspace-1', role: 'admin' })
    const verified = await verifier().verifyPlatformToken(await sign(signingKey, claims))
    expect(verified).toMatchObject({ tid: 'tenant-1', wid: 'workspace-1', role: 'admin' })
  })

  it('accepts a token that expired less than the clock tolerance ago', async () => {
    const iat = nowSec() - 300
    const token = await sign(signingKey, platformClaims({ iat, exp: nowSec() - 2 }))
    await expect(verifier({ clockToleranceSec: 5 }).verifyPlatformToken(token)).resolves.toEqual(
      expect.objectContaining({ iat }),
    )
  })
})

describe('createTokenVerifier: pinned algorithm and keys', () => {
  it.each(['none', 'None', 'NONE'])('refuses an unsigned token (alg: %s)', async (alg) => {
    const token = `${encodeJson({ alg, typ: 'JWT' })}.${encodeJson(platformClaims())}.`
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-signature')
    const service = `${encodeJson({ alg, typ: 'JWT' })}.${encodeJson(serviceClaims())}.`
    await expectRejected(verifier().verifyServiceToken(service), 'bad-signature')
  })

  it('refuses HS256 signed with the published public key as the HMAC secret', async () => {
    const x = signingKey.publicJwk.x
    assert(x !== undefined)
    // Both forms an attacker might try: the raw key bytes and the JWK's text.
    for (const secret of [base64url.decode(x), new TextEncoder().encode(x)]) {
      const token = await new SignJWT(platformClaims())
        .setProtectedHeader({ alg: 'HS256', kid: signingKey.kid, typ: 'JWT' })
        .sign(secret)
      await expectRejected(verifier().verifyPlatformToken(token), 'bad-signature')
    }
  })

  it.each(['RS256', 'ES256'])(
    'refuses %s even when its key is published in the JWKS',
    async (alg) => {
      const { privateKey, publicKey } = await generateKeyPair(alg)
      const kid = `${alg}-${randomUUID()}`
      const server = await jwksServer([
        signingKey.publicJwk,
        { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
      ])
      const token = await new SignJWT(platformClaims())
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .sign(privateKey)
      await expectRejected(
        verifier({ keys: server.url }).verifyPlatformToken(token),
        'bad-signature',
      )
    },
  )

  it('refuses a token whose kid is not published', async () => {
    const stranger = await newEd25519Key()
    const token = await sign(stranger, platformClaims())
    await expectRejected(verifier().verifyPlatformToken(token), 'unknown-key')
  })

  it('refuses a token signed by another key under a published kid', async () => {
    const impostor = await newEd25519Key(signingKey.kid)
    const token = await sign(impostor, platformClaims())
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-signature')
  })

  it('refuses a payload changed after signing (role raised to owner)', async () => {
    const token = await sign(
      signingKey,
      platformClaims({ tid: 'tenant-1', wid: 'workspace-1', role: 'viewer' }),
    )
    const [header, payload, signature] = token.split('.')
    assert(header !== undefined && payload !== undefined && signature !== undefined)
    const raised = { ...(decodeJson(payload) as JWTPayload), role: 'owner' }
    const tampered = `${header}.${encodeJson(raised)}.${signature}`
    await expectRejected(verifier().verifyPlatformToken(tampered), 'bad-signature')
  })
})

describe('createTokenVerifier: time claims', () => {
  it('refuses a token expired beyond the clock tolerance', async () => {
    const token = await sign(
      signingKey,
      platformClaims({ iat: nowSec() - 600, exp: nowSec() - 60 }),
    )
    await expectRejected(verifier({ clockToleranceSec: 5 }).verifyPlatformToken(token), 'expired')
    const service = await sign(
      signingKey,
      serviceClaims({ iat: nowSec() - 600, exp: nowSec() - 60 }),
    )
    await expectRejected(verifier().verifyServiceToken(service), 'expired')
  })

  it('refuses a token whose nbf is in the future', async () => {
    const token = await sign(signingKey, platformClaims({ nbf: nowSec() + 120 }))
    await expectRejected(verifier().verifyPlatformToken(token), 'not-yet-valid')
  })
})

describe('createTokenVerifier: issuer, audience and claims', () => {
  it('refuses a token from another issuer', async () => {
    const token = await sign(signingKey, platformClaims({ iss: 'https://evil.test' }))
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-claims')
  })

  it('refuses a service token presented as a platform token', async () => {
    const token = await sign(signingKey, serviceClaims())
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-claims')
  })

  it('refuses a platform token presented as a service token', async () => {
    const token = await sign(signingKey, platformClaims())
    await expectRejected(verifier().verifyServiceToken(token), 'bad-claims')
  })

  it('does not let a service token cached as such pass as a platform token', async () => {
    const tokens = verifier()
    const token = await sign(signingKey, serviceClaims())
    await tokens.verifyServiceToken(token)
    await expectRejected(tokens.verifyPlatformToken(token), 'bad-claims')
  })

  it.each([
    ['wid without tid and role', { wid: 'workspace-1' }],
    ['tid and wid without role', { tid: 'tenant-1', wid: 'workspace-1' }],
    ['an unknown role', { tid: 'tenant-1', wid: 'workspace-1', role: 'superuser' }],
    ['no sid', { sid: undefined }],
    ['an empty sub', { sub: '' }],
    ['iat after exp', { iat: nowSec() + 600, exp: nowSec() + 300 }],
  ])('refuses claims with %s', async (_label, overrides) => {
    const token = await sign(signingKey, platformClaims(overrides))
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-claims')
  })

  it('refuses a service token for a service that does not exist', async () => {
    const token = await sign(signingKey, serviceClaims({ sub: 'billing-service' }))
    await expectRejected(verifier().verifyServiceToken(token), 'bad-claims')
  })

  it.each(['jti', 'sub', 'iat', 'exp'])('refuses a token without %s', async (claim) => {
    const token = await sign(signingKey, platformClaims({ [claim]: undefined }))
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-claims')
    const service = await sign(signingKey, serviceClaims({ [claim]: undefined }))
    await expectRejected(verifier().verifyServiceToken(service), 'bad-claims')
  })

  it.each(['iat', 'nbf', 'exp'])('refuses a token whose %s is not a number', async (claim) => {
    const token = await sign(signingKey, platformClaims({ [claim]: String(nowSec()) }))
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-claims')
  })

  it('calls a validly signed payload that is not a JSON object malformed', async () => {
    for (const payload of ['not json', '[1,2,3]', '"a string"', 'null']) {
      const token = await new CompactSign(new TextEncoder().encode(payload))
        .setProtectedHeader({ alg: TOKEN_SIGNING_ALGORITHM, kid: signingKey.kid })
        .sign(signingKey.privateKey)
      await expectRejected(verifier().verifyPlatformToken(token), 'malformed')
    }
  })

  it('checks the signature before reading the payload', async () => {
    const token = `${encodeJson({ alg: TOKEN_SIGNING_ALGORITHM, kid: signingKey.kid })}.bm90IGpzb24.c2ln`
    await expectRejected(verifier().verifyPlatformToken(token), 'bad-signature')
  })

  it.each([
    ['the empty string', ''],
    ['two segments', 'a.b'],
    ['garbage', 'not a token at all'],
    ['three garbage segments', 'a.b.c'],
    ['only dots', '..'],
    ['10 KB of junk', randomBytes(7_680).toString('base64url')],
    ['10 KB of junk in three segments', `${'x'.repeat(5_000)}.${'y'.repeat(5_000)}.z`],
  ])('calls %s malformed', async (_label, token) => {
    await expectRejected(verifier().verifyPlatformToken(token), 'malformed')
    await expectRejected(verifier().verifyServiceToken(token), 'malformed')
  })
})

describe('createTokenVerifier: revocation', () => {
  it('refuses a token of a revoked session', async () => {
    const claims = platformClaims()
    const sid = String(claims.sid)
    await redis.set(revokedSessionKey(sid), '1', 'EX', 60)
    onTestFinished(async () => {
      await redis.del(revokedSessionKey(sid))
    })
    await expectRejected(verifier().verifyPlatformToken(await sign(signingKey, claims)), 'revoked')
  })

  it('refuses a revoked session even when its token is in the verified cache', async () => {
    const resolver = countingKeys(signingKey.publicKey)
    const tokens = verifier({ keys: resolver.keys })
    const claims = platformClaims()
    const sid = String(claims.sid)
    const token = await sign(signingKey, claims)
    await expect(tokens.verifyPlatformToken(token)).resolves.toEqual(claims)

    await redis.set(revokedSessionKey(sid), '1', 'EX', 60)
    onTestFinished(async () => {
      await redis.del(revokedSessionKey(sid))
    })
    await expectRejected(tokens.verifyPlatformToken(token), 'revoked')
    // Served from the cache: the signature was not checked again, the revocation list was.
    expect(resolver.calls()).toBe(1)
  })

  it.each([
    ['no offline queue', { enableOfflineQueue: false, maxRetriesPerRequest: 1 }],
    // What the service-kit redis plugin configures.
    ['the redis plugin settings', { maxRetriesPerRequest: 1 }],
  ] as const)('fails closed when Redis is unreachable (%s)', async (_label, options) => {
    const deadRedis = await unreachableRedis(options)
    const tokens = verifier({ redis: deadRedis })
    const started = Date.now()
    const outcome: unknown = await tokens
      .verifyPlatformToken(await sign(signingKey, platformClaims()))
      .then(
        () => 'accepted',
        (error: unknown) => error,
      )
    expect(outcome).toBeInstanceOf(RevocationCheckUnavailableError)
    expect(Date.now() - started).toBeLessThan(5_000)

    // Service tokens have no revocation list, so they do not depend on Redis.
    const claims = serviceClaims()
    await expect(tokens.verifyServiceToken(await sign(signingKey, claims))).resolves.toEqual(claims)
  })

  it('with watchRevocations, refuses a session revoked after its token was accepted', async () => {
    const tokens = verifier({ watchRevocations: true })
    onTestFinished(() => tokens.close())
    const claims = platformClaims()
    const sid = String(claims.sid)
    const token = await sign(signingKey, claims)
    await expect(tokens.verifyPlatformToken(token)).resolves.toEqual(claims)
    await redis.set(revokedSessionKey(sid), '1', 'EX', 60)
    onTestFinished(async () => {
      await redis.del(revokedSessionKey(sid))
    })
    // The invalidation arrives on the watch's own connection within moments of the write.
    const deadline = Date.now() + 2000
    let outcome: unknown = 'accepted'
    while (outcome === 'accepted' && Date.now() < deadline) {
      outcome = await tokens.verifyPlatformToken(token).then(
        () => 'accepted',
        (error: unknown) => error,
      )
      if (outcome === 'accepted') await sleep(5)
    }
    expect(outcome).toBeInstanceOf(TokenRejectedError)
    expect((outcome as TokenRejectedError).reason).toBe('revoked')
  })

  it('with watchRevocations, fails closed when Redis is unreachable', async () => {
    const deadRedis = await unreachableRedis({ maxRetriesPerRequest: 1 })
    const tokens = verifier({ redis: deadRedis, watchRevocations: true })
    onTestFinished(() => tokens.close())
    await expect(
      tokens.verifyPlatformToken(await sign(signingKey, platformClaims())),
    ).rejects.toBeInstanceOf(RevocationCheckUnavailableError)
  })

  it('does not consult Redis when given none', async () => {
    const claims = platformClaims()
    await expect(
      verifier({ redis: null }).verifyPlatformToken(await sign(signingKey, claims)),
    ).resolves.toEqual(claims)
  })
})

describe('createTokenVerifier: JWKS caching', () => {
  it('fetches the JWKS once for 100 tokens with a known kid', async () => {
    const server = await jwksServer([signingKey.publicJwk])
    const tokens = verifier({ keys: server.url })
    // Concurrent first calls share one fetch; later ones use the cached set.
    await Promise.all(
      Array.from({ length: 50 }, async () =>
        tokens.verifyPlatformToken(await sign(signingKey, platformClaims())),
      ),
    )
    for (let i = 0; i < 50; i += 1)
      await tokens.verifyPlatformToken(await sign(signingKey, platformClaims()))
    expect(server.hits).toBe(1)
  })

  it('fetches at most once more for a burst of unknown kids within the cooldown', async () => {
    const server = await jwksServer([signingKey.publicJwk])
    const tokens = verifier({ keys: server.url, jwksCooldownMs: 60_000 })
    await tokens.verifyPlatformToken(await sign(signingKey, platformClaims()))
    expect(server.hits).toBe(1)

    const burst = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const stranger = await newEd25519Key()
        return rejectionOf(tokens.verifyPlatformToken(await sign(stranger, platformClaims())))
      }),
    )
    expect(burst.map((error) => error.reason)).toEqual(Array(50).fill('unknown-key'))
    expect(server.hits).toBeLessThanOrEqual(2)
  })

  it('refetches once for a burst of unknown kids after the cooldown, then waits again', async () => {
    const server = await jwksServer([signingKey.publicJwk])
    const tokens = verifier({ keys: server.url, jwksCooldownMs: 500 })
    await tokens.verifyPlatformToken(await sign(signingKey, platformClaims()))
    await sleep(600)

    const strangers = await Promise.all(Array.from({ length: 50 }, () => newEd25519Key()))
    const forged = await Promise.all(strangers.map((key) => sign(key, platformClaims())))
    await Promise.all(
      forged.map((token) => expectRejected(tokens.verifyPlatformToken(token), 'unknown-key')),
    )
    expect(server.hits).toBe(2)
    for (const token of forged)
      await expectRejected(tokens.verifyPlatformToken(token), 'unknown-key')
    expect(server.hits).toBe(2)
  })

  it('picks up a rotated-in key after the cooldown and drops a removed one', async () => {
    const oldKey = signingKey
    const newKey = await newEd25519Key()
    const server = await jwksServer([oldKey.publicJwk])
    const tokens = verifier({ keys: server.url, jwksCooldownMs: 500 })
    await tokens.verifyPlatformToken(await sign(oldKey, platformClaims()))

    server.published = [oldKey.publicJwk, newKey.publicJwk]
    // Inside the cooldown the cached set is trusted, so a brand-new kid is not known yet.
    await expectRejected(
      tokens.verifyPlatformToken(await sign(newKey, platformClaims())),
      'unknown-key',
    )
    await sleep(600)
    const claims = platformClaims()
    await expect(tokens.verifyPlatformToken(await sign(newKey, claims))).resolves.toEqual(claims)
    expect(server.hits).toBe(2)
    // The old key is still published, so its fresh tokens still verify.
    const oldClaims = platformClaims()
    await expect(tokens.verifyPlatformToken(await sign(oldKey, oldClaims))).resolves.toEqual(
      oldClaims,
    )

    server.published = [newKey.publicJwk]
    await sleep(600)
    // Any unknown kid after the cooldown refreshes the cached set.
    const stranger = await newEd25519Key()
    await expectRejected(
      tokens.verifyPlatformToken(await sign(stranger, platformClaims())),
      'unknown-key',
    )
    expect(server.hits).toBe(3)
    await expectRejected(
      tokens.verifyPlatformToken(await sign(oldKey, platformClaims())),
      'unknown-key',
    )
    await expect(tokens.verifyPlatformToken(await sign(newKey, platformClaims()))).resolves.toEqual(
      expect.objectContaining({ iss: ISSUER }),
    )
  })

  it('refetches the JWKS when it is older than jwksMaxAgeMs and drops a removed key', async () => {
    const oldKey = await newEd25519Key()
    const newKey = await newEd25519Key()
    const server = await jwksServer([oldKey.publicJwk, newKey.publicJwk])
    const tokens = verifier({ keys: server.url, jwksMaxAgeMs: 300, jwksCooldownMs: 60_000 })
    await tokens.verifyPlatformToken(await sign(oldKey, platformClaims()))
    expect(server.hits).toBe(1)

    server.published = [newKey.publicJwk]
    await sleep(400)
    await expectRejected(
      tokens.verifyPlatformToken(await sign(oldKey, platformClaims())),
      'unknown-key',
    )
    expect(server.hits).toBe(2)
  })
})

describe('createTokenVerifier: verified-token cache', () => {
  it('does not resolve the key again for a token it has verified', async () => {
    const resolver = countingKeys(signingKey.publicKey)
    const tokens = verifier({ keys: resolver.keys })
    const platform = await sign(signingKey, platformClaims())
    const service = await sign(signingKey, serviceClaims())
    const first = await tokens.verifyPlatformToken(platform)
    await tokens.verifyServiceToken(service)
    expect(resolver.calls()).toBe(2)

    expect(await tokens.verifyPlatformToken(platform)).toEqual(first)
    await tokens.verifyServiceToken(service)
    expect(resolver.calls()).toBe(2)
  })

  it('caches nothing with cacheEntries: 0', async () => {
    const resolver = countingKeys(signingKey.publicKey)
    const tokens = verifier({ keys: resolver.keys, cacheEntries: 0 })
    const token = await sign(signingKey, platformClaims())
    for (let i = 0; i < 3; i += 1) await tokens.verifyPlatformToken(token)
    expect(resolver.calls()).toBe(3)
  })

  it('drops the oldest entry when full', async () => {
    const resolver = countingKeys(signingKey.publicKey)
    const tokens = verifier({ keys: resolver.keys, cacheEntries: 2 })
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => sign(signingKey, platformClaims())))
    assert(a !== undefined && b !== undefined && c !== undefined)
    for (const token of [a, b, c]) await tokens.verifyPlatformToken(token)
    expect(resolver.calls()).toBe(3)
    await tokens.verifyPlatformToken(c)
    expect(resolver.calls()).toBe(3)
    await tokens.verifyPlatformToken(a)
    expect(resolver.calls()).toBe(4)
  })

  it('does not cache a refused token', async () => {
    const resolver = countingKeys(signingKey.publicKey)
    const tokens = verifier({ keys: resolver.keys })
    const token = await sign(signingKey, platformClaims({ iss: 'https://evil.test' }))
    await expectRejected(tokens.verifyPlatformToken(token), 'bad-claims')
    await expectRejected(tokens.verifyPlatformToken(token), 'bad-claims')
    expect(resolver.calls()).toBe(2)
  })

  it.each([0, 1])(
    'does not serve a token from the cache once it has expired (clockToleranceSec %i)',
    async (clockToleranceSec) => {
      const resolver = countingKeys(signingKey.publicKey)
      const tokens = verifier({ keys: resolver.keys, clockToleranceSec })
      const iat = nowSec()
      const exp = iat + 1
      const token = await sign(signingKey, platformClaims({ iat, exp }))
      await tokens.verifyPlatformToken(token)
      await tokens.verifyPlatformToken(token)
      expect(resolver.calls()).toBe(1)

      // Just past the moment a fresh verification refuses it.
      await sleep((exp + clockToleranceSec) * 1000 - Date.now() + 50)
      await expectRejected(tokens.verifyPlatformToken(token), 'expired')
      expect(resolver.calls()).toBe(2)
    },
  )
})

describe('bearerToken', () => {
  it.each([
    ['no header', undefined, undefined],
    ['an empty header', '', undefined],
    ['Bearer x', 'Bearer x', 'x'],
    ['a JWT', 'Bearer aaa.bbb.ccc', 'aaa.bbb.ccc'],
    ['lowercase bearer', 'bearer x', 'x'],
    ['uppercase BEARER', 'BEARER x', 'x'],
    ['extra spaces between and after', 'Bearer    x   ', 'x'],
    ['base64 padding', 'Bearer abc+/==', 'abc+/=='],
    ['Basic credentials', 'Basic x', undefined],
    ['two tokens', 'Bearer a b', undefined],
    ['the scheme alone', 'Bearer', undefined],
    ['the scheme and a space', 'Bearer ', undefined],
    ['no space after the scheme', 'Bearerx', undefined],
    ['a leading space', ' Bearer x', undefined],
    ['a tab as separator', 'Bearer\tx', undefined],
    ['a line break in the token', 'Bearer x\ny', undefined],
    ['characters outside token68', 'Bearer x"y', undefined],
  ])('%s', (_label, header, expected) => {
    expect(bearerToken(header)).toBe(expected)
  })
})
