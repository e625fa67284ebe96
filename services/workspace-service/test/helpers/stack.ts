import { randomBytes, randomUUID } from 'node:crypto'
import { buildApp as buildAuthApp } from '@platform/auth-service/app'
import { loadConfig as loadAuthConfig } from '@platform/auth-service/config'
import { findFreePort } from '@platform/local-infra'
import { testMongoUrl, testRedisUrl, uniqueTestName } from '@platform/local-infra/vitest'
import type { ServiceName, WorkspaceRole } from '@platform/shared-types'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { type BuildOptions, buildApp } from '../../src/app.js'
import { loadConfig, type WorkspaceConfig } from '../../src/config.js'

const secret = (label: string) => `${label}-test-secret-0123456789abcdefghijklmnop`

/** Every secret the two services share in a test. */
export const TEST_SECRETS = {
  AUTH_KEY_ENCRYPTION_KEY: secret('key-encryption'),
  SERVICE_SECRET_AUTH: secret('auth'),
  SERVICE_SECRET_WORKSPACE: secret('workspace'),
  SERVICE_SECRET_GATEWAY: secret('gateway'),
  SERVICE_SECRET_RUNTIME: secret('runtime'),
} as const

export const TEST_PUBLIC_URL = 'http://platform.test'
export const PASSWORD = 'correct horse battery staple'

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** The body of a coded error, for `toMatchObject`. */
export const errorCode = (statusCode: number, code: string) => ({ statusCode, code })

export const uniqueEmail = (label: string) =>
  `${label}-${randomBytes(4).toString('hex')}@example.com`

export interface TestUser {
  id: string
  email: string
  name: string
  /** A platform token scoped to no workspace. */
  token: string
}

export interface TestStack {
  /** The workspace-service under test, listening (the auth-service calls it over HTTP). */
  app: FastifyInstance
  /** A real auth-service it trusts: JWKS, service tokens and user lookups over HTTP. */
  auth: FastifyInstance
  config: WorkspaceConfig
  dbName: string
  redisKeyPrefix: string
  /** Registers a user and answers it with an unscoped token. */
  user(label?: string): Promise<TestUser>
  /** A token for `user` scoped to `workspaceId`, through the auth-service's real login path. */
  scopedToken(user: TestUser, workspaceId: string): Promise<string>
  /** A service token for `service`, as the auth-service issues them. */
  serviceToken(service: ServiceName): Promise<string>
  /** `app.inject` with the user's bearer token. */
  call(
    token: string | null,
    method: InjectOptions['method'],
    url: string,
    payload?: unknown,
    headers?: Record<string, string>,
  ): Promise<LightMyRequestResponse>
  /** Creates a tenant owned by `owner`; answers its id and its first workspace's. */
  tenant(owner: TestUser, name?: string): Promise<{ tenantId: string; workspaceId: string }>
  /** Adds an existing user to a workspace with a role, as `by` (an owner). */
  addMember(by: TestUser, workspaceId: string, member: TestUser, role: WorkspaceRole): Promise<void>
  close(): Promise<void>
}

/**
 * A workspace-service and the auth-service it relies on, each on its own port, database and the
 * shared Redis key prefix (revocations written by one are read by the other), talking over
 * real HTTP in both directions.
 */
export async function startTestStack(
  env: NodeJS.ProcessEnv = {},
  options: BuildOptions = {},
): Promise<TestStack> {
  const dbName = uniqueTestName('wsp')
  const redisKeyPrefix = `${dbName}:`
  const workspacePort = await findFreePort()
  const workspaceUrl = `http://127.0.0.1:${workspacePort}`

  const auth = await buildAuthApp(
    loadAuthConfig({
      MONGO_URL: testMongoUrl(),
      REDIS_URL: testRedisUrl(),
      PUBLIC_URL: TEST_PUBLIC_URL,
      WORKSPACE_SERVICE_URL: workspaceUrl,
      LOG_LEVEL: 'silent',
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      ARGON2_PARALLELISM: '1',
      ...TEST_SECRETS,
    }),
    { dbName: `${dbName}_auth`, redisKeyPrefix },
  )
  await auth.listen({ host: '127.0.0.1', port: 0 })
  const authAddress = auth.server.address()
  if (authAddress === null || typeof authAddress === 'string') throw new Error('auth not on TCP')

  const config = loadConfig({
    MONGO_URL: testMongoUrl(),
    REDIS_URL: testRedisUrl(),
    PUBLIC_URL: TEST_PUBLIC_URL,
    AUTH_SERVICE_URL: `http://127.0.0.1:${authAddress.port}`,
    LOG_LEVEL: 'silent',
    ...TEST_SECRETS,
    ...env,
  })
  const app = await buildApp(config, { dbName, redisKeyPrefix, ...options })
  await app.listen({ host: '127.0.0.1', port: workspacePort })

  const call: TestStack['call'] = (token, method, url, payload, headers = {}) =>
    app.inject({
      method,
      url,
      headers: { ...(token === null ? {} : bearer(token)), ...headers },
      ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }),
    })

  async function user(label = 'user'): Promise<TestUser> {
    const email = uniqueEmail(label)
    const registered = await auth.inject({
      method: 'POST',
      url: '/auth/v1/register',
      payload: { email, password: PASSWORD, name: `${label} person` },
    })
    if (registered.statusCode !== 201)
      throw new Error(`register answered ${registered.statusCode}: ${registered.body}`)
    const { user } = registered.json<{ user: { id: string; email: string; name: string } }>()
    const token = await auth.identity.tokens.accessToken(user.id, randomUUID(), null)
    return { ...user, token }
  }

  async function scopedToken(user: TestUser, workspaceId: string) {
    const response = await auth.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: user.email, password: PASSWORD, workspaceId },
    })
    if (response.statusCode !== 200)
      throw new Error(`login answered ${response.statusCode}: ${response.body}`)
    return response.json<{ accessToken: string }>().accessToken
  }

  async function tenant(owner: TestUser, name = 'Acme') {
    const response = await call(owner.token, 'POST', '/v1/tenants', { name })
    if (response.statusCode !== 201)
      throw new Error(`tenant create answered ${response.statusCode}: ${response.body}`)
    const body = response.json<{ tenant: { id: string }; workspace: { id: string } }>()
    return { tenantId: body.tenant.id, workspaceId: body.workspace.id }
  }

  async function addMember(
    by: TestUser,
    workspaceId: string,
    member: TestUser,
    role: WorkspaceRole,
  ) {
    const response = await call(by.token, 'POST', `/v1/workspaces/${workspaceId}/members`, {
      email: member.email,
      role,
    })
    if (response.statusCode !== 201)
      throw new Error(`member add answered ${response.statusCode}: ${response.body}`)
  }

  return {
    app,
    auth,
    config,
    dbName,
    redisKeyPrefix,
    user,
    scopedToken,
    serviceToken: (service) => auth.identity.tokens.serviceToken(service),
    call,
    tenant,
    addMember,
    async close() {
      // Each stack's databases go with it: thousands of leftover collections slowed MongoDB and
      // finally brought it down during a full run.
      await app.mongo.dropDatabase().catch(() => undefined)
      await auth.mongo.dropDatabase().catch(() => undefined)
      await app.close()
      await auth.close()
    },
  }
}
