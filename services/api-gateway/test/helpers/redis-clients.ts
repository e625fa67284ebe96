import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { findFreePort } from '@platform/local-infra'
import { testRedisUrl } from '@platform/local-infra/vitest'
import { redisClientOptions } from '@platform/service-kit'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll } from 'vitest'

/** The service kit's client settings, so tests meet Redis as the gateway does. */
const SERVICE_KIT_OPTIONS: RedisOptions = redisClientOptions()

const clients: Redis[] = []
const servers: Server[] = []
const sockets = new Set<Socket>()

afterAll(async () => {
  await Promise.all(
    clients.map(async (client) => {
      if (client.status === 'end') return
      // Between reconnect attempts there is no socket to close, so no 'end' would come.
      const ended = client.status === 'reconnecting' ? undefined : once(client, 'end')
      client.disconnect()
      await ended
    }),
  )
  for (const socket of sockets) socket.destroy()
  await Promise.all(
    servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
  )
})

/** A client of the run's Redis, one per gateway replica a test plays; closed after the file. */
export function connectRedis(options: RedisOptions = {}): Redis {
  const client = new Redis(testRedisUrl(), { ...SERVICE_KIT_OPTIONS, ...options })
  clients.push(client)
  return client
}

/** A client pointed at a port nothing listens on: every command meets a refused connection. */
export async function unreachableRedis(): Promise<Redis> {
  const port = await findFreePort()
  const client = new Redis(port, '127.0.0.1', { ...SERVICE_KIT_OPTIONS, lazyConnect: true })
  // ioredis reports each failed reconnect here; without a listener Node would print them.
  client.on('error', () => {})
  clients.push(client)
  return client
}

/** A client of a server that takes the connection and never answers: commands time out. */
export async function silentRedis(commandTimeoutMs: number): Promise<Redis> {
  const server = createServer((socket) => {
    sockets.add(socket)
  })
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const client = new Redis(address.port, '127.0.0.1', {
    ...SERVICE_KIT_OPTIONS,
    commandTimeout: commandTimeoutMs,
    // A silent server never says it is ready; commands must be sent regardless.
    enableReadyCheck: false,
  })
  client.on('error', () => {})
  clients.push(client)
  return client
}

/**
 * The commands clients sent Redis that name `marker` in any argument, seen through MONITOR: how a
 * test proves an operation costs one command (one round trip) without trusting the client library.
 */
export async function commandsNaming(marker: string, work: () => Promise<unknown>) {
  const monitor = await connectRedis().monitor()
  const seen: string[][] = []
  const sentinel = `${marker}:sentinel:${Math.random()}`
  let sawSentinel: () => void = () => {}
  const sentinelSeen = new Promise<void>((resolve) => {
    sawSentinel = resolve
  })
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (args.includes(sentinel)) sawSentinel()
    // What a script runs inside Redis is listed too, under the source `lua`: not a round trip.
    else if (source !== 'lua' && args.some((arg) => arg.includes(marker))) seen.push(args)
  })
  try {
    await work()
    // MONITOR reports asynchronously: a command sent after the work, seen, means all of it was.
    await connectRedis().exists(sentinel)
    await sentinelSeen
  } finally {
    monitor.disconnect()
  }
  return seen
}
