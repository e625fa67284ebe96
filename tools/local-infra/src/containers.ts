import type { RunningServer } from './running-server.js'

/** Whether testcontainers finds a Docker (or compatible) engine that answers. */
export async function dockerEngineAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    await getContainerRuntimeClient()
    return true
  } catch {
    return false
  }
}

export async function startMongoContainer(): Promise<RunningServer> {
  const { MongoDBContainer } = await import('@testcontainers/mongodb')
  // The module starts mongo:7 as the one-member replica set rs0.
  const container = await new MongoDBContainer('mongo:7').start()
  const url = new URL(container.getConnectionString())
  url.pathname = '/'
  url.searchParams.set('directConnection', 'true')
  return {
    url: url.toString(),
    description: 'MongoDB (testcontainers mongo:7)',
    stop: async () => {
      await container.stop()
    },
  }
}

export async function startRedisContainer(): Promise<RunningServer> {
  const { RedisContainer } = await import('@testcontainers/redis')
  const container = await new RedisContainer('redis:7').start()
  return {
    url: container.getConnectionUrl(),
    description: 'Redis (testcontainers redis:7)',
    stop: async () => {
      await container.stop()
    },
  }
}
