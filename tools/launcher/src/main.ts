import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Infrastructure, isPortOpen, provideInfrastructure } from '@platform/local-infra'
import { loadOrCreateSecrets } from './secrets.js'
import { existingServices, serverEntry } from './services.js'
import { type StartedService, startService, stopService, waitForReady } from './supervisor.js'

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const say = (line: string) => process.stdout.write(`[launcher] ${line}\n`)
const env = process.env
/** Generated secrets, databases and logs of local runs; git-ignored. */
const localDir = resolve(env.AI_PLATFORM_LOCAL_DIR || join(REPO_ROOT, '.local'))
const READY_TIMEOUT_MS = 90_000

interface LauncherState {
  mongoPort?: number
  redisPort?: number
}

async function readState(file: string): Promise<LauncherState> {
  return JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as LauncherState
}

function portOf(listener: { portVariable: string; defaultPort: number }): number {
  const value = env[listener.portVariable]
  if (value === undefined || value === '') return listener.defaultPort
  const port = Number(value)
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`${listener.portVariable}=${value} is not a port`)
  }
  return port
}

let infrastructure: Infrastructure | undefined
const started: StartedService[] = []
let stopping: Promise<void> | undefined

function stopEverything(): Promise<void> {
  stopping ??= (async () => {
    for (const service of [...started].reverse()) {
      say(`stopping ${service.name}`)
      await stopService(service, 15_000)
    }
    if (infrastructure !== undefined) {
      say('stopping MongoDB and Redis')
      await infrastructure.stop()
    }
  })()
  return stopping
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (stopping !== undefined) return
    say(`${signal}: stopping everything`)
    void stopEverything().then(() => {
      say('stopped')
      process.exit(0)
    })
  })
}

// Whoever started us (npm, a terminal) is gone when we are re-parented; nothing else would stop us then.
const parentAtStart = process.ppid
setInterval(() => {
  if (process.ppid === parentAtStart || stopping !== undefined) return
  say('parent process exited: stopping everything')
  void stopEverything().then(() => process.exit(1))
}, 1000).unref()

async function main() {
  await mkdir(localDir, { recursive: true })
  const services = existingServices(REPO_ROOT).map((service) => {
    const port = portOf(service)
    const extraPorts = (service.extraListeners ?? []).map((listener) => ({
      portVariable: listener.portVariable,
      port: portOf(listener),
    }))
    return { ...service, port, extraPorts, url: `http://127.0.0.1:${port}` }
  })
  for (const service of services) {
    for (const listener of [service, ...service.extraPorts]) {
      if (await isPortOpen(listener.port)) {
        throw new Error(
          `port ${listener.port} for ${service.name} is taken; set ${listener.portVariable} to a free one`,
        )
      }
    }
  }

  const stateFile = join(localDir, 'launcher-state.json')
  const state = await readState(stateFile)
  infrastructure = await provideInfrastructure({
    env,
    purpose: 'local',
    dataDir: localDir,
    preferredPorts: { mongo: state.mongoPort, redis: state.redisPort },
    detached: true,
    report: (line) => say(line),
  })
  const portIn = (url: string) => Number(new URL(url).port) || undefined
  await writeFile(
    stateFile,
    JSON.stringify({
      mongoPort: portIn(infrastructure.mongoUrl),
      redisPort: portIn(infrastructure.redisUrl),
    }),
  )

  const secrets = await loadOrCreateSecrets(join(localDir, 'secrets.env'), env)
  if (secrets.generated.length > 0) {
    say(`generated ${secrets.generated.join(', ')} into ${join(localDir, 'secrets.env')}`)
  }

  const gateway = services.find((service) => service.name === 'api-gateway')
  const serviceEnv: NodeJS.ProcessEnv = {
    ...env,
    ...secrets.values,
    MONGO_URL: infrastructure.mongoUrl,
    REDIS_URL: infrastructure.redisUrl,
    LISTEN_HOST: env.LISTEN_HOST || '127.0.0.1',
    LOG_PRETTY: env.LOG_PRETTY || (process.stdout.isTTY ? 'true' : 'false'),
  }
  if (gateway !== undefined && !env.PUBLIC_URL) serviceEnv.PUBLIC_URL = gateway.url
  for (const service of services) {
    serviceEnv[service.portVariable] = String(service.port)
    for (const listener of service.extraPorts)
      serviceEnv[listener.portVariable] = String(listener.port)
    if (service.urlVariable !== undefined) serviceEnv[service.urlVariable] = service.url
  }

  for (const service of services) {
    say(`starting ${service.name} on ${service.url}`)
    const running = startService({
      name: service.name,
      entry: serverEntry(REPO_ROOT, service),
      cwd: join(REPO_ROOT, 'services', service.name),
      env: serviceEnv,
      url: service.url,
      ...(service.nodeFlags === undefined ? {} : { nodeFlags: service.nodeFlags }),
    })
    started.push(running)
    running.child.once('exit', (code, signal) => {
      if (stopping !== undefined) return
      say(`${service.name} exited unexpectedly (${code ?? signal}); stopping everything`)
      void stopEverything().then(() => process.exit(1))
    })
    await waitForReady(running, READY_TIMEOUT_MS)
    say(`service ${service.name} ready at ${running.url}`)
  }

  const entry = gateway?.url ?? started.at(-1)?.url
  process.stdout.write(`\nPlatform ready: ${entry}  (Ctrl-C stops everything)\n\n`)
}

main().catch(async (error: unknown) => {
  process.stderr.write(`[launcher] ${(error as Error).message}\n`)
  await stopEverything()
  process.exit(1)
})
