import { testMongoUrl } from '@platform/local-infra/vitest'
import { jwtVerify } from 'jose'
import mongoose from 'mongoose'
import { describe, expect, it, onTestFinished } from 'vitest'
import { bridgedEmail } from '../../src/lib/librechat-bridge.js'
import { startChatPlatform } from '../helpers/chat-platform.js'
import { bearer, LIBRECHAT_JWT_SECRET, PASSWORD } from '../helpers/platform.js'

async function libreChatUsers(dbName: string) {
  const connection = await mongoose.createConnection(testMongoUrl(), { dbName }).asPromise()
  onTestFinished(() => connection.close())
  return connection.collection('users')
}

describe('the LibreChat identity bridge', () => {
  it('calls LibreChat as the membership’s own user, with a minted token and the gateway’s headers', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId, token } = await chat.member('alice')
    const response = await chat.gateway.inject({
      method: 'GET',
      url: '/api/user',
      remoteAddress: '198.51.100.23',
      headers: {
        ...bearer(token),
        cookie: 'refreshToken=stolen; connect.sid=abc',
        'x-tenant-id': 'another-tenant',
        'x-forwarded-for': '10.9.9.9',
        'user-agent': 'curl/8.4.0',
      },
    })
    expect(response.statusCode).toBe(200)
    const shown = response.json<{ id: string; email: string }>()
    expect(shown.email).toBe(bridgedEmail({ workspaceId, userId: user.id }))

    const seen = chat.libreChat.requests.at(-1)
    expect(seen?.url).toBe('/api/user')
    const authorization = String(seen?.headers.authorization)
    expect(authorization).not.toContain(token)
    const { payload, protectedHeader } = await jwtVerify(
      authorization.replace(/^Bearer /, ''),
      new TextEncoder().encode(LIBRECHAT_JWT_SECRET),
    )
    expect(protectedHeader.alg).toBe('HS256')
    expect(payload.id).toBe(shown.id)
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(300)
    expect(seen?.headers.cookie).toBeUndefined()
    expect(seen?.headers['x-tenant-id']).toBeUndefined()
    expect(seen?.headers['x-forwarded-for']).toBe('198.51.100.23')
    expect(String(seen?.headers['user-agent'])).toMatch(/^Mozilla\/5\.0 .*Chrome\//)
  })

  it('gives each workspace of one user its own LibreChat user, and the same one every time', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId } = await chat.member('bob')
    const second = await chat.workspace.inject({
      method: 'POST',
      url: '/v1/workspaces',
      headers: bearer(user.token),
      payload: { name: 'Second' },
    })
    const otherWorkspaceId = second.json<{ id: string }>().id
    const tokenA = await chat.scopedToken(user, workspaceId)
    const tokenB = await chat.scopedToken(user, otherWorkspaceId)
    const idOf = async (token: string) =>
      (
        await chat.gateway.inject({ method: 'GET', url: '/api/user', headers: bearer(token) })
      ).json<{
        id: string
      }>().id
    const [a1, b1, a2] = [await idOf(tokenA), await idOf(tokenB), await idOf(tokenA)]
    expect(a1).not.toBe(b1)
    expect(a2).toBe(a1)
  })

  it('converges concurrent first requests on one LibreChat user and one mapping', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId, token } = await chat.member('carol')
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        chat.gateway.inject({ method: 'GET', url: '/api/user', headers: bearer(token) }),
      ),
    )
    const ids = new Set(answers.map((answer) => answer.json<{ id: string }>().id))
    expect(answers.map((answer) => answer.statusCode)).toEqual(Array(20).fill(200))
    expect(ids.size).toBe(1)
    const users = await libreChatUsers(chat.libreChatDbName)
    expect(
      await users.countDocuments({ email: bridgedEmail({ workspaceId, userId: user.id }) }),
    ).toBe(1)
    const mappings = chat.gateway.mongo.collection('librechat_identities')
    expect(await mappings.countDocuments({ workspaceId, userId: user.id })).toBe(1)
  })

  it('answers 403 GW_NO_WORKSPACE to a token scoped to no workspace, and LibreChat never hears of it', async () => {
    const chat = await startChatPlatform()
    const { user } = await chat.member('dave')
    const before = chat.libreChat.requests.length
    const response = await chat.gateway.inject({
      method: 'GET',
      url: '/api/convos',
      headers: bearer(user.token),
    })
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject({ code: 'GW_NO_WORKSPACE' })
    expect(chat.libreChat.requests.length).toBe(before)
  })

  it('lets a viewer read but refuses its writes with 403 GW_FORBIDDEN', async () => {
    const chat = await startChatPlatform()
    const { user: owner, workspaceId } = await chat.member('erin')
    const viewer = await chat.user('viewer')
    await chat.addMember(owner, workspaceId, viewer, 'viewer')
    const token = await chat.scopedToken(viewer, workspaceId)
    const read = await chat.gateway.inject({
      method: 'GET',
      url: '/api/convos',
      headers: bearer(token),
    })
    expect(read.statusCode).toBe(200)
    const before = chat.libreChat.requests.length
    for (const [method, url] of [
      ['POST', '/api/agents/chat/oai'],
      ['POST', '/api/agents'],
      ['DELETE', '/api/convos'],
      ['PUT', '/api/messages/c1/m1'],
    ] as const) {
      const response = await chat.gateway.inject({
        method,
        url,
        headers: bearer(token),
        payload: {},
      })
      expect(response.statusCode, `${method} ${url}`).toBe(403)
      expect(response.json()).toMatchObject({ code: 'GW_FORBIDDEN' })
    }
    expect(chat.libreChat.requests.length).toBe(before)
  })

  it('refuses a removed member at once, whatever its token still says', async () => {
    const chat = await startChatPlatform({ gatewayEnv: { MEMBERSHIP_CACHE_MS: '1' } })
    const { user: owner, workspaceId } = await chat.member('frank')
    const member = await chat.user('leaver')
    await chat.addMember(owner, workspaceId, member, 'member')
    const token = await chat.scopedToken(member, workspaceId)
    expect(
      (await chat.gateway.inject({ method: 'GET', url: '/api/convos', headers: bearer(token) }))
        .statusCode,
    ).toBe(200)
    await chat.workspace.inject({
      method: 'DELETE',
      url: `/v1/workspaces/${workspaceId}/members/${member.id}`,
      headers: bearer(owner.token),
    })
    await new Promise((resolve) => setTimeout(resolve, 5))
    const after = await chat.gateway.inject({
      method: 'GET',
      url: '/api/convos',
      headers: bearer(token),
    })
    expect(after.statusCode).toBe(403)
    expect(after.json()).toMatchObject({ code: 'GW_FORBIDDEN' })
  })
})

describe('LibreChat’s own auth routes, answered by the gateway', () => {
  it('refuses registration and disables the account routes', async () => {
    const chat = await startChatPlatform()
    const register = await chat.gateway.inject({
      method: 'POST',
      url: '/api/auth/register',
      payload: {},
    })
    expect(register.statusCode).toBe(403)
    expect(register.json()).toEqual({ message: 'Registration is not allowed.' })
    for (const [method, url] of [
      ['POST', '/api/auth/requestPasswordReset'],
      ['POST', '/api/auth/2fa/enable'],
      ['GET', '/oauth/google'],
      ['DELETE', '/api/user/delete'],
    ] as const) {
      const response = await chat.gateway.inject({ method, url })
      expect(response.statusCode, url).toBe(404)
      expect(response.json()).toMatchObject({ code: 'GW_ROUTE_DISABLED' })
    }
    expect(chat.libreChat.requests).toHaveLength(0)
  })

  it('answers refresh without a cookie as LibreChat does', async () => {
    const chat = await startChatPlatform()
    const response = await chat.gateway.inject({ method: 'POST', url: '/api/auth/refresh' })
    expect(response.statusCode).toBe(200)
    expect(response.body).toBe('Refresh token not provided')
  })

  it('signs in, refreshes from the platform cookie and signs out, showing the workspace’s LibreChat user', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId } = await chat.member('gina')
    const wrong = await chat.gateway.inject({
      method: 'POST',
      url: '/api/auth/login',
      payload: { email: user.email, password: 'not the password' },
    })
    expect(wrong.statusCode).toBe(404)
    expect(wrong.json()).toEqual({ message: 'Email or password is incorrect.' })

    const login = await chat.gateway.inject({
      method: 'POST',
      url: '/api/auth/login',
      payload: { email: user.email, password: PASSWORD },
    })
    expect(login.statusCode).toBe(200)
    const signedIn = login.json<{ token: string; user: { email: string } }>()
    expect(signedIn.user.email).toBe(bridgedEmail({ workspaceId, userId: user.id }))
    const cookie = String(login.headers['set-cookie']).split(';')[0] ?? ''
    expect(cookie).toMatch(/^platform_refresh=/)

    const refreshed = await chat.gateway.inject({
      method: 'POST',
      url: '/api/auth/refresh',
      headers: { cookie },
    })
    expect(refreshed.statusCode).toBe(200)
    const body = refreshed.json<{ token: string; user: { email: string } }>()
    expect(body.user.email).toBe(signedIn.user.email)
    const convos = await chat.gateway.inject({
      method: 'GET',
      url: '/api/convos',
      headers: bearer(body.token),
    })
    expect(convos.statusCode).toBe(200)

    const logout = await chat.gateway.inject({
      method: 'POST',
      url: '/api/auth/logout',
      headers: {
        ...bearer(body.token),
        cookie: String(refreshed.headers['set-cookie']).split(';')[0] ?? '',
      },
    })
    expect(logout.statusCode).toBe(200)
    expect(logout.json()).toEqual({ message: 'Logout successful' })
    const after = await chat.gateway.inject({
      method: 'GET',
      url: '/api/convos',
      headers: bearer(body.token),
    })
    expect(after.statusCode).toBe(401)
    expect(after.json()).toMatchObject({ code: 'GW_TOKEN_REVOKED' })

    const stale = await chat.gateway.inject({
      method: 'POST',
      url: '/api/auth/refresh',
      headers: { cookie },
    })
    expect(stale.statusCode).toBe(403)
    expect(stale.body).toBe('Invalid refresh token')
  })
})
