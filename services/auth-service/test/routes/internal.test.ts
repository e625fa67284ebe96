import { SERVICE_SECRET_VARIABLES, type ServiceName } from '@platform/shared-types'
import type { FastifyInstance } from 'fastify'
import { decodeJwt, decodeProtectedHeader, type JSONWebKeySet } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  bearer,
  errorCode,
  me,
  PASSWORD,
  register,
  signIn,
  sleep,
  type TestUser,
} from '../helpers/auth-requests.js'
import { startTestAuth, TEST_PUBLIC_URL, TEST_SECRETS } from '../helpers/build.js'

const ACCESS_TTL = 3
const SERVICE_TTL = 90
/** The verifier's allowance for clock skew (service-kit's default). */
const CLOCK_TOLERANCE_SECONDS = 5

const SERVICES = Object.keys(SERVICE_SECRET_VARIABLES) as ServiceName[]

describe('internal routes', () => {
  let app: FastifyInstance
  let user: TestUser

  beforeAll(async () => {
    ;({ app } = await startTestAuth({
      ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TTL),
      SERVICE_TOKEN_TTL_SECONDS: String(SERVICE_TTL),
    }))
    user = await register(app, { email: 'Lookup.Me@Example.com', name: 'Lookup' })
  })
  afterAll(() => app.close())

  const requestServiceToken = (service: string, secret: string) =>
    app.inject({
      method: 'POST',
      url: '/internal/v1/service-token',
      payload: { service, secret },
    })
  async function serviceToken(service: ServiceName): Promise<string> {
    const response = await requestServiceToken(
      service,
      TEST_SECRETS[SERVICE_SECRET_VARIABLES[service]],
    )
    if (response.statusCode !== 200) throw new Error(`service-token answered ${response.body}`)
    return response.json<{ token: string }>().token
  }
  const getAs = (url: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers })

  describe('POST /internal/v1/service-token', () => {
    it.each(SERVICES)('issues %s a service token for its own secret', async (service) => {
      const response = await requestServiceToken(
        service,
        TEST_SECRETS[SERVICE_SECRET_VARIABLES[service]],
      )
      expect(response.statusCode, response.body).toBe(200)
      const body = response.json<{ token: string; expiresIn: number }>()
      expect(body.expiresIn).toBe(SERVICE_TTL)
      expect(decodeProtectedHeader(body.token)).toMatchObject({ alg: 'EdDSA', typ: 'JWT' })
      const claims = decodeJwt(body.token)
      expect(claims).toMatchObject({ iss: TEST_PUBLIC_URL, aud: 'internal', sub: service })
      expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(SERVICE_TTL)
      expect(claims).not.toHaveProperty('sid')
    })

    it.each([
      ['a wrong secret', 'workspace-service', 'not-the-secret-at-all'],
      ['another service’s secret', 'workspace-service', TEST_SECRETS.SERVICE_SECRET_GATEWAY],
    ])('refuses %s', async (_label, service, secret) => {
      const response = await requestServiceToken(service, secret)
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_INVALID_CREDENTIALS'))
      expect(response.body).not.toContain('token"')
    })

    it('refuses a service it does not know', async () => {
      const response = await requestServiceToken(
        'billing-service',
        TEST_SECRETS.SERVICE_SECRET_AUTH,
      )
      expect(response.statusCode).toBe(400)
      const body = response.json()
      expect(body).toMatchObject(errorCode(400, 'AUTH_VALIDATION'))
      expect(body.details).toEqual([expect.objectContaining({ path: 'service' })])
    })
  })

  describe('user lookups', () => {
    it('finds a user by email, normalized, and answers only id, email and name', async () => {
      const token = await serviceToken('workspace-service')
      for (const query of [
        'LOOKUP.ME@EXAMPLE.COM',
        'lookup.me@example.com',
        ' Lookup.Me@Example.com ',
      ]) {
        const response = await getAs(
          `/internal/v1/users/by-email?email=${encodeURIComponent(query)}`,
          bearer(token),
        )
        expect(response.statusCode, query).toBe(200)
        expect(response.json()).toEqual({
          id: user.id,
          email: 'lookup.me@example.com',
          name: 'Lookup',
        })
      }
    })

    it('finds a user by id, and answers only id, email and name', async () => {
      for (const service of ['workspace-service', 'api-gateway', 'code-runtime'] as const) {
        const response = await getAs(
          `/internal/v1/users/${user.id}`,
          bearer(await serviceToken(service)),
        )
        expect(response.statusCode, service).toBe(200)
        expect(response.json()).toEqual({ id: user.id, email: user.email, name: user.name })
      }
    })

    it.each([
      ['an unknown email', '/internal/v1/users/by-email?email=nobody%40example.com'],
      [
        'an address that cannot exist',
        '/internal/v1/users/by-email?email=p%D0%B0ypal%40example.com',
      ],
      ['an unknown id', '/internal/v1/users/000000000000000000000000'],
    ])('answers 404 for %s', async (_label, url) => {
      const response = await getAs(url, bearer(await serviceToken('workspace-service')))
      expect(response.statusCode).toBe(404)
      expect(response.json()).toMatchObject(errorCode(404, 'AUTH_NOT_FOUND'))
    })

    it('answers 401 without a token, and for a user’s access token', async () => {
      const pair = await signIn(app, { email: user.email, password: PASSWORD })
      for (const headers of [{}, bearer(pair.accessToken), bearer('not.a.jwt')]) {
        for (const url of [
          `/internal/v1/users/${user.id}`,
          '/internal/v1/users/by-email?email=x%40y.z',
        ]) {
          const response = await getAs(url, headers)
          expect(response.statusCode, url).toBe(401)
          expect(response.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
          expect(response.body).not.toContain(user.email)
        }
      }
    })

    it('answers 403 to a service that may not look users up', async () => {
      const response = await getAs(
        `/internal/v1/users/${user.id}`,
        bearer(await serviceToken('auth-service')),
      )
      expect(response.statusCode).toBe(403)
      expect(response.json()).toMatchObject(errorCode(403, 'AUTH_FORBIDDEN'))
    })

    it('does not take a service token for a user’s', async () => {
      const response = await me(app, await serviceToken('api-gateway'))
      expect(response.statusCode).toBe(401)
      expect(response.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
    })
  })

  // Last: it changes the signing key and waits for a token to expire.
  describe('POST /internal/v1/keys/rotate', () => {
    const rotate = (headers: Record<string, string>) =>
      app.inject({ method: 'POST', url: '/internal/v1/keys/rotate', headers })
    const jwks = async () => (await app.inject('/.well-known/jwks.json')).json<JSONWebKeySet>()

    it('is refused to other services and to users', async () => {
      const gateway = await rotate(bearer(await serviceToken('api-gateway')))
      expect(gateway.statusCode).toBe(403)
      expect(gateway.json()).toMatchObject(errorCode(403, 'AUTH_FORBIDDEN'))
      const anonymous = await rotate({})
      expect(anonymous.statusCode).toBe(401)
      expect(anonymous.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
      const pair = await signIn(app, { email: user.email, password: PASSWORD })
      const asUser = await rotate(bearer(pair.accessToken))
      expect(asUser.statusCode).toBe(401)
      expect(asUser.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
      expect((await jwks()).keys).toHaveLength(1)
    })

    it('rotates; old tokens verify until they expire, new ones use the new key', {
      timeout: 30_000,
    }, async () => {
      const [oldKey] = (await jwks()).keys
      // Not verified before the rotation, so no cache can vouch for it afterwards.
      const before = await signIn(app, { email: user.email, password: PASSWORD })
      expect(decodeProtectedHeader(before.accessToken).kid).toBe(oldKey?.kid)

      const response = await rotate(bearer(await serviceToken('auth-service')))
      expect(response.statusCode, response.body).toBe(200)
      const rotated = response.json<{ kid: string; retiredKid: string | null }>()
      expect(Object.keys(rotated).sort()).toEqual(['kid', 'retiredKid'])
      expect(rotated.retiredKid).toBe(oldKey?.kid)
      expect(rotated.kid).not.toBe(oldKey?.kid)

      expect((await jwks()).keys.map((key) => key.kid).sort()).toEqual(
        [rotated.kid, rotated.retiredKid].sort(),
      )
      const after = await signIn(app, { email: user.email, password: PASSWORD })
      expect(decodeProtectedHeader(after.accessToken).kid).toBe(rotated.kid)
      expect(decodeProtectedHeader(await serviceToken('code-runtime')).kid).toBe(rotated.kid)

      const stillValid = await me(app, before.accessToken)
      expect(stillValid.statusCode, stillValid.body).toBe(200)
      expect((await me(app, after.accessToken)).statusCode).toBe(200)

      // Just past the last moment a verifier accepts it (exp plus the clock allowance).
      const exp = decodeJwt(before.accessToken).exp ?? 0
      await sleep((exp + CLOCK_TOLERANCE_SECONDS) * 1000 - Date.now() + 200)
      const expired = await me(app, before.accessToken)
      expect(expired.statusCode).toBe(401)
      expect(expired.json()).toMatchObject(errorCode(401, 'AUTH_UNAUTHENTICATED'))
    })
  })
})
