import type { TokenPairResponse } from '@platform/shared-types'
import type { FastifyInstance } from 'fastify'
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JSONWebKeySet,
  jwtVerify,
} from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../src/lib/crypto.js'
import {
  type AuthWithDouble,
  bearer,
  closedPortUrl,
  errorCode,
  login,
  me,
  PASSWORD,
  refresh,
  register,
  signIn,
  startAuthWithDouble,
  type TestUser,
} from '../helpers/auth-requests.js'
import { startTestAuth, TEST_PUBLIC_URL } from '../helpers/build.js'

const ACCESS_TTL = 120

describe('access tokens and workspace scoping', () => {
  let auth: AuthWithDouble

  beforeAll(async () => {
    auth = await startAuthWithDouble({ ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TTL) })
  })
  afterAll(() => auth.close())

  const jwks = async () => (await auth.app.inject('/.well-known/jwks.json')).json<JSONWebKeySet>()
  const sessionCount = (userId: string) =>
    auth.app.mongo.collection('sessions').countDocuments({ userId })
  const switchTo = (accessToken: string, workspaceId: string) =>
    auth.app.inject({
      method: 'POST',
      url: '/auth/v1/token/switch',
      headers: bearer(accessToken),
      payload: { workspaceId },
    })
  const loginAs = (user: TestUser, workspaceId?: string) =>
    signIn(auth.app, {
      email: user.email,
      password: PASSWORD,
      ...(workspaceId === undefined ? {} : { workspaceId }),
    })

  /** A user who is a member of `ws-a` (owner) and `ws-b` (viewer), in that order. */
  async function memberOfTwo() {
    const user = await register(auth.app)
    auth.double.addMember(user.id, { workspaceId: 'ws-a', name: 'Alpha', role: 'owner' })
    auth.double.addMember(user.id, { workspaceId: 'ws-b', name: 'Beta', role: 'viewer' })
    return user
  }

  describe('the access token', () => {
    it('is an EdDSA JWT with a published kid and the documented claims', async () => {
      const user = await register(auth.app)
      const pair = await loginAs(user)

      const header = decodeProtectedHeader(pair.accessToken)
      expect(header).toEqual({ alg: 'EdDSA', kid: expect.any(String), typ: 'JWT' })
      const published = await jwks()
      expect(published.keys.map((key) => key.kid)).toContain(header.kid)
      for (const key of published.keys) {
        expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })
        expect(key).not.toHaveProperty('d')
      }

      const claims = decodeJwt(pair.accessToken)
      expect(Object.keys(claims).sort()).toEqual(['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub'])
      expect(claims).toMatchObject({ iss: TEST_PUBLIC_URL, aud: 'platform', sub: user.id })
      expect(claims.sid).toEqual(expect.any(String))
      expect(claims.jti).toEqual(expect.any(String))
      expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(ACCESS_TTL)
      expect(pair.expiresIn).toBe(ACCESS_TTL)
      expect(Math.abs((claims.iat ?? 0) - Date.now() / 1000)).toBeLessThan(5)

      // Verifiable by anyone with the published keys, with the algorithm pinned.
      const verified = await jwtVerify(pair.accessToken, createLocalJWKSet(published), {
        issuer: TEST_PUBLIC_URL,
        audience: 'platform',
        algorithms: ['EdDSA'],
      })
      expect(verified.payload.sub).toBe(user.id)
    })

    it('has a jti of its own for every token, and a sid per session', async () => {
      const user = await register(auth.app)
      const first = await loginAs(user)
      const second = await loginAs(user)
      const refreshed = await refresh(auth.app, first.refreshToken)
      expect(refreshed.statusCode).toBe(200)
      const [a, b, c] = [first, second, refreshed.json<TokenPairResponse>()].map((pair) =>
        decodeJwt(pair.accessToken),
      )
      expect(new Set([a?.jti, b?.jti, c?.jti]).size).toBe(3)
      expect(a?.sid).not.toBe(b?.sid)
      expect(c?.sid).toBe(a?.sid)
    })

    it('is described by the openid-configuration', async () => {
      const response = await auth.app.inject('/.well-known/openid-configuration')
      expect(response.statusCode).toBe(200)
      expect(response.json()).toMatchObject({
        issuer: TEST_PUBLIC_URL,
        jwks_uri: `${TEST_PUBLIC_URL}/.well-known/jwks.json`,
        id_token_signing_alg_values_supported: ['EdDSA'],
        subject_types_supported: ['public'],
        token_endpoint: `${TEST_PUBLIC_URL}/auth/v1/token/refresh`,
      })
      expect(response.json().claims_supported).toEqual(
        expect.arrayContaining(['iss', 'aud', 'sub', 'tid', 'wid', 'role', 'sid', 'jti']),
      )
      const keys = await auth.app.inject('/.well-known/jwks.json')
      expect(keys.statusCode).toBe(200)
      expect(keys.headers['cache-control']).toBe('public, max-age=60')
    })
  })

  describe('login with a workspace', () => {
    it('scopes the token to a workspace the user is a member of', async () => {
      const user = await memberOfTwo()
      const pair = await loginAs(user, 'ws-b')
      expect(pair.workspace).toEqual({ id: 'ws-b', name: 'Beta', role: 'viewer' })
      expect(decodeJwt(pair.accessToken)).toMatchObject({
        tid: 'tenant-of-ws-b',
        wid: 'ws-b',
        role: 'viewer',
      })
    })

    it('refuses a workspace the user is not a member of, and opens no session', async () => {
      const user = await memberOfTwo()
      const response = await login(auth.app, {
        email: user.email,
        password: PASSWORD,
        workspaceId: 'ws-elsewhere',
      })
      expect(response.statusCode).toBe(403)
      expect(response.json()).toMatchObject(errorCode(403, 'AUTH_NOT_A_MEMBER'))
      expect(response.headers['set-cookie']).toBeUndefined()
      expect(await sessionCount(user.id)).toBe(0)
    })
  })

  describe('login without a workspace', () => {
    it('takes the first membership when nothing was used yet', async () => {
      const user = await memberOfTwo()
      const pair = await loginAs(user)
      expect(pair.workspace).toEqual({ id: 'ws-a', name: 'Alpha', role: 'owner' })
      expect(decodeJwt(pair.accessToken)).toMatchObject({ wid: 'ws-a', role: 'owner' })
    })

    it("takes the workspace-service's last used workspace", async () => {
      const user = await memberOfTwo()
      auth.double.setLastUsed(user.id, 'ws-b')
      const pair = await loginAs(user)
      expect(pair.workspace?.id).toBe('ws-b')
    })

    it('ignores a last used workspace the user has left', async () => {
      const user = await memberOfTwo()
      auth.double.setLastUsed(user.id, 'ws-gone')
      const pair = await loginAs(user)
      expect(pair.workspace?.id).toBe('ws-a')
    })

    it('takes the workspace the user switched to last, over the workspace-service', async () => {
      const user = await memberOfTwo()
      auth.double.setLastUsed(user.id, 'ws-a')
      const first = await loginAs(user)
      expect(first.workspace?.id).toBe('ws-a')
      const switched = await switchTo(first.accessToken, 'ws-b')
      expect(switched.statusCode, switched.body).toBe(200)
      const out = await auth.app.inject({
        method: 'POST',
        url: '/auth/v1/logout',
        headers: bearer(switched.json().accessToken),
      })
      expect(out.statusCode).toBe(204)

      const again = await loginAs(user)
      expect(again.workspace).toEqual({ id: 'ws-b', name: 'Beta', role: 'viewer' })
    })

    it('is unscoped for a user with no memberships', async () => {
      const user = await register(auth.app)
      const pair = await loginAs(user)
      expect(pair.workspace).toBeNull()
      expect(decodeJwt(pair.accessToken)).not.toHaveProperty('wid')
    })
  })

  describe('token/switch', () => {
    it('answers a new pair for the other workspace in the same session', async () => {
      const user = await memberOfTwo()
      const before = await loginAs(user, 'ws-a')
      const response = await switchTo(before.accessToken, 'ws-b')
      expect(response.statusCode, response.body).toBe(200)
      const after = response.json<TokenPairResponse>()
      expect(after.workspace).toEqual({ id: 'ws-b', name: 'Beta', role: 'viewer' })
      expect(after.refreshToken).not.toBe(before.refreshToken)
      const [oldClaims, newClaims] = [before, after].map((pair) => decodeJwt(pair.accessToken))
      expect(newClaims).toMatchObject({ wid: 'ws-b', tid: 'tenant-of-ws-b', role: 'viewer' })
      expect(newClaims?.sid).toBe(oldClaims?.sid)
      expect(newClaims?.jti).not.toBe(oldClaims?.jti)
      expect(response.headers['set-cookie']).toContain(`platform_refresh=${after.refreshToken}`)

      // The previous refresh token is rotated, and the session has exactly one current one.
      const refreshTokens = auth.app.mongo.collection<{ _id: string }>('refresh_tokens')
      expect(await refreshTokens.findOne({ _id: hashToken(before.refreshToken) })).toMatchObject({
        status: 'rotated',
      })
      expect(
        await refreshTokens.countDocuments({ sessionId: newClaims?.sid, status: 'current' }),
      ).toBe(1)
      // Refreshed from now on, the session stays in the new workspace.
      const refreshed = await refresh(auth.app, after.refreshToken)
      expect(refreshed.statusCode).toBe(200)
      expect(refreshed.json().workspace?.id).toBe('ws-b')
    })

    it('refuses a workspace the user is not a member of', async () => {
      const user = await memberOfTwo()
      const pair = await loginAs(user, 'ws-a')
      const response = await switchTo(pair.accessToken, 'ws-elsewhere')
      expect(response.statusCode).toBe(403)
      expect(response.json()).toMatchObject(errorCode(403, 'AUTH_NOT_A_MEMBER'))
      // Nothing changed: the refresh token still works and still speaks for ws-a.
      const refreshed = await refresh(auth.app, pair.refreshToken)
      expect(refreshed.statusCode).toBe(200)
      expect(refreshed.json().workspace?.id).toBe('ws-a')
    })

    it('needs a bearer token', async () => {
      const response = await auth.app.inject({
        method: 'POST',
        url: '/auth/v1/token/switch',
        payload: { workspaceId: 'ws-a' },
      })
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
    })
  })

  describe('refresh re-reads the membership', () => {
    it('carries a changed role', async () => {
      const user = await memberOfTwo()
      const pair = await loginAs(user, 'ws-a')
      auth.double.removeMember(user.id, 'ws-a')
      auth.double.addMember(user.id, { workspaceId: 'ws-a', name: 'Alpha', role: 'member' })
      const response = await refresh(auth.app, pair.refreshToken)
      expect(response.statusCode).toBe(200)
      expect(response.json().workspace).toEqual({ id: 'ws-a', name: 'Alpha', role: 'member' })
      expect(decodeJwt(response.json().accessToken)).toMatchObject({ wid: 'ws-a', role: 'member' })
    })

    it('drops the workspace of a member who was removed', async () => {
      const user = await memberOfTwo()
      const pair = await loginAs(user, 'ws-a')
      auth.double.removeMember(user.id, 'ws-a')
      const response = await refresh(auth.app, pair.refreshToken)
      expect(response.statusCode).toBe(200)
      expect(response.json().workspace).toBeNull()
      const claims = decodeJwt(response.json().accessToken)
      expect(claims).not.toHaveProperty('wid')
      expect(claims).not.toHaveProperty('tid')
      expect(claims).not.toHaveProperty('role')
    })
  })

  describe('GET /auth/v1/me', () => {
    it('answers the memberships from the workspace-service and the current workspace', async () => {
      const user = await memberOfTwo()
      const pair = await loginAs(user, 'ws-b')
      const response = await me(auth.app, pair.accessToken)
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({
        user: {
          id: user.id,
          email: user.email,
          name: user.name,
          mfaEnabled: false,
          createdAt: user.createdAt,
        },
        currentWorkspaceId: 'ws-b',
        memberships: [
          { workspaceId: 'ws-a', tenantId: 'tenant-of-ws-a', name: 'Alpha', role: 'owner' },
          { workspaceId: 'ws-b', tenantId: 'tenant-of-ws-b', name: 'Beta', role: 'viewer' },
        ],
      })
    })

    it('answers currentWorkspaceId null for an unscoped token', async () => {
      const user = await register(auth.app)
      const pair = await loginAs(user)
      const response = await me(auth.app, pair.accessToken)
      expect(response.statusCode).toBe(200)
      expect(response.json()).toMatchObject({ currentWorkspaceId: null, memberships: [] })
    })
  })

  // Last in this describe: by now the double has answered every kind of call above.
  it('calls the workspace-service only with its own service token', async () => {
    await auth.app.identity.audit.deliverDue()
    expect(auth.double.callers.length).toBeGreaterThan(10)
    expect(new Set(auth.double.callers)).toEqual(new Set(['auth-service']))
    expect(auth.double.auditEvents.length).toBeGreaterThan(0)
  })
})

describe('while the workspace-service is down', () => {
  let app: FastifyInstance
  let user: TestUser

  beforeAll(async () => {
    ;({ app } = await startTestAuth({ WORKSPACE_SERVICE_URL: await closedPortUrl() }))
    user = await register(app)
  })
  afterAll(() => app.close())

  it('signs in without a workspace', async () => {
    const pair = await signIn(app, { email: user.email, password: PASSWORD })
    expect(pair.workspace).toBeNull()
    expect(decodeJwt(pair.accessToken)).not.toHaveProperty('wid')
  })

  it('answers 503 for a login into a workspace, and opens no session', async () => {
    const before = await app.mongo.collection('sessions').countDocuments({ userId: user.id })
    const response = await login(app, {
      email: user.email,
      password: PASSWORD,
      workspaceId: 'ws-a',
    })
    expect(response.statusCode).toBe(503)
    expect(response.json()).toMatchObject(errorCode(503, 'AUTH_DEPENDENCY_UNAVAILABLE'))
    expect(response.body).not.toContain('accessToken')
    expect(await app.mongo.collection('sessions').countDocuments({ userId: user.id })).toBe(before)
  })

  it('answers 503 for a switch and for /me, and keeps the session', async () => {
    const pair = await signIn(app, { email: user.email, password: PASSWORD })
    const switched = await app.inject({
      method: 'POST',
      url: '/auth/v1/token/switch',
      headers: bearer(pair.accessToken),
      payload: { workspaceId: 'ws-a' },
    })
    expect(switched.statusCode).toBe(503)
    expect(switched.json()).toMatchObject(errorCode(503, 'AUTH_DEPENDENCY_UNAVAILABLE'))
    const profile = await me(app, pair.accessToken)
    expect(profile.statusCode).toBe(503)
    expect(profile.json()).toMatchObject(errorCode(503, 'AUTH_DEPENDENCY_UNAVAILABLE'))
    expect((await refresh(app, pair.refreshToken)).statusCode).toBe(200)
  })
})

describe('when the workspace-service goes away mid-session', () => {
  it('keeps the scope on refresh rather than dropping it', async () => {
    const auth = await startAuthWithDouble()
    try {
      const user = await register(auth.app)
      auth.double.addMember(user.id, { workspaceId: 'ws-a', name: 'Alpha', role: 'admin' })
      const pair = await signIn(auth.app, { email: user.email, password: PASSWORD })
      expect(pair.workspace?.id).toBe('ws-a')
      await auth.double.close()
      const response = await refresh(auth.app, pair.refreshToken)
      expect(response.statusCode).toBe(200)
      expect(response.json().workspace).toEqual({ id: 'ws-a', name: 'Alpha', role: 'admin' })
    } finally {
      await auth.app.close()
    }
  })
})
