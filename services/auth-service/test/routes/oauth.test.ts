import { REFRESH_COOKIE_NAME } from '@platform/shared-types'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Secret, TOTP } from 'otpauth'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { BuildOptions } from '../../src/app.js'
import { startTestAuth, TEST_PUBLIC_URL, type TestAuth } from '../helpers/build.js'
import {
  driveAuthorization,
  startTestIdp,
  type TestAccount,
  type TestIdp,
} from '../helpers/test-idp.js'

const redirectUri = (provider: string) => `${TEST_PUBLIC_URL}/auth/v1/oauth/${provider}/callback`
const CORP = { clientId: 'platform-corp', clientSecret: 'corp-client-secret' }
const GITHUB = { clientId: 'platform-github', clientSecret: 'github-client-secret' }
const COUNTED_COLLECTIONS = ['users', 'identities', 'sessions', 'refresh_tokens'] as const

let idp: TestIdp
let auth: TestAuth
let app: FastifyInstance

/** The env and options of an auth-service that knows the test provider as `corp` and GitHub. */
function providerSetup(
  provider: TestIdp,
  options: BuildOptions = { allowInsecureOAuthIssuers: true },
): [NodeJS.ProcessEnv, BuildOptions] {
  return [
    {
      OIDC_PROVIDERS: JSON.stringify([
        { name: 'corp', displayName: 'Corp', issuer: provider.issuer, ...CORP },
      ]),
      GITHUB_CLIENT_ID: GITHUB.clientId,
      GITHUB_CLIENT_SECRET: GITHUB.clientSecret,
    },
    {
      ...options,
      oauthEndpointOverrides: {
        github: {
          issuer: provider.issuer,
          authorizationEndpoint: `${provider.issuer}/auth`,
          tokenEndpoint: `${provider.issuer}/token`,
          apiBaseUrl: provider.issuer,
        },
      },
    },
  ]
}

const testClients = () => [
  { ...CORP, redirectUris: [redirectUri('corp')] },
  { ...GITHUB, redirectUris: [redirectUri('github')], githubStyle: true },
]

beforeAll(async () => {
  idp = await startTestIdp({ clients: testClients() })
  auth = await startTestAuth(...providerSetup(idp))
  app = auth.app
})

afterAll(async () => {
  await auth?.app.close()
  await idp?.close()
})

afterEach(() => {
  idp.outage = false
  expect(idp.serverErrors).toEqual([])
})

let accountCount = 0
/** A new person at the provider, with an address no other test uses. */
function newAccount(overrides: Partial<TestAccount> = {}, provider = idp): TestAccount {
  accountCount += 1
  const account: TestAccount = {
    sub: `person-${accountCount}`,
    email: `person-${accountCount}@example.com`,
    emailVerified: true,
    name: `Person ${accountCount}`,
    githubId: 1000 + accountCount,
    ...overrides,
  }
  provider.accounts.set(account.sub, account)
  return account
}

/** Our `start`: the provider's authorization URL, with the test's choice of account added. */
async function start(
  provider: string,
  loginHint: string,
  returnTo?: string,
  target: FastifyInstance = app,
) {
  const query = returnTo === undefined ? '' : `?returnTo=${encodeURIComponent(returnTo)}`
  const response = await target.inject({
    method: 'GET',
    url: `/auth/v1/oauth/${provider}/start${query}`,
  })
  expect(response.statusCode, response.body).toBe(302)
  expect(response.headers['cache-control']).toBe('no-store')
  const url = new URL(String(response.headers.location))
  const state = url.searchParams.get('state') ?? ''
  const flowCookie = response.cookies.find((cookie) => cookie.name === FLOW_COOKIE)
  expect(flowCookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/auth/v1/oauth' })
  browserOf.set(state, String(flowCookie?.value))
  url.searchParams.set('login_hint', loginHint)
  return { url, state }
}

/** Start, then the browser at the provider: the callback URL the provider redirects to. */
async function authorize(
  provider: string,
  loginHint: string,
  returnTo?: string,
  target: FastifyInstance = app,
) {
  const started = await start(provider, loginHint, returnTo, target)
  return { ...started, callback: await driveAuthorization(started.url, redirectUri(provider)) }
}

/** The browser that started each flow, by state: its flow cookie goes back with the callback. */
const browserOf = new Map<string, string>()
const FLOW_COOKIE = 'platform_oauth_flow'

const callback = (url: URL, target: FastifyInstance = app) => {
  const binding = browserOf.get(url.searchParams.get('state') ?? '')
  return target.inject({
    method: 'GET',
    url: `${url.pathname}${url.search}`,
    ...(binding === undefined ? {} : { cookies: { [FLOW_COOKIE]: binding } }),
  })
}

async function signIn(provider: string, loginHint: string, returnTo?: string) {
  const { callback: url } = await authorize(provider, loginHint, returnTo)
  return callback(url)
}

const refreshCookie = (response: LightMyRequestResponse) =>
  response.cookies.find((cookie) => cookie.name === REFRESH_COOKIE_NAME)

function collection(name: string, target: FastifyInstance = app) {
  const db = target.mongo.db
  if (db === undefined) throw new Error('MongoDB is not connected')
  return db.collection(name)
}

/** What a hostile request must leave alone: the counted collections and our Redis keys. */
async function snapshot(target: TestAuth = auth) {
  const counts = { users: 0, identities: 0, sessions: 0, refresh_tokens: 0 }
  for (const name of COUNTED_COLLECTIONS)
    counts[name] = await collection(name, target.app).countDocuments()
  // keyPrefix is not applied to a KEYS pattern, but is to the keys it answers.
  const keys = (await target.app.redis.keys(`${target.redisKeyPrefix}*`)).sort()
  return { counts, keys }
}

const flowKeyOf = (state: string, target: TestAuth = auth) =>
  `${target.redisKeyPrefix}auth:oauth-flow:${state}`

/** Everything as before, except that the flow's state was used up. */
async function expectOnlyFlowConsumed(
  before: Awaited<ReturnType<typeof snapshot>>,
  state: string,
  target: TestAuth = auth,
) {
  expect(before.keys).toContain(flowKeyOf(state, target))
  expect(await snapshot(target)).toEqual({
    counts: before.counts,
    keys: before.keys.filter((key) => key !== flowKeyOf(state, target)),
  })
}

async function userByEmail(email: string) {
  const user = await app.identity.models.users.findOne({ email }).lean()
  if (user === null) throw new Error(`no user ${email}`)
  return user
}

async function register(email: string, password: string) {
  const response = await app.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email, password, name: 'Registered' },
  })
  expect(response.statusCode, response.body).toBe(201)
}

const passwordLogin = (email: string, password: string) =>
  app.inject({ method: 'POST', url: '/auth/v1/login', payload: { email, password } })

const refresh = (refreshToken: string) =>
  app.inject({ method: 'POST', url: '/auth/v1/token/refresh', payload: { refreshToken } })

const totpCode = (secret: string, timestamp = Date.now()) =>
  new TOTP({
    secret: Secret.fromBase32(secret),
    algorithm: 'SHA1',
    digits: 6,
    period: 30,
  }).generate({ timestamp })

describe('OIDC sign-in', () => {
  it('creates the account and its identity, sets the refresh cookie and returns to returnTo', async () => {
    const person = newAccount()
    const {
      url,
      state,
      callback: url2,
    } = await authorize('corp', person.sub, '/workspaces/w1?tab=2')
    expect(url.origin).toBe(idp.issuer)
    expect(url.searchParams.get('redirect_uri')).toBe(redirectUri('corp'))
    expect(url.searchParams.get('code_challenge_method')).toBe('S256')
    expect(url.searchParams.get('code_challenge')).toMatch(/^[\w-]{43}$/)
    expect(url.searchParams.get('nonce')).toMatch(/^[\w-]{43}$/)
    expect(url.searchParams.get('scope')).toBe('openid email profile')
    const ttl = await app.redis.ttl(`auth:oauth-flow:${state}`)
    expect(ttl).toBeGreaterThan(590)
    expect(ttl).toBeLessThanOrEqual(600)
    const before = await snapshot()

    const response = await callback(url2)
    expect(response.statusCode, response.body).toBe(302)
    expect(response.headers.location).toBe(`${TEST_PUBLIC_URL}/workspaces/w1?tab=2`)
    const cookie = refreshCookie(response)
    expect(cookie).toMatchObject({ path: '/', httpOnly: true, sameSite: 'Lax' })
    expect(cookie?.secure).toBeFalsy()
    expect(await app.redis.exists(`auth:oauth-flow:${state}`)).toBe(0)

    const user = await userByEmail(person.email)
    expect(user).toMatchObject({ name: person.name, emailVerified: true, passwordHash: null })
    const identities = await app.identity.models.identities.find({ userId: user._id }).lean()
    expect(identities).toMatchObject([
      { provider: 'corp', subject: person.sub, email: person.email },
    ])
    const sessions = await app.identity.sessions.listLive(user._id)
    expect(sessions).toMatchObject([{ method: 'oauth:corp' }])
    const after = await snapshot()
    expect(after.counts).toEqual({
      users: before.counts.users + 1,
      identities: before.counts.identities + 1,
      sessions: before.counts.sessions + 1,
      refresh_tokens: before.counts.refresh_tokens + 1,
    })

    const refreshed = await refresh(cookie?.value ?? '')
    expect(refreshed.statusCode, refreshed.body).toBe(200)
    expect(refreshed.json().user).toMatchObject({ id: user._id, email: person.email })
  })

  it('signs the same identity in to the same account the next time', async () => {
    const person = newAccount()
    expect((await signIn('corp', person.sub)).statusCode).toBe(302)
    const user = await userByEmail(person.email)
    const before = await snapshot()

    const again = await signIn('corp', person.sub)
    expect(again.statusCode, again.body).toBe(302)
    expect(again.headers.location).toBe(`${TEST_PUBLIC_URL}/`)
    const after = await snapshot()
    expect(after.counts).toMatchObject({
      users: before.counts.users,
      identities: before.counts.identities,
      sessions: before.counts.sessions + 1,
    })
    expect(await app.identity.sessions.listLive(user._id)).toHaveLength(2)
  })

  it('reads the email from userinfo when the issuer keeps it out of the ID token', async () => {
    const strictIdp = await startTestIdp({ clients: testClients(), emailInIdToken: false })
    const strict = await startTestAuth(...providerSetup(strictIdp))
    try {
      const person = newAccount({}, strictIdp)
      const { callback: url } = await authorize('corp', person.sub, undefined, strict.app)
      const response = await callback(url, strict.app)
      expect(response.statusCode, response.body).toBe(302)
      const user = await strict.app.identity.models.users.findOne({ email: person.email }).lean()
      expect(user).toMatchObject({ emailVerified: true, name: person.name })
      expect(strictIdp.serverErrors).toEqual([])
    } finally {
      await strict.app.close()
      await strictIdp.close()
    }
  })

  it('lets two callbacks of a new person race without a second account or identity', async () => {
    const person = newAccount()
    const first = await authorize('corp', person.sub)
    const second = await authorize('corp', person.sub)
    const answers = await Promise.all([callback(first.callback), callback(second.callback)])
    expect(answers.map((answer) => answer.statusCode)).toEqual([302, 302])
    const user = await userByEmail(person.email)
    expect(await app.identity.models.users.countDocuments({ email: person.email })).toBe(1)
    expect(
      await app.identity.models.identities.countDocuments({
        provider: 'corp',
        subject: person.sub,
      }),
    ).toBe(1)
    expect(await app.identity.sessions.listLive(user._id)).toHaveLength(2)
  })

  it("cleans the provider's display name, or names the account after the address", async () => {
    const spoofing = newAccount({ name: ' Eve\u202Enimda\u0007 ' })
    const nameless = newAccount({ name: undefined, email: 'no-name-given@example.com' })
    for (const person of [spoofing, nameless])
      expect((await signIn('corp', person.sub)).statusCode).toBe(302)
    expect((await userByEmail(spoofing.email)).name).toBe('Evenimda')
    expect((await userByEmail(nameless.email)).name).toBe('no-name-given')
  })

  it('ignores a returnTo that is not a path on our own site', async () => {
    const cases: [string, string][] = [
      ['//evil.example/x', '/'],
      ['/\\evil.example', '/'],
      ['https://evil.example/', '/'],
      ['relative/path', '/'],
      ['/ok\u0000', '/'],
      ['/workspaces?x=1#frag', '/workspaces?x=1#frag'],
    ]
    for (const [returnTo, stored] of cases) {
      const { state } = await start('corp', 'nobody', returnTo)
      const flow = JSON.parse((await app.redis.getdel(`auth:oauth-flow:${state}`)) ?? '{}')
      expect(flow.returnTo, returnTo).toBe(stored)
    }
  })
})

describe('GitHub sign-in', () => {
  it('uses state and PKCE without a nonce and takes the verified primary email', async () => {
    const person = newAccount({
      email: 'unused@example.com',
      githubEmails: [
        { email: 'old-address@example.com', primary: false, verified: true },
        { email: 'gh-primary@example.com', primary: true, verified: true },
      ],
    })
    const { url, callback: url2 } = await authorize('github', person.sub, '/after-github')
    expect(url.origin).toBe(idp.issuer)
    expect(url.searchParams.has('nonce')).toBe(false)
    expect(url.searchParams.get('code_challenge_method')).toBe('S256')
    expect(url.searchParams.get('code_challenge')).toMatch(/^[\w-]{43}$/)
    expect(url.searchParams.get('scope')).toBe('user:email')
    expect(url.searchParams.get('redirect_uri')).toBe(redirectUri('github'))

    const response = await callback(url2)
    expect(response.statusCode, response.body).toBe(302)
    expect(response.headers.location).toBe(`${TEST_PUBLIC_URL}/after-github`)
    expect(refreshCookie(response)).toBeDefined()
    const user = await userByEmail('gh-primary@example.com')
    expect(user.name).toBe(person.name)
    expect(await app.identity.models.identities.findOne({ userId: user._id }).lean()).toMatchObject(
      { provider: 'github', subject: String(person.githubId) },
    )
    expect(await app.identity.sessions.listLive(user._id)).toMatchObject([
      { method: 'oauth:github' },
    ])
  })

  it('takes a verified secondary address when the primary one is unverified', async () => {
    const person = newAccount({
      githubEmails: [
        { email: 'gh-unproven@example.com', primary: true, verified: false },
        { email: 'gh-proven@example.com', primary: false, verified: true },
      ],
    })
    expect((await signIn('github', person.sub)).statusCode).toBe(302)
    await userByEmail('gh-proven@example.com')
    expect(
      await app.identity.models.users.countDocuments({ email: 'gh-unproven@example.com' }),
    ).toBe(0)
  })
})

describe('account linking', () => {
  it('links to an existing verified account, keeping its password and sessions', async () => {
    const email = 'verified-owner@example.com'
    await register(email, 'owner password 1')
    await collection('users').updateOne({ email }, { $set: { emailVerified: true } })
    const login = await passwordLogin(email, 'owner password 1')
    expect(login.statusCode, login.body).toBe(200)
    const owner = await userByEmail(email)
    // The provider spells the address differently; normalization finds the account.
    const person = newAccount({ email: 'Verified-Owner@EXAMPLE.com' })
    const before = await snapshot()

    const response = await signIn('corp', person.sub)
    expect(response.statusCode, response.body).toBe(302)
    const after = await snapshot()
    expect(after.counts).toMatchObject({
      users: before.counts.users,
      identities: before.counts.identities + 1,
    })
    expect(
      await app.identity.models.identities
        .findOne({ provider: 'corp', subject: person.sub })
        .lean(),
    ).toMatchObject({ userId: owner._id, email })
    expect((await passwordLogin(email, 'owner password 1')).statusCode).toBe(200)
    expect((await refresh(login.json().refreshToken)).statusCode).toBe(200)
  })

  it('links a second provider to the account the first one created', async () => {
    const person = newAccount({ email: 'two-providers@example.com' })
    expect((await signIn('corp', person.sub)).statusCode).toBe(302)
    expect((await signIn('github', person.sub)).statusCode).toBe(302)
    const user = await userByEmail(person.email)
    const identities = await app.identity.models.identities.find({ userId: user._id }).lean()
    expect(identities.map((entry) => entry.provider).sort()).toEqual(['corp', 'github'])
  })

  it('takes over an unverified password account: its password and sessions end', async () => {
    const email = 'squatted@example.com'
    const password = 'attacker password'
    await register(email, password)
    const login = await passwordLogin(email, password)
    expect(login.statusCode, login.body).toBe(200)
    const squatter = login.json()
    const bearer = { authorization: `Bearer ${squatter.accessToken}` }
    const account = await userByEmail(email)
    const person = newAccount({ email })
    const before = await snapshot()

    const response = await signIn('corp', person.sub, '/home')
    expect(response.statusCode, response.body).toBe(302)
    expect(response.headers.location).toBe(`${TEST_PUBLIC_URL}/home`)
    expect(refreshCookie(response)).toBeDefined()

    const claimed = await userByEmail(email)
    expect(claimed).toMatchObject({ _id: account._id, emailVerified: true, passwordHash: null })
    expect(
      await app.identity.models.identities
        .findOne({ provider: 'corp', subject: person.sub })
        .lean(),
    ).toMatchObject({ userId: account._id })
    expect((await snapshot()).counts).toMatchObject({
      users: before.counts.users,
      identities: before.counts.identities + 1,
    })

    const oldPassword = await passwordLogin(email, password)
    expect(oldPassword.statusCode).toBe(401)
    expect(oldPassword.json().code).toBe('AUTH_INVALID_CREDENTIALS')
    const oldRefresh = await refresh(squatter.refreshToken)
    expect(oldRefresh.statusCode).toBe(401)
    expect(oldRefresh.json().code).toBe('AUTH_SESSION_REVOKED')
    const oldAccess = await app.inject({ method: 'GET', url: '/auth/v1/me', headers: bearer })
    expect(oldAccess.json().code).toBe('AUTH_SESSION_REVOKED')
    const live = await app.identity.sessions.listLive(account._id)
    expect(live).toMatchObject([{ method: 'oauth:corp' }])

    const event = await collection('audit_outbox').findOne({
      'event.action': 'auth.account.linked',
      'event.target.id': account._id,
    })
    expect(event?.event).toMatchObject({
      before: { emailVerified: false, hasPassword: true, mfaEnabled: false },
      after: { emailVerified: true, hasPassword: false, mfaEnabled: false, revokedSessions: 1 },
    })
  })

  it('never claims an account with MFA on: the provider sign-in still needs its second factor', async () => {
    const email = 'guarded@example.com'
    const password = 'owner password'
    await register(email, password)
    const login = await passwordLogin(email, password)
    const bearer = { authorization: `Bearer ${login.json().accessToken}` }
    const setup = await app.inject({
      method: 'POST',
      url: '/auth/v1/mfa/totp/setup',
      headers: bearer,
    })
    const enable = await app.inject({
      method: 'POST',
      url: '/auth/v1/mfa/totp/enable',
      headers: bearer,
      payload: { code: totpCode(setup.json().secret) },
    })
    expect(enable.statusCode, enable.body).toBe(200)
    const account = await userByEmail(email)

    const response = await signIn('corp', newAccount({ email }).sub)
    expect(response.statusCode, response.body).toBe(302)
    expect(String(response.headers.location)).toMatch(/\/login\/mfa\?ticket=/)
    expect(refreshCookie(response)).toBeUndefined()
    const after = await userByEmail(email)
    expect(after).toMatchObject({ passwordHash: account.passwordHash, emailVerified: false })
    expect(after.mfa.enabled).toBe(true)
    expect(await app.identity.sessions.listLive(account._id)).toHaveLength(1)
  })
})

describe('refused callbacks', () => {
  it('refuses an address the provider does not vouch for and writes nothing', async () => {
    const person = newAccount({ emailVerified: false })
    const { state, callback: url } = await authorize('corp', person.sub)
    const before = await snapshot()
    const response = await callback(url)
    expect(response.statusCode, response.body).toBe(403)
    expect(response.json().code).toBe('AUTH_OAUTH_EMAIL_UNVERIFIED')
    await expectOnlyFlowConsumed(before, state)
    expect(await app.identity.models.users.countDocuments({ email: person.email })).toBe(0)

    const gitHubPerson = newAccount({
      githubEmails: [{ email: 'gh-never-proven@example.com', primary: true, verified: false }],
    })
    const gitHub = await authorize('github', gitHubPerson.sub)
    const gitHubBefore = await snapshot()
    const gitHubResponse = await callback(gitHub.callback)
    expect(gitHubResponse.statusCode, gitHubResponse.body).toBe(403)
    expect(gitHubResponse.json().code).toBe('AUTH_OAUTH_EMAIL_UNVERIFIED')
    await expectOnlyFlowConsumed(gitHubBefore, gitHub.state)
  })

  it('refuses an address the provider vouches for but we do not accept', async () => {
    const person = newAccount({ email: 'pаypal@example.com' })
    const { state, callback: url } = await authorize('corp', person.sub)
    const before = await snapshot()
    const response = await callback(url)
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json().code).toBe('AUTH_INVALID_EMAIL')
    await expectOnlyFlowConsumed(before, state)
  })

  it('refuses a wrong or missing state and keeps the real one', async () => {
    const person = newAccount()
    const { callback: url } = await authorize('corp', person.sub)
    const before = await snapshot()
    for (const state of ['A'.repeat(43), null, 'short', 'has spaces in it and is long enough']) {
      const forged = new URL(url)
      if (state === null) forged.searchParams.delete('state')
      else forged.searchParams.set('state', state)
      const response = await callback(forged)
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json().code).toBe('AUTH_OAUTH_STATE_INVALID')
    }
    expect(await snapshot()).toEqual(before)
  })

  it('refuses a callback from a browser that did not start the sign-in (login CSRF)', async () => {
    const person = newAccount()
    const { state, callback: url } = await authorize('corp', person.sub)
    const before = await snapshot()
    // The attacker's callback URL, opened in the victim's browser: no flow cookie, or the
    // victim's own from a sign-in of theirs.
    const lured = await app.inject({
      method: 'GET',
      url: `${url.pathname}${url.search}`,
      cookies: { [FLOW_COOKIE]: 'victims-own-flow-cookie-value-0123456789' },
    })
    expect(lured.statusCode, lured.body).toBe(400)
    expect(lured.json().code).toBe('AUTH_OAUTH_STATE_INVALID')
    expect(refreshCookie(lured)).toBeUndefined()
    await expectOnlyFlowConsumed(before, state)
    const bare = await app.inject({ method: 'GET', url: `${url.pathname}${url.search}` })
    expect(bare.statusCode, bare.body).toBe(400)
  })

  it('accepts a state once', async () => {
    const person = newAccount()
    const { callback: url } = await authorize('corp', person.sub)
    expect((await callback(url)).statusCode).toBe(302)
    const before = await snapshot()
    const replay = await callback(url)
    expect(replay.statusCode, replay.body).toBe(400)
    expect(replay.json().code).toBe('AUTH_OAUTH_STATE_INVALID')
    expect(await snapshot()).toEqual(before)
  })

  it('accepts a state only at the provider that issued it', async () => {
    const person = newAccount()
    const { state, callback: url } = await authorize('corp', person.sub)
    const before = await snapshot()
    const elsewhere = new URL(url)
    elsewhere.pathname = '/auth/v1/oauth/github/callback'
    const response = await callback(elsewhere)
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json().code).toBe('AUTH_OAUTH_STATE_INVALID')
    await expectOnlyFlowConsumed(before, state)
  })

  it('refuses a used authorization code presented with a fresh, valid state', async () => {
    for (const provider of ['corp', 'github']) {
      const person = newAccount()
      const first = await authorize(provider, person.sub)
      expect((await callback(first.callback)).statusCode).toBe(302)
      const usedCode = first.callback.searchParams.get('code') ?? ''

      const fresh = await start(provider, person.sub)
      const crafted = new URL(redirectUri(provider))
      crafted.searchParams.set('code', usedCode)
      crafted.searchParams.set('state', fresh.state)
      crafted.searchParams.set('iss', idp.issuer)
      const before = await snapshot()
      const response = await callback(crafted)
      expect(response.statusCode, `${provider}: ${response.body}`).toBe(400)
      // GitHub's "200 with an error body" is read as the rejected code it is.
      expect(response.json()).toMatchObject({
        code: 'AUTH_OAUTH_FAILED',
        message: 'The sign-in code is not valid, has expired or was already used; start again',
      })
      await expectOnlyFlowConsumed(before, fresh.state)
    }
  })

  it('reports a sign-in the user cancelled at the provider', async () => {
    const { state, callback: url } = await authorize('corp', 'deny')
    expect(url.searchParams.get('error')).toBe('access_denied')
    const before = await snapshot()
    const response = await callback(url)
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json()).toMatchObject({
      code: 'AUTH_OAUTH_FAILED',
      message: 'Sign-in with Corp was cancelled',
    })
    await expectOnlyFlowConsumed(before, state)
    const failures = await collection('audit_outbox')
      .find({ 'event.action': 'auth.login.failed', 'event.after.method': 'oauth:corp' })
      .sort({ createdAt: -1 })
      .limit(1)
      .toArray()
    expect(failures[0]?.event.after).toEqual({ method: 'oauth:corp', reason: 'AUTH_OAUTH_FAILED' })
  })

  it('answers 404 for a provider that is unknown or not configured', async () => {
    const before = await snapshot()
    for (const url of [
      '/auth/v1/oauth/nope/start',
      '/auth/v1/oauth/google/start',
      `/auth/v1/oauth/google/callback?code=x&state=${'A'.repeat(43)}`,
      '/auth/v1/oauth/NOT..a..name/start',
    ]) {
      const response = await app.inject({ method: 'GET', url })
      expect(response.statusCode, url).toBe(404)
      expect(response.json().code).toBe('AUTH_OAUTH_PROVIDER_UNKNOWN')
    }
    expect(await snapshot()).toEqual(before)
  })

  it('disables http providers unless insecure issuers are allowed', async () => {
    const lines: string[] = []
    const [env, options] = providerSetup(idp, {
      logDestination: { write: (line: string) => lines.push(line) },
    })
    const strict = await startTestAuth({ ...env, LOG_LEVEL: 'error' }, options)
    try {
      const before = await snapshot(strict)
      for (const provider of ['corp', 'github']) {
        const response = await strict.app.inject({
          method: 'GET',
          url: `/auth/v1/oauth/${provider}/start`,
        })
        expect(response.statusCode, response.body).toBe(404)
        expect(response.json().code).toBe('AUTH_OAUTH_PROVIDER_UNKNOWN')
      }
      expect(await snapshot(strict)).toEqual(before)
      const disabled = lines.filter((line) => line.includes('OAuth provider is not https'))
      expect(disabled.map((line) => JSON.parse(line).provider).sort()).toEqual(['corp', 'github'])
    } finally {
      await strict.app.close()
    }
  })

  it('answers 503 while the provider is unreachable, and tries discovery again later', async () => {
    // An app of its own, so discovery has not happened yet.
    const fresh = await startTestAuth(...providerSetup(idp))
    try {
      idp.outage = true
      const down = await fresh.app.inject({ method: 'GET', url: '/auth/v1/oauth/corp/start' })
      expect(down.statusCode, down.body).toBe(503)
      expect(down.json().code).toBe('AUTH_DEPENDENCY_UNAVAILABLE')
      expect(await snapshot(fresh)).toMatchObject({ keys: [] })

      idp.outage = false
      const person = newAccount()
      const { state, callback: url } = await authorize('corp', person.sub, undefined, fresh.app)
      const before = await snapshot(fresh)
      idp.outage = true
      const response = await callback(url, fresh.app)
      expect(response.statusCode, response.body).toBe(503)
      expect(response.json().code).toBe('AUTH_DEPENDENCY_UNAVAILABLE')
      await expectOnlyFlowConsumed(before, state, fresh)
    } finally {
      idp.outage = false
      await fresh.app.close()
    }
  })
})

describe('sign-in of an account with MFA', () => {
  it('asks for the second factor through a single-use ticket', async () => {
    const person = newAccount()
    const first = await signIn('corp', person.sub)
    expect(first.statusCode, first.body).toBe(302)
    const pair = (await refresh(refreshCookie(first)?.value ?? '')).json()
    const bearer = { authorization: `Bearer ${pair.accessToken}` }
    const setup = await app.inject({
      method: 'POST',
      url: '/auth/v1/mfa/totp/setup',
      headers: bearer,
    })
    const secret: string = setup.json().secret
    const enable = await app.inject({
      method: 'POST',
      url: '/auth/v1/mfa/totp/enable',
      headers: bearer,
      payload: { code: totpCode(secret) },
    })
    expect(enable.statusCode, enable.body).toBe(200)
    const user = await userByEmail(person.email)

    const ticketOf = async (returnTo?: string) => {
      const { state, callback: url } = await authorize('corp', person.sub, returnTo)
      const before = await snapshot()
      const response = await callback(url)
      expect(response.statusCode, response.body).toBe(302)
      const location = new URL(String(response.headers.location))
      expect(`${location.origin}${location.pathname}`).toBe(`${TEST_PUBLIC_URL}/login/mfa`)
      expect(refreshCookie(response)).toBeUndefined()
      const ticket = location.searchParams.get('ticket') ?? ''
      const ticketKey = `${auth.redisKeyPrefix}auth:oauth-mfa:${ticket}`
      // No session yet: only the flow's state traded for the ticket.
      expect(await snapshot()).toEqual({
        counts: before.counts,
        keys: [...before.keys.filter((key) => key !== flowKeyOf(state)), ticketKey].sort(),
      })
      const ttl = await app.redis.ttl(`auth:oauth-mfa:${ticket}`)
      expect(ttl).toBeGreaterThan(290)
      expect(ttl).toBeLessThanOrEqual(300)
      return ticket
    }
    const answer = (ticket: string, code: string) =>
      app.inject({ method: 'POST', url: '/auth/v1/oauth/mfa', payload: { ticket, code } })

    // A wrong code uses the ticket up and counts against the account.
    const wrongTicket = await ticketOf()
    const wrong = await answer(wrongTicket, '000000')
    expect(wrong.statusCode, wrong.body).toBe(401)
    expect(wrong.json().code).toBe('AUTH_MFA_INVALID')
    const afterWrong = await snapshot()
    expect(afterWrong.keys.some((key) => key.includes('auth:login-failures:account:'))).toBe(true)
    const reused = await answer(wrongTicket, totpCode(secret, Date.now() + 30_000))
    expect(reused.statusCode, reused.body).toBe(400)
    expect(reused.json().code).toBe('AUTH_OAUTH_STATE_INVALID')
    expect(await snapshot()).toEqual(afterWrong)

    const ticket = await ticketOf('/after-mfa')
    const before = await snapshot()
    const signedIn = await answer(ticket, totpCode(secret, Date.now() + 30_000))
    expect(signedIn.statusCode, signedIn.body).toBe(200)
    expect(signedIn.json()).toMatchObject({
      user: { id: user._id, email: person.email, mfaEnabled: true },
      returnTo: '/after-mfa',
      workspace: null,
    })
    expect(signedIn.json().accessToken).toEqual(expect.any(String))
    expect(refreshCookie(signedIn)).toMatchObject({
      value: signedIn.json().refreshToken,
      httpOnly: true,
    })
    expect((await snapshot()).counts).toMatchObject({ sessions: before.counts.sessions + 1 })
    const me = await app.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: { authorization: `Bearer ${signedIn.json().accessToken}` },
    })
    expect(me.json().user).toMatchObject({ id: user._id })

    const afterSignIn = await snapshot()
    const again = await answer(ticket, totpCode(secret, Date.now() + 30_000))
    expect(again.statusCode, again.body).toBe(400)
    expect(again.json().code).toBe('AUTH_OAUTH_STATE_INVALID')
    expect(await snapshot()).toEqual(afterSignIn)

    const strictBody = await app.inject({
      method: 'POST',
      url: '/auth/v1/oauth/mfa',
      payload: { ticket, code: '123456', extra: true },
    })
    expect(strictBody.statusCode).toBe(400)
    expect(strictBody.json().code).toBe('AUTH_VALIDATION')
  })
})
