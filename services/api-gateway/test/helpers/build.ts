import { testMongoUrl, testRedisUrl } from '@platform/local-infra/vitest'
import type { FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'

/** The gateway built from a test environment (real MongoDB and Redis), closed when the test ends. */
export async function buildTestGateway(env: NodeJS.ProcessEnv = {}): Promise<FastifyInstance> {
  const config = loadConfig({
    MONGO_URL: testMongoUrl(),
    REDIS_URL: testRedisUrl(),
    LOG_LEVEL: 'silent',
    ...env,
  })
  const app = await buildApp(config)
  onTestFinished(() => app.close())
  return app
}
