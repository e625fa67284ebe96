import {
  startTestStack,
  TEST_SECRETS,
  type TestStack,
} from '@platform/workspace-service/test-stack'
import type { FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'

export { bearer, PASSWORD, type TestUser } from '@platform/workspace-service/test-stack'

export const LIBRECHAT_JWT_SECRET = 'librechat-jwt-test-secret-0123456789abcdefghijklmnop'

export interface PlatformOptions {
  /** Extra gateway variables (LibreChat's, timeouts). */
  gatewayEnv?: NodeJS.ProcessEnv
  /** Point the gateway's `/v1` somewhere else than the real workspace-service (an echo server). */
  workspaceProxyUrl?: string
}

/**
 * The real auth-service and workspace-service (the workspace-service's own test stack: each on
 * its own port and database, talking over HTTP) and the gateway in front of them on a port of
 * its own: what a client sees. Everything closes when the test ends.
 */
export async function startPlatform(options: PlatformOptions = {}) {
  const stack: TestStack = await startTestStack()
  onTestFinished(() => stack.close())
  const workspaceAddress = stack.app.server.address()
  if (workspaceAddress === null || typeof workspaceAddress === 'string')
    throw new Error('workspace-service not on TCP')

  const gateway: FastifyInstance = await buildApp(
    loadConfig({
      MONGO_URL: stack.config.MONGO_URL,
      REDIS_URL: stack.config.REDIS_URL,
      PUBLIC_URL: stack.config.PUBLIC_URL,
      AUTH_SERVICE_URL: stack.config.AUTH_SERVICE_URL,
      WORKSPACE_SERVICE_URL:
        options.workspaceProxyUrl ?? `http://127.0.0.1:${workspaceAddress.port}`,
      SERVICE_SECRET_GATEWAY: TEST_SECRETS.SERVICE_SECRET_GATEWAY,
      LOG_LEVEL: 'silent',
      ...options.gatewayEnv,
    }),
    { dbName: `${stack.dbName}_gateway`, redisKeyPrefix: stack.redisKeyPrefix },
  )
  onTestFinished(async () => {
    // A test may have closed the gateway itself; a closed connection would wait to reconnect.
    if (gateway.mongo.readyState === 1) await gateway.mongo.dropDatabase().catch(() => undefined)
    await gateway.close()
  })
  const gatewayUrl = await gateway.listen({ host: '127.0.0.1', port: 0 })

  /** Replaces a workspace's policy fields as `by` (an admin), through the workspace-service. */
  async function setPolicy(by: { token: string }, workspaceId: string, change: object) {
    const current = await stack.call(by.token, 'GET', `/v1/workspaces/${workspaceId}/policy`)
    const response = await stack.call(by.token, 'PUT', `/v1/workspaces/${workspaceId}/policy`, {
      ...current.json<object>(),
      ...change,
    })
    if (response.statusCode !== 200)
      throw new Error(`policy write answered ${response.statusCode}: ${response.body}`)
  }

  return {
    auth: stack.auth,
    workspace: stack.app,
    gateway,
    gatewayUrl,
    dbName: stack.dbName,
    user: stack.user,
    scopedToken: stack.scopedToken,
    tenant: stack.tenant,
    addMember: stack.addMember,
    setPolicy,
  }
}

export type Platform = Awaited<ReturnType<typeof startPlatform>>
