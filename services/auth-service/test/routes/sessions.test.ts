import { randomUUID } from 'node:crypto'
import { testRedisUrl } from '@platform/local-infra/vitest'
import { REFRESH_COOKIE_NAME, type TokenPairResponse } from '@platform/shared-types'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import { decodeJwt, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/lib/crypto.js'
import {
  bearer,
  errorCode,
  login,
  me,
  PASSWORD,
  refresh,
  register,
  signIn,
  sleep,
  type TestUser,
} from '../helpers/auth-requests.js'
import { startTestAuth, TEST_PUBLIC_URL } from '../helpers/build.js'

const ACCESS_TTL = 60
const GRACE_SECONDS = 1

const sidOf = (pair: TokenPairResponse) => String(decodeJwt(pair.accessToken).sid)

const logout = (app: FastifyInstance, init: { token?: string; cookie?: string } = {}) =>
  app.inject({
    method: 'POST',
    url: '/auth/v1/logout',
    headers: init.token === undefined ? {} : bearer(init.token),
    cookies: init.cookie === undefined ? {} : { [REFRESH_COOKIE_NAME]: init.cookie },
  })

/** The refresh cookie as a logout leaves it: emptied and expired. */
function expectClearedCookie(response: LightMyRequestResponse) {
  const cookie = response.cookies.find((item) => item.name === REFRESH_COOKIE_NAME)
  expect(cookie, 'the refresh cookie is cleared').toBeDefined()
  expect(cookie?.value).toBe('')
  const expired =
    cookie?.maxAge === 0 || (cookie?.expires !== undefined && cookie.expires.getTime() < Date.now())
  expect(expired, JSON.stringify(cookie)).toBe(true)
  expect(cookie).toMatchObject({ path: '/', httpOnly: true, sameSite: 'Lax' })
}

describe('refresh tokens and sessions', () => {
  let app: FastifyInstance
  let redisKeyPrefix: string
  let rawRedis: Redis

  beforeAll(async () => {
    ;({ app, redisKeyPrefix } = await startTestAuth({
      ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TTL),
      REFRESH_REUSE_GRACE_SECONDS: String(GRACE_SECONDS),
    }))
    // Without the app's key prefix, to see where its keys really are.
    rawRedis = new Redis(testRedisUrl())
  })
  afterAll(async () => {
    await rawRedis.quit()
    await app.close()
  })

  const newUser = () => register(app)
  const loginAs = (user: TestUser, headers: Record<string, string> = {}) =>
    signIn(app, { email: user.email, password: PASSWORD }, headers)
  const refreshTokens = () => app.mongo.collection<{ _id: string }>('refresh_tokens')
  const sessions = () => app.mongo.collection<{ _id: string }>('sessions')

  describe('refresh', () => {
    it('rotates the refresh token on every use', async () => {
      const pair = await loginAs(await newUser())
      const first = await refresh(app, pair.refreshToken)
      expect(first.statusCode).toBe(200)
      const rotated = first.json<TokenPairResponse>()
      expect(rotated.refreshToken).not.toBe(pair.refreshToken)
      expect(rotated.accessToken).not.toBe(pair.accessToken)
      expect(sidOf(rotated)).toBe(sidOf(pair))
      expect(first.headers['set-cookie']).toContain(
        `${REFRESH_COOKIE_NAME}=${rotated.refreshToken}`,
      )

      const second = await refresh(app, rotated.refreshToken)
      expect(second.statusCode).toBe(200)
      expect(second.json().refreshToken).not.toBe(rotated.refreshToken)
    })

    it('answers a token reused within the grace period with the very pair it became', async () => {
      const pair = await loginAs(await newUser())
      const first = await refresh(app, pair.refreshToken)
      const again = await refresh(app, pair.refreshToken)
      expect(first.statusCode).toBe(200)
      expect(again.statusCode).toBe(200)
      expect(again.json().accessToken).toBe(first.json().accessToken)
      expect(again.json().refreshToken).toBe(first.json().refreshToken)
      expect(again.json()).toEqual(first.json())
    })

    it('gives 10 concurrent refreshes of one token the same pair and one new token', async () => {
      const pair = await loginAs(await newUser())
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => refresh(app, pair.refreshToken)),
      )
      for (const answer of answers) expect(answer.statusCode, answer.body).toBe(200)
      const bodies = answers.map((answer) => answer.json<TokenPairResponse>())
      expect(new Set(bodies.map((body) => body.refreshToken)).size).toBe(1)
      expect(new Set(bodies.map((body) => body.accessToken)).size).toBe(1)

      const sid = sidOf(pair)
      expect(await refreshTokens().countDocuments({ sessionId: sid, status: 'current' })).toBe(1)
      expect(await refreshTokens().countDocuments({ sessionId: sid })).toBe(2)
      expect(
        await refreshTokens().findOne({ _id: hashToken(bodies[0]?.refreshToken ?? '') }),
      ).toMatchObject({ status: 'current', sessionId: sid })
    })

    it('ends the whole session when a token is reused after the grace period', async () => {
      const pair = await loginAs(await newUser())
      const rotated = (await refresh(app, pair.refreshToken)).json<TokenPairResponse>()
      await sleep(GRACE_SECONDS * 1000 + 200)

      const replay = await refresh(app, pair.refreshToken)
      expect(replay.statusCode).toBe(401)
      expect(replay.json()).toMatchObject(errorCode(401, 'AUTH_REFRESH_REUSED'))
      expect(replay.body).not.toContain('accessToken')

      // The family is dead: the newest refresh token and every access token of the session.
      const newest = await refresh(app, rotated.refreshToken)
      expect(newest.statusCode).toBe(401)
      expect(newest.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))
      for (const accessToken of [pair.accessToken, rotated.accessToken]) {
        const profile = await me(app, accessToken)
        expect(profile.statusCode).toBe(401)
        expect(profile.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))
      }

      // Every verifier reads the mark from Redis until the last access token has expired.
      const key = `${redisKeyPrefix}auth:revoked-session:${sidOf(pair)}`
      expect(await rawRedis.exists(key)).toBe(1)
      const ttl = await rawRedis.ttl(key)
      expect(ttl).toBeGreaterThan(ACCESS_TTL + 60 - 5)
      expect(ttl).toBeLessThanOrEqual(ACCESS_TTL + 60)
    })

    it('takes the refresh token from the cookie when there is no body', async () => {
      const pair = await loginAs(await newUser())
      const response = await app.inject({
        method: 'POST',
        url: '/auth/v1/token/refresh',
        cookies: { [REFRESH_COOKIE_NAME]: pair.refreshToken },
      })
      expect(response.statusCode, response.body).toBe(200)
      const rotated = response.json<TokenPairResponse>()
      expect(rotated.refreshToken).not.toBe(pair.refreshToken)
      expect(sidOf(rotated)).toBe(sidOf(pair))
      expect(response.cookies.find((cookie) => cookie.name === REFRESH_COOKIE_NAME)?.value).toBe(
        rotated.refreshToken,
      )
    })

    it.each([
      ['an unknown token', { payload: { refreshToken: 'not-a-token-we-issued' } }],
      ['no token at all', {}],
      ['an empty cookie', { cookies: { [REFRESH_COOKIE_NAME]: '' } }],
    ])('refuses %s with AUTH_REFRESH_INVALID', async (_label, init) => {
      const response = await app.inject({ method: 'POST', url: '/auth/v1/token/refresh', ...init })
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_REFRESH_INVALID'))
    })

    it('stores refresh tokens only as hashes', async () => {
      const user = await newUser()
      const pair = await loginAs(user)
      const rotated = (await refresh(app, pair.refreshToken)).json<TokenPairResponse>()
      const plaintexts = [pair.refreshToken, rotated.refreshToken]

      const stored = await refreshTokens()
        .find({ sessionId: sidOf(pair) })
        .toArray()
      expect(stored.map((document) => document._id).sort()).toEqual(
        plaintexts.map((token) => hashToken(token)).sort(),
      )
      const dump = JSON.stringify([
        await refreshTokens().find().toArray(),
        await sessions().find().toArray(),
      ])
      for (const token of plaintexts) expect(dump).not.toContain(token)

      // The grace answer in Redis holds the pair, sealed.
      const graceKeys = await rawRedis.keys(`${redisKeyPrefix}auth:refresh-grace:*`)
      expect(graceKeys.length).toBeGreaterThan(0)
      for (const key of graceKeys) {
        const value = (await rawRedis.get(key)) ?? ''
        for (const token of plaintexts) expect(value).not.toContain(token)
      }
    })
  })

  describe('the session list', () => {
    it('lists my sessions and marks the one asking as current', async () => {
      const user = await newUser()
      const one = await loginAs(user, {
        'user-agent': 'Browser One',
        'x-forwarded-for': '192.0.2.1',
      })
      const two = await loginAs(user, {
        'user-agent': 'Browser Two',
        'x-forwarded-for': '192.0.2.2',
      })

      for (const [asking, other] of [
        [one, two],
        [two, one],
      ] as const) {
        const response = await app.inject({
          method: 'GET',
          url: '/auth/v1/sessions',
          headers: bearer(asking.accessToken),
        })
        expect(response.statusCode).toBe(200)
        const { items } = response.json<{ items: Array<Record<string, unknown>> }>()
        expect(items).toHaveLength(2)
        for (const item of items)
          expect(Object.keys(item).sort()).toEqual([
            'createdAt',
            'current',
            'id',
            'ip',
            'lastUsedAt',
            'userAgent',
          ])
        expect(items.find((item) => item.id === sidOf(asking))).toMatchObject({ current: true })
        expect(items.find((item) => item.id === sidOf(other))).toMatchObject({ current: false })
      }
      const response = await app.inject({
        method: 'GET',
        url: '/auth/v1/sessions',
        headers: bearer(one.accessToken),
      })
      expect(response.json().items).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ id: sidOf(one), ip: '192.0.2.1', userAgent: 'Browser One' }),
          expect.objectContaining({ id: sidOf(two), ip: '192.0.2.2', userAgent: 'Browser Two' }),
        ]),
      )
    })

    it('ends another of my sessions at once', async () => {
      const user = await newUser()
      const keep = await loginAs(user)
      const end = await loginAs(user)
      const response = await app.inject({
        method: 'DELETE',
        url: `/auth/v1/sessions/${sidOf(end)}`,
        headers: bearer(keep.accessToken),
      })
      expect(response.statusCode).toBe(204)
      expect(response.body).toBe('')

      const profile = await me(app, end.accessToken)
      expect(profile.statusCode).toBe(401)
      expect(profile.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))
      const refreshed = await refresh(app, end.refreshToken)
      expect(refreshed.statusCode).toBe(401)
      expect(refreshed.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))

      expect((await me(app, keep.accessToken)).statusCode).toBe(200)
      const list = await app.inject({
        method: 'GET',
        url: '/auth/v1/sessions',
        headers: bearer(keep.accessToken),
      })
      expect(list.json().items.map((item: { id: string }) => item.id)).toEqual([sidOf(keep)])
    })

    it("answers 404 for someone else's session and leaves it alone", async () => {
      const victim = await loginAs(await newUser())
      const attacker = await loginAs(await newUser())
      for (const id of [sidOf(victim), randomUUID()]) {
        const response = await app.inject({
          method: 'DELETE',
          url: `/auth/v1/sessions/${id}`,
          headers: bearer(attacker.accessToken),
        })
        expect(response.statusCode).toBe(404)
        expect(response.json()).toMatchObject(errorCode(404, 'AUTH_NOT_FOUND'))
      }
      expect((await me(app, victim.accessToken)).statusCode).toBe(200)
      expect((await refresh(app, victim.refreshToken)).statusCode).toBe(200)
    })

    it('needs a bearer token', async () => {
      const response = await app.inject({ method: 'GET', url: '/auth/v1/sessions' })
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
    })
  })

  describe('logout', () => {
    it('ends the session of the bearer token and clears the cookie', async () => {
      const pair = await loginAs(await newUser())
      const response = await logout(app, { token: pair.accessToken })
      expect(response.statusCode).toBe(204)
      expectClearedCookie(response)

      const profile = await me(app, pair.accessToken)
      expect(profile.statusCode).toBe(401)
      expect(profile.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))
      const refreshed = await refresh(app, pair.refreshToken)
      expect(refreshed.statusCode).toBe(401)
      expect(refreshed.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))
    })

    it('works with the cookie alone', async () => {
      const pair = await loginAs(await newUser())
      const response = await logout(app, { cookie: pair.refreshToken })
      expect(response.statusCode).toBe(204)
      expectClearedCookie(response)
      expect((await me(app, pair.accessToken)).json()).toMatchObject(
        errorCode(401, 'AUTH_SESSION_REVOKED'),
      )
      expect((await refresh(app, pair.refreshToken)).json()).toMatchObject(
        errorCode(401, 'AUTH_SESSION_REVOKED'),
      )
    })

    it('works with an expired access token and the cookie', async () => {
      const user = await newUser()
      const pair = await loginAs(user)
      // A token the service really signed, for this session, an hour past its expiry.
      const key = await app.identity.keys.current()
      const expired = await new SignJWT({ sid: sidOf(pair) })
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
        .setIssuer(TEST_PUBLIC_URL)
        .setAudience('platform')
        .setSubject(user.id)
        .setJti(randomUUID())
        .setIssuedAt(Math.floor(Date.now() / 1000) - 3600 - ACCESS_TTL)
        .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
        .sign(key.privateKey)
      const refused = await me(app, expired)
      expect(refused.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))

      const response = await logout(app, { token: expired, cookie: pair.refreshToken })
      expect(response.statusCode).toBe(204)
      expect((await me(app, pair.accessToken)).json()).toMatchObject(
        errorCode(401, 'AUTH_SESSION_REVOKED'),
      )
    })

    it('refuses a logout with neither token', async () => {
      const response = await logout(app)
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
    })

    it('is fine twice, with the bearer token or the cookie', async () => {
      const pair = await loginAs(await newUser())
      for (let time = 1; time <= 2; time++) {
        const response = await logout(app, { token: pair.accessToken })
        expect(response.statusCode, `bearer logout ${time}: ${response.body}`).toBe(204)
        expectClearedCookie(response)
      }
      for (let time = 1; time <= 2; time++) {
        const response = await logout(app, { cookie: pair.refreshToken })
        expect(response.statusCode, `cookie logout ${time}: ${response.body}`).toBe(204)
      }
      const other = await loginAs(await newUser())
      expect((await me(app, other.accessToken)).statusCode).toBe(200)
    })
  })

  it('lets MongoDB remove a session once it has expired', { timeout: 100_000 }, async () => {
    const pair = await loginAs(await newUser())
    const sid = sidOf(pair)
    await sessions().updateOne({ _id: sid }, { $set: { expiresAt: new Date(Date.now() - 1000) } })

    // Expired is over at once, before the TTL monitor has even run.
    const refreshed = await refresh(app, pair.refreshToken)
    expect(refreshed.statusCode).toBe(401)
    expect(refreshed.json()).toMatchObject(errorCode(401, 'AUTH_SESSION_REVOKED'))

    const deadline = Date.now() + 90_000
    while ((await sessions().countDocuments({ _id: sid })) > 0) {
      if (Date.now() > deadline) throw new Error('the TTL monitor did not remove the session')
      await sleep(250)
    }
    expect(await sessions().countDocuments({ _id: sid })).toBe(0)
  })
})

describe('while Redis is unreachable', () => {
  let app: FastifyInstance
  let user: TestUser
  let pair: TokenPairResponse

  beforeAll(async () => {
    ;({ app } = await startTestAuth({ REFRESH_REUSE_GRACE_SECONDS: String(GRACE_SECONDS) }))
    user = await register(app)
    pair = await signIn(app, { email: user.email, password: PASSWORD })
    app.redis.disconnect()
  })
  afterAll(() => app.close())

  const expectUnavailable = (response: LightMyRequestResponse) => {
    expect(response.statusCode, response.body).toBe(503)
    expect(response.json()).toMatchObject(errorCode(503, 'AUTH_DEPENDENCY_UNAVAILABLE'))
    expect(response.body).not.toContain('accessToken')
    expect(response.body).not.toContain('refreshToken')
  }

  it('refuses to sign in', async () => {
    expectUnavailable(await login(app, { email: user.email, password: PASSWORD }))
    // Wrong passwords too: the failure could not be counted.
    expectUnavailable(await login(app, { email: user.email, password: 'wrong password' }))
  })

  it('refuses to refresh', async () => {
    expectUnavailable(await refresh(app, pair.refreshToken))
  })

  it('refuses access tokens it cannot check against the revocation list', async () => {
    expectUnavailable(await me(app, pair.accessToken))
    expectUnavailable(
      await app.inject({
        method: 'GET',
        url: '/auth/v1/sessions',
        headers: bearer(pair.accessToken),
      }),
    )
  })

  it('cannot log out, and says so', async () => {
    expectUnavailable(await logout(app, { token: pair.accessToken }))
  })

  // Last: reconnects.
  it('recovers by itself when Redis returns, with the same refresh token', async () => {
    await app.redis.connect()
    expect((await me(app, pair.accessToken)).statusCode).toBe(200)
    // The refresh that failed above must not have used up the token.
    const refreshed = await refresh(app, pair.refreshToken)
    expect(refreshed.statusCode, refreshed.body).toBe(200)
    expect(refreshed.json().refreshToken).not.toBe(pair.refreshToken)
    expect(refreshed.json().user.id).toBe(user.id)
  })
})
