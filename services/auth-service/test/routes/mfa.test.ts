import type { FastifyInstance } from 'fastify'
import { Secret, TOTP } from 'otpauth'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { UserDocument } from '../../src/lib/users.js'
import {
  bearer,
  errorCode,
  login,
  me,
  PASSWORD,
  register,
  signIn,
  sleep,
  type TestUser,
} from '../helpers/auth-requests.js'
import { startTestAuth } from '../helpers/build.js'

const PERIOD_MS = 30_000

const totpOf = (secret: string) =>
  new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 })
const codeAt = (secret: string, step: number) =>
  totpOf(secret).generate({ timestamp: step * PERIOD_MS })
const stepNow = () => Math.floor(Date.now() / PERIOD_MS)

/**
 * A TOTP step S with at least `headroomMs` left in it. Codes of S-1, S and S+1 are all accepted
 * while the clock is in S, so a test can use three codes in a row without waiting for the clock.
 */
async function stepWithHeadroom(headroomMs = 2_000): Promise<number> {
  const left = PERIOD_MS - (Date.now() % PERIOD_MS)
  if (left < headroomMs) await sleep(left + 50)
  return stepNow()
}

/** A six-digit code that no step near now accepts. */
function wrongCode(secret: string, step: number): string {
  const valid = new Set([-2, -1, 0, 1, 2].map((delta) => codeAt(secret, step + delta)))
  for (let candidate = 0; ; candidate++) {
    const code = String(candidate * 111_111 + 123_457).slice(-6)
    if (!valid.has(code)) return code
  }
}

describe('TOTP two-factor sign-in', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    ;({ app } = await startTestAuth())
  })
  afterAll(() => app.close())

  const users = () => app.mongo.collection<UserDocument>('users')
  const sessionCount = (userId: string) =>
    app.mongo.collection('sessions').countDocuments({ userId })
  const post = (path: string, accessToken: string, payload?: object) =>
    app.inject({
      method: 'POST',
      url: `/auth/v1/mfa/totp/${path}`,
      headers: bearer(accessToken),
      ...(payload === undefined ? {} : { payload }),
    })

  async function setUp() {
    const user = await register(app)
    const pair = await signIn(app, { email: user.email, password: PASSWORD })
    const response = await post('setup', pair.accessToken)
    expect(response.statusCode, response.body).toBe(200)
    const { secret, otpauthUri } = response.json<{ secret: string; otpauthUri: string }>()
    return { user, accessToken: pair.accessToken, secret, otpauthUri }
  }

  /** A user with MFA on, enabled with the code of step S-1 so S and S+1 are still unused. */
  async function withMfa() {
    const setup = await setUp()
    const step = await stepWithHeadroom()
    const response = await post('enable', setup.accessToken, {
      code: codeAt(setup.secret, step - 1),
    })
    expect(response.statusCode, response.body).toBe(200)
    const { backupCodes } = response.json<{ backupCodes: string[] }>()
    return { ...setup, step, backupCodes }
  }

  const loginWith = (user: TestUser, totp?: string) =>
    login(app, { email: user.email, password: PASSWORD, ...(totp === undefined ? {} : { totp }) })

  it('sets up a secret and answers its otpauth URI', async () => {
    const { user, secret, otpauthUri } = await setUp()
    expect(secret).toMatch(/^[A-Z2-7]{32}$/)
    const uri = new URL(otpauthUri)
    expect(uri.protocol).toBe('otpauth:')
    expect(uri.host).toBe('totp')
    expect(decodeURIComponent(uri.pathname)).toContain(user.email)
    expect(Object.fromEntries(uri.searchParams)).toEqual({
      issuer: 'platform.test',
      secret,
      algorithm: 'SHA1',
      digits: '6',
      period: '30',
    })

    // Sealed at rest, and not on until a first code proves the app has it.
    const stored = await users().findOne({ _id: user.id })
    expect(stored?.mfa).toMatchObject({ enabled: false, sealedSecret: null })
    expect(stored?.mfa.pendingSealedSecret).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/)
    expect(JSON.stringify(stored)).not.toContain(secret)
    expect((await loginWith(user)).statusCode).toBe(200)
  })

  it('refuses to enable with a wrong code, and stays off', async () => {
    const { user, accessToken, secret } = await setUp()
    const response = await post('enable', accessToken, { code: wrongCode(secret, stepNow()) })
    expect(response.statusCode).toBe(401)
    expect(response.json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))
    expect((await users().findOne({ _id: user.id }))?.mfa.enabled).toBe(false)
    expect((await loginWith(user)).statusCode).toBe(200)
  })

  it('refuses to enable before a setup', async () => {
    const user = await register(app)
    const pair = await signIn(app, { email: user.email, password: PASSWORD })
    const response = await post('enable', pair.accessToken, { code: '123456' })
    expect(response.statusCode).toBe(409)
    expect(response.json()).toMatchObject(errorCode(409, 'AUTH_MFA_CONFLICT'))
  })

  it('enables with a valid code and answers 10 distinct backup codes, stored as hashes', async () => {
    const { user, accessToken, secret, backupCodes } = await withMfa()
    expect(backupCodes).toHaveLength(10)
    expect(new Set(backupCodes).size).toBe(10)
    for (const code of backupCodes) expect(code).toMatch(/^[A-HJ-NP-Z2-9]{5}-[A-HJ-NP-Z2-9]{5}$/)

    const stored = await users().findOne({ _id: user.id })
    expect(stored?.mfa).toMatchObject({ enabled: true, pendingSealedSecret: null })
    expect(stored?.mfa.backupCodeHashes).toHaveLength(10)
    const dump = JSON.stringify(stored)
    expect(dump).not.toContain(secret)
    for (const code of backupCodes) {
      expect(dump).not.toContain(code)
      expect(dump).not.toContain(code.replace('-', ''))
    }
    expect((await me(app, accessToken)).json().user.mfaEnabled).toBe(true)
  })

  it('requires a code to sign in, and opens no session without one', async () => {
    const { user } = await withMfa()
    const before = await sessionCount(user.id)
    const response = await loginWith(user)
    expect(response.statusCode).toBe(401)
    expect(response.json()).toMatchObject(errorCode(401, 'AUTH_MFA_REQUIRED'))
    expect(response.headers['set-cookie']).toBeUndefined()
    expect(await sessionCount(user.id)).toBe(before)

    // A wrong password is still just a wrong password: it says nothing about MFA.
    const wrong = await login(app, { email: user.email, password: 'not it at all', totp: '123456' })
    expect(wrong.statusCode).toBe(401)
    expect(wrong.json()).toMatchObject(errorCode(401, 'AUTH_INVALID_CREDENTIALS'))
  })

  it('accepts a valid code once; the same code again is a replay', async () => {
    const { user, secret, step } = await withMfa()
    const code = codeAt(secret, step)
    const first = await loginWith(user, code)
    expect(first.statusCode, first.body).toBe(200)
    expect(first.json().user.mfaEnabled).toBe(true)

    const replay = await loginWith(user, code)
    expect(replay.statusCode).toBe(401)
    expect(replay.json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))
    const wrong = await loginWith(user, wrongCode(secret, step))
    expect(wrong.statusCode).toBe(401)
    expect(wrong.json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))
    // The code enable used is older still.
    const older = await loginWith(user, codeAt(secret, step - 1))
    expect(older.json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))
  })

  it('accepts each backup code once, however it is typed', async () => {
    const { user, backupCodes } = await withMfa()
    const [first = '', second = ''] = backupCodes
    const used = await loginWith(user, first)
    expect(used.statusCode, used.body).toBe(200)
    const again = await loginWith(user, first)
    expect(again.statusCode).toBe(401)
    expect(again.json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))

    const casual = await loginWith(user, second.toLowerCase().replace('-', ''))
    expect(casual.statusCode, casual.body).toBe(200)
    expect((await loginWith(user, second)).json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))
    expect((await users().findOne({ _id: user.id }))?.mfa.backupCodeHashes).toHaveLength(8)
  })

  it('refuses setup and enable while MFA is on', async () => {
    const { accessToken, secret, step } = await withMfa()
    const setup = await post('setup', accessToken)
    expect(setup.statusCode).toBe(409)
    expect(setup.json()).toMatchObject(errorCode(409, 'AUTH_MFA_CONFLICT'))
    const enable = await post('enable', accessToken, { code: codeAt(secret, step) })
    expect(enable.statusCode).toBe(409)
    expect(enable.json()).toMatchObject(errorCode(409, 'AUTH_MFA_CONFLICT'))
  })

  it('disables with a valid code; then sign-in needs none', async () => {
    const { user, accessToken, secret, step } = await withMfa()
    const wrong = await post('disable', accessToken, { code: wrongCode(secret, step) })
    expect(wrong.statusCode).toBe(401)
    expect(wrong.json()).toMatchObject(errorCode(401, 'AUTH_MFA_INVALID'))

    const response = await post('disable', accessToken, { code: codeAt(secret, step + 1) })
    expect(response.statusCode, response.body).toBe(204)
    expect(response.body).toBe('')
    const stored = await users().findOne({ _id: user.id })
    expect(stored?.mfa).toMatchObject({
      enabled: false,
      sealedSecret: null,
      backupCodeHashes: [],
    })
    const plain = await loginWith(user)
    expect(plain.statusCode).toBe(200)
    expect(plain.json().user.mfaEnabled).toBe(false)

    const again = await post('disable', accessToken, { code: codeAt(secret, step + 1) })
    expect(again.statusCode).toBe(409)
    expect(again.json()).toMatchObject(errorCode(409, 'AUTH_MFA_CONFLICT'))

    // Both changes wait in the audit outbox (no workspace-service is configured here).
    const events = await app.mongo
      .collection('audit_outbox')
      .find({ 'event.target.id': user.id, 'event.action': { $regex: /^auth\.mfa\./ } })
      .sort({ createdAt: 1 })
      .toArray()
    expect(events.map((entry) => entry.event)).toEqual([
      expect.objectContaining({
        action: 'auth.mfa.enabled',
        actor: { type: 'user', id: user.id },
        before: { mfaEnabled: false },
        after: { mfaEnabled: true },
      }),
      expect.objectContaining({
        action: 'auth.mfa.disabled',
        actor: { type: 'user', id: user.id },
        after: { mfaEnabled: false, confirmedWith: 'totp' },
      }),
    ])
  })

  it('answers 401 without a bearer token', async () => {
    for (const path of ['setup', 'enable', 'disable']) {
      const response = await app.inject({
        method: 'POST',
        url: `/auth/v1/mfa/totp/${path}`,
        payload: { code: '123456' },
      })
      expect(response.statusCode, path).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
    }
  })
})
