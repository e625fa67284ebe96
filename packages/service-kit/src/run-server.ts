import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { ConfigError } from './config.js'

export interface RunServerOptions<Config> {
  service: string
  loadConfig: (env: NodeJS.ProcessEnv) => Config
  buildApp: (config: Config) => Promise<FastifyInstance>
  listenOn: (config: Config) => { host: string; port: number }
  /**
   * Further listeners of the same process, each an app `buildApp`'s app holds and closes (the
   * gateway's egress): bound once the main app listens.
   */
  companions?: (
    app: FastifyInstance,
    config: Config,
  ) => { app: FastifyInstance; host: string; port: number }[]
  /** How long in-flight requests get to finish on SIGINT/SIGTERM. */
  shutdownDelayMs?: number
}

/**
 * The body of every `server.ts`: config is parsed before anything starts, so a bad variable ends
 * the process with every invalid name on stderr and no port ever bound.
 */
export async function runServer<Config>(options: RunServerOptions<Config>): Promise<void> {
  const bootLog = pino(
    { name: options.service, base: { service: options.service } },
    pino.destination({ dest: 2, sync: true }),
  )
  let config: Config
  try {
    config = options.loadConfig(process.env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    bootLog.fatal({ invalid: error.issues }, error.message)
    process.exitCode = 1
    return
  }

  let app: FastifyInstance
  try {
    app = await options.buildApp(config)
  } catch (error) {
    bootLog.fatal({ err: error }, 'could not start')
    process.exitCode = 1
    return
  }

  closeWithGrace({ delay: options.shutdownDelayMs ?? 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })
  await app.listen(options.listenOn(config))
  for (const companion of options.companions?.(app, config) ?? [])
    await companion.app.listen({ host: companion.host, port: companion.port })
}
