import { describe, expect, it } from 'vitest'
import { buildTestAuth } from '../helpers/build.js'

describe('smoke', () => {
  it('registers, logs in, refreshes and reads me', async () => {
    const { app } = await buildTestAuth()
    const reg = await app.inject({
      method: 'POST',
      url: '/auth/v1/register',
      payload: { email: 'A@example.com', password: 'correct horse', name: 'A' },
    })
    expect(reg.statusCode, reg.body).toBe(201)
    const login = await app.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: 'a@example.com', password: 'correct horse' },
    })
    expect(login.statusCode, login.body).toBe(200)
    const pair = login.json()
    const me = await app.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: { authorization: `Bearer ${pair.accessToken}` },
    })
    expect(me.statusCode, me.body).toBe(200)
    const r = await app.inject({
      method: 'POST',
      url: '/auth/v1/token/refresh',
      payload: { refreshToken: pair.refreshToken },
    })
    expect(r.statusCode, r.body).toBe(200)
    const r2 = await app.inject({
      method: 'POST',
      url: '/auth/v1/token/refresh',
      payload: { refreshToken: pair.refreshToken },
    })
    expect(r2.json().refreshToken).toBe(r.json().refreshToken)
    const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
    expect(jwks.json().keys).toHaveLength(1)
    const out = await app.inject({
      method: 'POST',
      url: '/auth/v1/logout',
      headers: { authorization: `Bearer ${pair.accessToken}` },
    })
    expect(out.statusCode, out.body).toBe(204)
    const me2 = await app.inject({
      method: 'GET',
      url: '/auth/v1/me',
      headers: { authorization: `Bearer ${pair.accessToken}` },
    })
    expect(me2.json()).toMatchObject({ code: 'AUTH_SESSION_REVOKED' })
  })
})
