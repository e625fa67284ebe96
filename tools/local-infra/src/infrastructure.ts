import { join } from 'node:path'
import { dockerEngineAnswers, startMongoContainer, startRedisContainer } from './containers.js'
import { findFreePort, isPortOpen } from './free-port.js'
import { startMongod } from './mongod.js'
import { startRedisServer } from './redis-server.js'
import { type Report, reportToStderr } from './report.js'
import type { RunningServer } from './running-server.js'

export interface InfrastructureOptions {
  env: NodeJS.ProcessEnv
  /** `test`: throw-away data, fast TTL sweeps. `local`: data kept in `dataDir` between runs. */
  purpose: 'test' | 'local'
  /** Where local servers keep their data, logs and Wine prefix. */
  dataDir: string
  /** Ports to reuse for local servers when they are free (a persistent replica set remembers its host). */
  preferredPorts?: { mongo?: number | undefined; redis?: number | undefined }
  /** Local servers in their own process group, stopped only by `stop()` (the launcher's choice). */
  detached?: boolean
  report?: Report
}

export interface Infrastructure {
  mongoUrl: string
  redisUrl: string
  mongo: string
  redis: string
  stop(): Promise<void>
}

const fromEnvironment = (name: string, url: string): RunningServer => ({
  url,
  description: `${name} from the environment`,
  stop: async () => undefined,
})

async function portFor(preferred: number | undefined): Promise<number> {
  if (preferred !== undefined && !(await isPortOpen(preferred))) return preferred
  return findFreePort()
}

/**
 * Real MongoDB and Redis, chosen in this order: URLs from the environment (`MONGO_URL`,
 * `REDIS_URL`); testcontainers when a Docker engine answers; otherwise local servers this
 * package provisions and starts itself.
 */
export async function provideInfrastructure(
  options: InfrastructureOptions,
): Promise<Infrastructure> {
  const report = options.report ?? reportToStderr
  const detached = options.detached ?? false
  const started: RunningServer[] = []
  let docker: Promise<boolean> | undefined
  const useDocker = () => {
    docker ??= dockerEngineAnswers()
    return docker
  }

  const startMongo = async (): Promise<RunningServer> => {
    if (options.env.MONGO_URL) return fromEnvironment('MongoDB', options.env.MONGO_URL)
    if (await useDocker()) return startMongoContainer()
    const port = await portFor(options.preferredPorts?.mongo)
    report(`starting a local MongoDB on 127.0.0.1:${port}`)
    return startMongod({
      port,
      dbPath: join(options.dataDir, 'mongo', 'data'),
      winePrefix: join(options.dataDir, 'mongo', 'wine-prefix'),
      logPath: join(options.dataDir, 'mongo', 'mongod.log'),
      ttlMonitorSleepSecs: options.purpose === 'test' ? 1 : undefined,
      fileHandleCloseIdleSecs: options.purpose === 'test' ? 5 : undefined,
      detached,
      report,
    })
  }
  const startRedis = async (): Promise<RunningServer> => {
    if (options.env.REDIS_URL) return fromEnvironment('Redis', options.env.REDIS_URL)
    if (await useDocker()) return startRedisContainer()
    const port = await portFor(options.preferredPorts?.redis)
    report(`starting a local Redis on 127.0.0.1:${port}`)
    return startRedisServer({
      port,
      dir: join(options.dataDir, 'redis'),
      persistent: options.purpose === 'local',
      detached,
      report,
    })
  }

  const stop = async () => {
    await Promise.allSettled(started.map((server) => server.stop()))
  }
  const track = async (start: Promise<RunningServer>) => {
    const server = await start
    started.push(server)
    return server
  }
  const [mongo, redis] = await Promise.allSettled([track(startMongo()), track(startRedis())])
  if (mongo.status === 'rejected' || redis.status === 'rejected') {
    await stop()
    throw mongo.status === 'rejected' ? mongo.reason : (redis as PromiseRejectedResult).reason
  }
  report(`MongoDB: ${mongo.value.description} at ${mongo.value.url}`)
  report(`Redis: ${redis.value.description} at ${redis.value.url}`)
  return {
    mongoUrl: mongo.value.url,
    redisUrl: redis.value.url,
    mongo: mongo.value.description,
    redis: redis.value.description,
    stop,
  }
}
