import { testMongoUrl, testRedisUrl, uniqueTestName } from '@platform/local-infra/vitest'
import type { FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'
import { type BuildOptions, buildApp } from '../../src/app.js'
import { type AuthConfig, loadConfig } from '../../src/config.js'

const secret = (label: string) => `${label}-test-secret-0123456789abcdefghijklmnop`

/** Every secret a test auth-service needs; the service-token tests read them from here. */
export const TEST_SECRETS = {
  AUTH_KEY_ENCRYPTION_KEY: secret('key-encryption'),
  SERVICE_SECRET_AUTH: secret('auth'),
  SERVICE_SECRET_WORKSPACE: secret('workspace'),
  SERVICE_SECRET_GATEWAY: secret('gateway'),
  SERVICE_SECRET_RUNTIME: secret('runtime'),
} as const

export const TEST_PUBLIC_URL = 'http://platform.test'

/**
 * The auth-service's config for a test: real MongoDB and Redis, a database of its own (so test
 * files never share users or keys), and cheap Argon2 unless a test asks for the real cost.
 */
export function testConfig(env: NodeJS.ProcessEnv = {}): AuthConfig {
  const mongoUrl = new URL(testMongoUrl())
  return loadConfig({
    MONGO_URL: mongoUrl.toString(),
    REDIS_URL: testRedisUrl(),
    PUBLIC_URL: TEST_PUBLIC_URL,
    LOG_LEVEL: 'silent',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    ARGON2_PARALLELISM: '1',
    ...TEST_SECRETS,
    ...env,
  })
}

export interface TestAuth {
  app: FastifyInstance
  /** Its own database and Redis key prefix, for tests that look underneath. */
  dbName: string
  redisKeyPrefix: string
}

/**
 * The auth-service on a database and Redis key prefix of its own. The caller closes it (for one
 * app per file, in `afterAll`); `buildTestAuth` closes it when the test ends.
 */
export async function startTestAuth(
  env: NodeJS.ProcessEnv = {},
  options: BuildOptions = {},
): Promise<TestAuth> {
  const dbName = uniqueTestName('auth')
  const redisKeyPrefix = `${dbName}:`
  const app = await buildApp(testConfig(env), { dbName, redisKeyPrefix, ...options })
  return { app, dbName, redisKeyPrefix }
}

export async function buildTestAuth(
  env: NodeJS.ProcessEnv = {},
  options: BuildOptions = {},
): Promise<TestAuth> {
  const auth = await startTestAuth(env, options)
  onTestFinished(() => auth.app.close())
  return auth
}
