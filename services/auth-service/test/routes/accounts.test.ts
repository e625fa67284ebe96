import { performance } from 'node:perf_hooks'
import { REFRESH_COOKIE_NAME } from '@platform/shared-types'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  bearer,
  errorCode,
  login,
  PASSWORD,
  register,
  signIn,
  uniqueEmail,
} from '../helpers/auth-requests.js'
import { startTestAuth } from '../helpers/build.js'

const USER_KEYS = ['createdAt', 'email', 'id', 'mfaEnabled', 'name']
const PAIR_KEYS = ['accessToken', 'expiresIn', 'refreshToken', 'user', 'workspace']
const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
const INVALID_CREDENTIALS = {
  statusCode: 401,
  code: 'AUTH_INVALID_CREDENTIALS',
  error: 'Unauthorized',
  message: 'The email or password is not correct',
}

/** The same address in fullwidth forms (U+FF01…), which NFKC folds back to ASCII. */
const fullwidth = (value: string) =>
  [...value]
    .map((char) => {
      const code = char.charCodeAt(0)
      return code >= 0x21 && code <= 0x7e ? String.fromCharCode(code + 0xfee0) : char
    })
    .join('')

// Each test that counts failures uses client addresses of its own, so limits never leak across.
let lastOctet = 0
const nextIp = () => `198.51.100.${++lastOctet}`
const from = (ip: string) => ({ 'x-forwarded-for': ip })

const setCookieOf = (response: LightMyRequestResponse): string => {
  const header = response.headers['set-cookie']
  const cookies = Array.isArray(header) ? header : header === undefined ? [] : [header]
  const refresh = cookies.find((cookie) => cookie.startsWith(`${REFRESH_COOKIE_NAME}=`))
  if (refresh === undefined) throw new Error(`no ${REFRESH_COOKIE_NAME} cookie was set`)
  return refresh
}

const usersCollection = (app: FastifyInstance) => app.mongo.collection('users')

describe('accounts and password sign-in', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    ;({ app } = await startTestAuth({
      LOGIN_MAX_FAILURES_PER_ACCOUNT: '3',
      LOGIN_MAX_FAILURES_PER_IP: '5',
    }))
  })
  afterAll(() => app.close())

  describe('register', () => {
    it('answers 201 with exactly the public user', async () => {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/v1/register',
        payload: { email: 'shape@example.com', password: PASSWORD, name: 'Shape' },
      })
      expect(response.statusCode, response.body).toBe(201)
      const body = response.json()
      expect(Object.keys(body)).toEqual(['user'])
      expect(Object.keys(body.user).sort()).toEqual(USER_KEYS)
      expect(body.user).toMatchObject({
        email: 'shape@example.com',
        name: 'Shape',
        mfaEnabled: false,
      })
      expect(body.user.id).toEqual(expect.any(String))
      expect(body.user.createdAt).toMatch(ISO_WITH_OFFSET)
    })

    it('stores the email normalized and refuses case and fullwidth variants of it', async () => {
      const created = await register(app, { email: '  Mixed.Case@Example.COM ' })
      expect(created.email).toBe('mixed.case@example.com')

      for (const variant of ['MIXED.CASE@EXAMPLE.COM', fullwidth('Mixed.Case@Example.com')]) {
        const again = await app.inject({
          method: 'POST',
          url: '/auth/v1/register',
          payload: { email: variant, password: PASSWORD, name: 'Again' },
        })
        expect(again.statusCode, variant).toBe(409)
        expect(again.json()).toMatchObject(errorCode(409, 'AUTH_EMAIL_TAKEN'))
      }
      expect(await usersCollection(app).countDocuments({ email: created.email })).toBe(1)

      // Login looks the address up the same way.
      const pair = await signIn(app, {
        email: fullwidth('MIXED.case@example.com'),
        password: PASSWORD,
      })
      expect(pair.user.id).toBe(created.id)
    })

    it('refuses a lookalike address (a Cyrillic а in a Latin address)', async () => {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/v1/register',
        payload: { email: 'p\u0430ypal@example.com', password: PASSWORD, name: 'Lookalike' },
      })
      expect(response.statusCode).toBe(400)
      expect(response.json()).toMatchObject(errorCode(400, 'AUTH_INVALID_EMAIL'))
      expect(await usersCollection(app).countDocuments({ name: 'Lookalike' })).toBe(0)
    })

    it.each([
      ['7 characters', 'a'.repeat(7)],
      ['129 characters', 'a'.repeat(129)],
    ])('refuses a password of %s with details on password', async (_label, password) => {
      const response = await app.inject({
        method: 'POST',
        url: '/auth/v1/register',
        payload: { email: uniqueEmail('short'), password, name: 'Bad password' },
      })
      expect(response.statusCode).toBe(400)
      const body = response.json()
      expect(body).toMatchObject(errorCode(400, 'AUTH_VALIDATION'))
      expect(body.details).toEqual(
        expect.arrayContaining([expect.objectContaining({ path: 'password' })]),
      )
    })

    it.each([
      ['128 characters', 'a'.repeat(128)],
      // Counted in code points: 128 emoji are 256 UTF-16 units and still allowed.
      ['128 emoji', '\u{1F511}'.repeat(128)],
      ['8 characters', 'abcdefgh'],
    ])('accepts a password of %s and signs in with it', async (_label, password) => {
      const user = await register(app, { password })
      const pair = await signIn(app, { email: user.email, password })
      expect(pair.user.id).toBe(user.id)
    })

    it('stores the password as Argon2id, never the password itself', async () => {
      const user = await register(app, { password: 'a distinctive passphrase' })
      const stored = await usersCollection(app).findOne({ email: user.email })
      expect(stored?.passwordHash).toMatch(/^\$argon2id\$/)
      expect(stored?.passwordHash).not.toContain('a distinctive passphrase')
      expect(JSON.stringify(stored)).not.toContain('a distinctive passphrase')
    })
  })

  describe('login', () => {
    it('answers the token pair, the user without internals and no workspace', async () => {
      const user = await register(app)
      const response = await login(app, { email: user.email, password: PASSWORD })
      expect(response.statusCode, response.body).toBe(200)
      const body = response.json()
      expect(Object.keys(body).sort()).toEqual(PAIR_KEYS)
      expect(Object.keys(body.user).sort()).toEqual(USER_KEYS)
      expect(body.user).toEqual({
        id: user.id,
        email: user.email,
        name: user.name,
        mfaEnabled: false,
        createdAt: user.createdAt,
      })
      expect(body.workspace).toBeNull()
      expect(body.expiresIn).toBe(900)
      expect(body.accessToken.split('.')).toHaveLength(3)
      expect(body.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(response.body).not.toMatch(/passwordHash|argon2|lastWorkspaceId|sealed/)

      // /me shows the same user, again without internals.
      const me = await app.inject({
        method: 'GET',
        url: '/auth/v1/me',
        headers: bearer(body.accessToken),
      })
      expect(me.statusCode).toBe(200)
      expect(Object.keys(me.json().user).sort()).toEqual(USER_KEYS)
      expect(me.body).not.toMatch(/passwordHash|argon2|lastWorkspaceId|sealed/)
    })

    it('sets the refresh cookie: Path=/, HttpOnly, SameSite=Lax, not Secure on http', async () => {
      const user = await register(app)
      const response = await login(app, { email: user.email, password: PASSWORD })
      expect(response.statusCode).toBe(200)
      const cookie = setCookieOf(response)
      const attributes = cookie.split(';').map((part) => part.trim())
      expect(attributes[0]).toBe(`${REFRESH_COOKIE_NAME}=${response.json().refreshToken}`)
      expect(attributes).toContain('Path=/')
      expect(attributes).toContain('HttpOnly')
      expect(attributes).toContain('SameSite=Lax')
      expect(attributes.map((part) => part.toLowerCase())).not.toContain('secure')
      // The cookie lives as long as the session (30 days idle by default).
      const expires = attributes.find((part) => part.startsWith('Expires='))
      const expiresAt = Date.parse(expires?.slice('Expires='.length) ?? '')
      expect(Math.abs(expiresAt - (Date.now() + 30 * 24 * 3600_000))).toBeLessThan(60_000)
    })

    it('gives unknown emails and wrong passwords the identical 401', async () => {
      const user = await register(app)
      const unknown = await login(
        app,
        { email: uniqueEmail('nobody'), password: PASSWORD },
        from(nextIp()),
      )
      const wrong = await login(
        app,
        { email: user.email, password: 'not the password' },
        from(nextIp()),
      )
      const unparseable = await login(
        app,
        { email: 'not an address', password: PASSWORD },
        from(nextIp()),
      )
      for (const response of [unknown, wrong, unparseable]) {
        expect(response.statusCode).toBe(401)
        expect(response.json()).toEqual(INVALID_CREDENTIALS)
      }
      expect(unknown.body).toBe(wrong.body)
    })

    it('records the client address (forwarded by the trusted hop) and user agent', async () => {
      const user = await register(app)
      const pair = await signIn(
        app,
        { email: user.email, password: PASSWORD },
        { 'x-forwarded-for': '192.0.2.33', 'user-agent': 'AccountsTest/1.0' },
      )
      const sessions = await app.inject({
        method: 'GET',
        url: '/auth/v1/sessions',
        headers: bearer(pair.accessToken),
      })
      expect(sessions.statusCode).toBe(200)
      expect(sessions.json().items).toEqual([
        expect.objectContaining({ ip: '192.0.2.33', userAgent: 'AccountsTest/1.0', current: true }),
      ])
    })
  })

  describe('login limits', () => {
    it('blocks an account after LOGIN_MAX_FAILURES_PER_ACCOUNT failures, whatever the IP', async () => {
      const user = await register(app)
      for (let attempt = 1; attempt <= 3; attempt++) {
        const response = await login(
          app,
          { email: user.email, password: 'wrong!!!' },
          from(nextIp()),
        )
        expect(response.statusCode, `attempt ${attempt}`).toBe(401)
        expect(response.json()).toEqual(INVALID_CREDENTIALS)
      }

      const blocked = await login(app, { email: user.email, password: 'wrong!!!' }, from(nextIp()))
      expect(blocked.statusCode).toBe(429)
      const body = blocked.json()
      expect(body).toMatchObject({
        ...errorCode(429, 'AUTH_RATE_LIMITED'),
        limitName: 'loginAttempts',
        scope: 'account',
        limit: 3,
      })
      expect(body.used).toBeGreaterThanOrEqual(3)
      expect(body.resetAt).toMatch(ISO_WITH_OFFSET)
      // The window is 15 minutes by default and began with the first failure.
      const resetIn = Date.parse(body.resetAt) - Date.now()
      expect(resetIn).toBeGreaterThan(14 * 60_000)
      expect(resetIn).toBeLessThanOrEqual(15 * 60_000)
      const retryAfter = Number(blocked.headers['retry-after'])
      expect(Number.isInteger(retryAfter)).toBe(true)
      expect(retryAfter).toBeGreaterThan(0)
      expect(retryAfter).toBeLessThanOrEqual(900)

      // Even the right password is refused while the account is blocked: no token leaks out.
      const right = await login(app, { email: user.email, password: PASSWORD }, from(nextIp()))
      expect(right.statusCode).toBe(429)
      expect(right.json()).toMatchObject({ code: 'AUTH_RATE_LIMITED', scope: 'account' })
      expect(right.body).not.toContain('accessToken')

      // Someone else, from somewhere else, is unaffected.
      const other = await register(app)
      const otherLogin = await login(
        app,
        { email: other.email, password: PASSWORD },
        from(nextIp()),
      )
      expect(otherLogin.statusCode).toBe(200)
      expect(otherLogin.json().user.id).toBe(other.id)
    })

    it('counts failures for unknown emails too, so the limiter reveals no accounts', async () => {
      const email = uniqueEmail('ghost')
      for (let attempt = 1; attempt <= 3; attempt++)
        expect((await login(app, { email, password: 'x' }, from(nextIp()))).statusCode).toBe(401)
      const blocked = await login(app, { email, password: 'x' }, from(nextIp()))
      expect(blocked.statusCode).toBe(429)
      expect(blocked.json()).toMatchObject({ code: 'AUTH_RATE_LIMITED', scope: 'account' })
    })

    it('lets no more guesses through when they arrive all at once', async () => {
      const user = await register(app)
      const answers = await Promise.all(
        Array.from({ length: 20 }, () =>
          login(app, { email: user.email, password: 'guess!!!' }, from(nextIp())),
        ),
      )
      const statuses = answers.map((answer) => answer.statusCode).sort()
      // Each attempt is counted before its password is checked, so only the limit's worth of
      // parallel guesses reach Argon2.
      expect(statuses.filter((status) => status === 401)).toHaveLength(3)
      expect(statuses.filter((status) => status === 429)).toHaveLength(17)
    })

    it('resets the account count on a successful sign-in', async () => {
      const user = await register(app)
      const wrong = () => login(app, { email: user.email, password: 'wrong!!!' }, from(nextIp()))
      for (let attempt = 1; attempt <= 2; attempt++) expect((await wrong()).statusCode).toBe(401)
      await signIn(app, { email: user.email, password: PASSWORD }, from(nextIp()))
      // Without the reset the second of these would already be blocked (2 + 1 = 3 failures).
      for (let attempt = 1; attempt <= 3; attempt++)
        expect((await wrong()).statusCode, `attempt ${attempt} after success`).toBe(401)
      const blocked = await wrong()
      expect(blocked.statusCode).toBe(429)
      expect(blocked.json()).toMatchObject({ code: 'AUTH_RATE_LIMITED', scope: 'account' })
    })

    it('blocks one client address after LOGIN_MAX_FAILURES_PER_IP failures across accounts', async () => {
      const client = from('203.0.113.50')
      for (let attempt = 1; attempt <= 5; attempt++) {
        const response = await login(app, { email: uniqueEmail('spray'), password: 'x' }, client)
        expect(response.statusCode, `attempt ${attempt}`).toBe(401)
      }
      const blocked = await login(app, { email: uniqueEmail('spray'), password: 'x' }, client)
      expect(blocked.statusCode).toBe(429)
      expect(blocked.json()).toMatchObject({
        ...errorCode(429, 'AUTH_RATE_LIMITED'),
        limitName: 'loginAttempts',
        scope: 'ip',
        limit: 5,
        used: 5,
      })
      expect(blocked.json().resetAt).toMatch(ISO_WITH_OFFSET)
      expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0)

      // A real user behind that address is blocked too…
      const user = await register(app)
      const fromBlocked = await login(app, { email: user.email, password: PASSWORD }, client)
      expect(fromBlocked.statusCode).toBe(429)
      expect(fromBlocked.json()).toMatchObject({ code: 'AUTH_RATE_LIMITED', scope: 'ip' })
      // …but each X-Forwarded-For from the trusted hop is its own client.
      const elsewhere = await login(
        app,
        { email: user.email, password: PASSWORD },
        from('203.0.113.51'),
      )
      expect(elsewhere.statusCode).toBe(200)
      const stranger = await login(
        app,
        { email: uniqueEmail('spray'), password: 'x' },
        from('203.0.113.52'),
      )
      expect(stranger.statusCode).toBe(401)
      expect(stranger.json()).toEqual(INVALID_CREDENTIALS)
    })
  })
})

describe('X-Forwarded-For from an untrusted hop', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    // app.inject comes from 127.0.0.1, which this deployment does not trust as its gateway.
    ;({ app } = await startTestAuth({
      TRUSTED_PROXIES: '10.9.9.9',
      LOGIN_MAX_FAILURES_PER_IP: '5',
    }))
  })
  afterAll(() => app.close())

  it('is ignored: every attempt counts against the connecting address', async () => {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const response = await login(
        app,
        { email: uniqueEmail('spoof'), password: 'x' },
        from(`203.0.113.${100 + attempt}`),
      )
      expect(response.statusCode, `attempt ${attempt}`).toBe(401)
    }
    const blocked = await login(
      app,
      { email: uniqueEmail('spoof'), password: 'x' },
      from('203.0.113.200'),
    )
    expect(blocked.statusCode).toBe(429)
    expect(blocked.json()).toMatchObject({
      code: 'AUTH_RATE_LIMITED',
      scope: 'ip',
      limit: 5,
      used: 5,
    })
  })

  it('records the connecting address on the session, not the claimed one', async () => {
    const { app: fresh } = await startTestAuth({ TRUSTED_PROXIES: '10.9.9.9' })
    try {
      const user = await register(fresh)
      const pair = await signIn(
        fresh,
        { email: user.email, password: PASSWORD },
        from('192.0.2.99'),
      )
      const sessions = await fresh.inject({
        method: 'GET',
        url: '/auth/v1/sessions',
        headers: bearer(pair.accessToken),
      })
      expect(sessions.statusCode).toBe(200)
      expect(sessions.json().items).toEqual([expect.objectContaining({ ip: '127.0.0.1' })])
    } finally {
      await fresh.close()
    }
  })
})

describe('refresh cookie on an https deployment', () => {
  it('is Secure', async () => {
    const { app } = await startTestAuth({ PUBLIC_URL: 'https://platform.test' })
    try {
      const user = await register(app)
      const response = await login(app, { email: user.email, password: PASSWORD })
      expect(response.statusCode).toBe(200)
      const attributes = setCookieOf(response)
        .split(';')
        .map((part) => part.trim())
      expect(attributes).toContain('Secure')
      expect(attributes).toContain('HttpOnly')
      expect(attributes).toContain('SameSite=Lax')
      expect(attributes).toContain('Path=/')
    } finally {
      await app.close()
    }
  })
})

describe('sign-in timing with the real Argon2 cost', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    // The defaults (64 MiB, 3 passes, 4 lanes), not the cheap test cost.
    ;({ app } = await startTestAuth({
      ARGON2_MEMORY_KIB: '65536',
      ARGON2_TIME_COST: '3',
      ARGON2_PARALLELISM: '4',
    }))
  })
  afterAll(() => app.close())

  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b)
    return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
  }

  it('takes as long for an unknown email as for a wrong password', {
    timeout: 60_000,
  }, async () => {
    const user = await register(app)
    const stored = await usersCollection(app).findOne({ email: user.email })
    expect(stored?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=65536,p=4,t=3\$/)

    const timed = async (email: string, ip: string) => {
      const started = performance.now()
      const response = await login(app, { email, password: 'definitely wrong' }, from(ip))
      const elapsed = performance.now() - started
      expect(response.statusCode).toBe(401)
      expect(response.json()).toEqual(INVALID_CREDENTIALS)
      return elapsed
    }
    // One of each first, so lazy initialisation counts against neither side.
    await timed(uniqueEmail('warmup'), '192.0.2.200')
    await timed(user.email, '192.0.2.201')

    const unknown: number[] = []
    const wrong: number[] = []
    // Interleaved, so drift in machine load hits both sides alike.
    for (let round = 0; round < 5; round++) {
      unknown.push(await timed(uniqueEmail('timing'), `192.0.2.${210 + round}`))
      wrong.push(await timed(user.email, `192.0.2.${220 + round}`))
    }
    const ratio = median(unknown) / median(wrong)
    expect(ratio, `unknown ${unknown.join(', ')} / wrong ${wrong.join(', ')}`).toBeGreaterThan(0.5)
    expect(ratio).toBeLessThan(2)
  })
})
