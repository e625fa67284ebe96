import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import type { LoginRequest, TokenPairResponse, User } from '@platform/shared-types'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { startTestAuth, TEST_PUBLIC_URL, type TestAuth } from './build.js'
import { startWorkspaceDouble, type WorkspaceDouble } from './workspace-double.js'

/** A password every test user gets unless a test needs another. */
export const PASSWORD = 'correct horse battery staple'

/** An address no other test in the file uses, so tests can share one app. */
export const uniqueEmail = (label: string) =>
  `${label}-${randomBytes(4).toString('hex')}@example.com`

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** The body of a coded error, for `toMatchObject`. */
export const errorCode = (statusCode: number, code: string) => ({ statusCode, code })

export interface TestUser extends User {
  password: string
}

/** Registers a user and answers it with its password; a refusal fails the test at once. */
export async function register(
  app: FastifyInstance,
  input: { email?: string; password?: string; name?: string } = {},
): Promise<TestUser> {
  const password = input.password ?? PASSWORD
  const response = await app.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email: input.email ?? uniqueEmail('user'), password, name: input.name ?? 'Test' },
  })
  if (response.statusCode !== 201)
    throw new Error(`register answered ${response.statusCode}: ${response.body}`)
  return { ...response.json<{ user: User }>().user, password }
}

export function login(
  app: FastifyInstance,
  body: LoginRequest,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/auth/v1/login', payload: body, headers })
}

/** Logs in and answers the token pair; anything but 200 fails the test at once. */
export async function signIn(
  app: FastifyInstance,
  body: LoginRequest,
  headers: Record<string, string> = {},
): Promise<TokenPairResponse> {
  const response = await login(app, body, headers)
  if (response.statusCode !== 200)
    throw new Error(`login answered ${response.statusCode}: ${response.body}`)
  return response.json<TokenPairResponse>()
}

export function refresh(app: FastifyInstance, refreshToken: string) {
  return app.inject({
    method: 'POST',
    url: '/auth/v1/token/refresh',
    payload: { refreshToken },
  })
}

export function me(app: FastifyInstance, accessToken: string) {
  return app.inject({ method: 'GET', url: '/auth/v1/me', headers: bearer(accessToken) })
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** An http URL on which nothing listens: a workspace-service that is down. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve, reject) =>
    server.close((error) => (error ? reject(error) : resolve())),
  )
  if (address === null || typeof address === 'string') throw new Error('no port')
  return `http://127.0.0.1:${address.port}`
}

export interface AuthWithDouble extends TestAuth {
  double: WorkspaceDouble
  close(): Promise<void>
}

/**
 * An auth-service talking to a workspace-service double; the double verifies the service tokens
 * against the auth-service's own JWKS, which exists only once the app does.
 */
export async function startAuthWithDouble(env: NodeJS.ProcessEnv = {}): Promise<AuthWithDouble> {
  let app: FastifyInstance | undefined
  const double = await startWorkspaceDouble({
    issuer: TEST_PUBLIC_URL,
    jwks: async () => {
      if (app === undefined) throw new Error('the auth-service is not built yet')
      return (await app.inject('/.well-known/jwks.json')).json()
    },
  })
  const auth = await startTestAuth({ WORKSPACE_SERVICE_URL: double.url, ...env })
  app = auth.app
  return {
    ...auth,
    double,
    async close() {
      await auth.app.close()
      await double.close()
    },
  }
}
