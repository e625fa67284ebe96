import { SignJWT } from 'jose'
import { mongo } from 'mongoose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, mintToken, type Stack, startStack } from './helpers.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(() => stack.close())

describe('librechat-api.md §9: Bearer-only HS256 JWT with `id` ⇒ look up user; 401 JSON `{"message":…}` otherwise', () => {
  it('authenticates a minted {id} token and answers GET /api/user without secrets (§10: minted tokens work)', async () => {
    const user = await stack.createUser({ password: 'hash', totpSecret: 'secret' })
    const response = await api(stack, user, '/api/user')
    expect(response.status).toBe(200)
    const body = (await response.json()) as Record<string, unknown>
    expect(body).toMatchObject({ _id: user.id, id: user.id, email: user.email, role: 'USER' })
    expect(body).not.toHaveProperty('password')
    expect(body).not.toHaveProperty('totpSecret')
  })

  it.each([
    ['no Authorization header', undefined, 'No auth token'],
    ['a non-Bearer scheme', 'Basic dXNlcjpwdw==', 'No auth token'],
    ['a malformed token', 'Bearer not.a.jwt', 'jwt malformed'],
  ])('refuses %s with 401 {"message": "%s"}', async (_label, authorization, message) => {
    const headers: Record<string, string> = authorization ? { authorization } : {}
    const response = await api(stack, undefined, '/api/user', { headers })
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({ message })
  })

  it('refuses a token signed with another secret: 401 invalid signature (§10)', async () => {
    const user = await stack.createUser()
    const forged = { ...user, token: await mintToken(user.id, { secret: 'not-the-secret' }) }
    const response = await api(stack, forged, '/api/user')
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({ message: 'invalid signature' })
  })

  it('refuses an expired token: 401 jwt expired (§10)', async () => {
    const user = await stack.createUser()
    const expired = {
      ...user,
      token: await mintToken(user.id, { expiresAt: Math.floor(Date.now() / 1000) - 10 }),
    }
    const response = await api(stack, expired, '/api/user')
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({ message: 'jwt expired' })
  })

  it('refuses a valid token for an unknown user or without an id: 401 Unauthorized', async () => {
    const ghost = { id: '', email: '', token: await mintToken(new mongo.ObjectId().toHexString()) }
    const unknown = await api(stack, ghost, '/api/user')
    expect(unknown.status).toBe(401)
    expect(await unknown.json()).toEqual({ message: 'Unauthorized' })

    const noId = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('double-test-jwt-secret'))
    const anonymous = await api(stack, { id: '', email: '', token: noId }, '/api/user')
    expect(anonymous.status).toBe(401)
    expect(await anonymous.json()).toEqual({ message: 'Unauthorized' })
  })

  it('ignores tokens in cookies and in the query string', async () => {
    const user = await stack.createUser()
    const cookie = await api(stack, undefined, '/api/user', {
      headers: { cookie: `token=${user.token}; refreshToken=${user.token}` },
    })
    expect(cookie.status).toBe(401)
    const query = await api(stack, undefined, `/api/user?token=${user.token}`)
    expect(query.status).toBe(401)
    expect(await query.json()).toEqual({ message: 'No auth token' })
    expect(stack.double.requests.at(-1)).toMatchObject({
      method: 'GET',
      url: `/api/user?token=${user.token}`,
    })
    expect(stack.double.requests.at(-2)?.headers.cookie).toContain('refreshToken=')
  })

  it('accepts a token with LibreChat’s own payload and HS512, and backfills a missing role', async () => {
    const user = await stack.createUser({ role: undefined })
    const token = await new SignJWT({
      id: user.id,
      username: 'x',
      provider: 'local',
      email: user.email,
    })
      .setProtectedHeader({ alg: 'HS512' })
      .setIssuedAt()
      .setExpirationTime('15m')
      .sign(new TextEncoder().encode('double-test-jwt-secret'))
    const response = await api(stack, { ...user, token }, '/api/user')
    expect(response.status).toBe(200)
    expect(((await response.json()) as { role: string }).role).toBe('USER')
    const stored = await stack.db.collection('users').findOne({ _id: new mongo.ObjectId(user.id) })
    expect(stored?.role).toBe('USER')
  })

  it('leaves public routes open: /health and the login subset of /api/config', async () => {
    const health = await api(stack, undefined, '/health')
    expect(health.status).toBe(200)
    expect(await health.text()).toBe('OK')
    const config = await api(stack, undefined, '/api/config', {
      headers: { authorization: 'Bearer garbage' },
    })
    expect(config.status).toBe(200)
    expect(await config.json()).not.toHaveProperty('interface')
  })
})

describe('v0.8.1 authentication', () => {
  it('answers a failed authentication with a plain-text Unauthorized', async () => {
    const old = await startStack({ version: '0.8.1' })
    try {
      const response = await api(old, undefined, '/api/user')
      expect(response.status).toBe(401)
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/)
      expect(await response.text()).toBe('Unauthorized')
      const user = await old.createUser()
      expect((await api(old, user, '/api/user')).status).toBe(200)
    } finally {
      await old.close()
    }
  })
})
