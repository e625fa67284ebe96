import { randomBytes, randomUUID } from 'node:crypto'
import { buildApp as buildAuthApp } from '@platform/auth-service/app'
import { loadConfig as loadAuthConfig } from '@platform/auth-service/config'
import { findFreePort } from '@platform/local-infra'
import { testMongoUrl, testRedisUrl, uniqueTestName } from '@platform/local-infra/vitest'
import type { WorkspaceRole } from '@platform/shared-types'
import { buildApp as buildWorkspaceApp } from '@platform/workspace-service/app'
import { loadConfig as loadWorkspaceConfig } from '@platform/workspace-service/config'
import type { FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'

const secret = (label: string) => `${label}-test-secret-0123456789abcdefghijklmnop`

export const TEST_SECRETS = {
  AUTH_KEY_ENCRYPTION_KEY: secret('key-encryption'),
  SERVICE_SECRET_AUTH: secret('auth'),
  SERVICE_SECRET_WORKSPACE: secret('workspace'),
  SERVICE_SECRET_GATEWAY: secret('gateway'),
  SERVICE_SECRET_RUNTIME: secret('runtime'),
} as const

export const TEST_PUBLIC_URL = 'http://platform.test'
export const PASSWORD = 'correct horse battery staple'
export const LIBRECHAT_JWT_SECRET = secret('librechat-jwt')

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

export interface TestUser {
  id: string
  email: string
  name: string
  /** A platform token scoped to no workspace. */
  token: string
}

export interface PlatformOptions {
  /** Extra gateway variables (LibreChat's, timeouts). */
  gatewayEnv?: NodeJS.ProcessEnv
  /** Point the gateway's `/v1` somewhere else than the real workspace-service (an echo server). */
  workspaceProxyUrl?: string
}

/**
 * The real auth-service and workspace-service, each on its own port and database, talking to
 * each other over HTTP, and the gateway in front of them on a port of its own: what a client
 * sees. Everything closes when the test ends.
 */
export async function startPlatform(options: PlatformOptions = {}) {
  const dbName = uniqueTestName('gw')
  const redisKeyPrefix = `${dbName}:`
  const workspacePort = await findFreePort()
  const workspaceUrl = `http://127.0.0.1:${workspacePort}`
  const common = {
    MONGO_URL: testMongoUrl(),
    REDIS_URL: testRedisUrl(),
    PUBLIC_URL: TEST_PUBLIC_URL,
    LOG_LEVEL: 'silent',
    ...TEST_SECRETS,
  }

  const auth = await buildAuthApp(
    loadAuthConfig({
      ...common,
      WORKSPACE_SERVICE_URL: workspaceUrl,
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      ARGON2_PARALLELISM: '1',
    }),
    { dbName: `${dbName}_auth`, redisKeyPrefix },
  )
  onTestFinished(() => auth.close())
  const authUrl = await auth.listen({ host: '127.0.0.1', port: 0 })

  const workspace = await buildWorkspaceApp(
    loadWorkspaceConfig({ ...common, AUTH_SERVICE_URL: authUrl }),
    { dbName: `${dbName}_workspace`, redisKeyPrefix },
  )
  onTestFinished(() => workspace.close())
  await workspace.listen({ host: '127.0.0.1', port: workspacePort })

  const gateway = await buildApp(
    loadConfig({
      ...common,
      AUTH_SERVICE_URL: authUrl,
      WORKSPACE_SERVICE_URL: options.workspaceProxyUrl ?? workspaceUrl,
      ...options.gatewayEnv,
    }),
    { dbName: `${dbName}_gateway`, redisKeyPrefix },
  )
  onTestFinished(() => gateway.close())
  const gatewayUrl = await gateway.listen({ host: '127.0.0.1', port: 0 })

  async function user(label = 'user'): Promise<TestUser> {
    const email = `${label}-${randomBytes(4).toString('hex')}@example.com`
    const registered = await auth.inject({
      method: 'POST',
      url: '/auth/v1/register',
      payload: { email, password: PASSWORD, name: `${label} person` },
    })
    if (registered.statusCode !== 201)
      throw new Error(`register answered ${registered.statusCode}: ${registered.body}`)
    const created = registered.json<{ user: { id: string; email: string; name: string } }>().user
    const token = await auth.identity.tokens.accessToken(created.id, randomUUID(), null)
    return { ...created, token }
  }

  /** A token for `member` scoped to `workspaceId`, through the auth-service's real login. */
  async function scopedToken(member: TestUser, workspaceId: string) {
    const response = await auth.inject({
      method: 'POST',
      url: '/auth/v1/login',
      payload: { email: member.email, password: PASSWORD, workspaceId },
    })
    if (response.statusCode !== 200)
      throw new Error(`login answered ${response.statusCode}: ${response.body}`)
    return response.json<{ accessToken: string }>().accessToken
  }

  async function tenant(owner: TestUser, name = 'Acme') {
    const response = await workspace.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: bearer(owner.token),
      payload: { name },
    })
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
    const response = await workspace.inject({
      method: 'POST',
      url: `/v1/workspaces/${workspaceId}/members`,
      headers: bearer(by.token),
      payload: { email: member.email, role },
    })
    if (response.statusCode !== 201)
      throw new Error(`member add answered ${response.statusCode}: ${response.body}`)
  }

  /** Replaces a workspace's policy as `by` (an admin), through the workspace-service. */
  async function setPolicy(by: TestUser, workspaceId: string, change: Record<string, unknown>) {
    const current = await workspace.inject({
      method: 'GET',
      url: `/v1/workspaces/${workspaceId}/policy`,
      headers: bearer(by.token),
    })
    const policy = current.json<Record<string, unknown>>()
    const response = await workspace.inject({
      method: 'PUT',
      url: `/v1/workspaces/${workspaceId}/policy`,
      headers: bearer(by.token),
      payload: { ...policy, ...change },
    })
    if (response.statusCode !== 200)
      throw new Error(`policy write answered ${response.statusCode}: ${response.body}`)
  }

  return {
    auth,
    workspace,
    gateway: gateway as FastifyInstance,
    gatewayUrl,
    dbName,
    user,
    scopedToken,
    tenant,
    addMember,
    setPolicy,
  }
}

export type Platform = Awaited<ReturnType<typeof startPlatform>>
