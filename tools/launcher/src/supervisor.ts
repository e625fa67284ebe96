import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

export interface StartedService {
  name: string
  url: string
  child: ChildProcess
}

/** Prefixes each line a service prints with its name, so interleaved logs stay readable. */
function relayLines(
  stream: NodeJS.ReadableStream | null,
  name: string,
  out: NodeJS.WritableStream,
) {
  if (stream === null) return
  const lines = createInterface({ input: stream })
  lines.on('line', (line) => out.write(`${name.padEnd(18)}| ${line}\n`))
}

export function startService(options: {
  name: string
  entry: string
  cwd: string
  env: NodeJS.ProcessEnv
  url: string
}): StartedService {
  const child = spawn(process.execPath, ['--import', 'tsx', options.entry], {
    cwd: options.cwd,
    env: options.env,
    // Its own process group: a terminal's Ctrl-C reaches the launcher, which stops services in order.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  relayLines(child.stdout, options.name, process.stdout)
  relayLines(child.stderr, options.name, process.stderr)
  return { name: options.name, url: options.url, child }
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** Waits for 200 from the service's /readyz; fails when it exits first or the deadline passes. */
export async function waitForReady(service: StartedService, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer yet'
  while (Date.now() < deadline) {
    if (exited(service.child)) {
      throw new Error(
        `${service.name} exited (${service.child.exitCode ?? service.child.signalCode}) before it was ready`,
      )
    }
    try {
      const response = await fetch(`${service.url}/readyz`, { signal: AbortSignal.timeout(2000) })
      if (response.status === 200) return
      last = `/readyz answered ${response.status}: ${await response.text()}`
    } catch (error) {
      last = (error as Error).message
    }
    await sleep(250)
  }
  throw new Error(`${service.name} was not ready after ${timeoutMs} ms (${last})`)
}

/** SIGTERM, then SIGKILL to the whole process group if it has not exited within `graceMs`. */
export async function stopService(service: StartedService, graceMs: number): Promise<void> {
  const { child } = service
  if (exited(child) || child.pid === undefined) return
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = sleep(graceMs).then(() => 'timeout' as const)
  if ((await Promise.race([gone, timer])) === 'timeout') {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      child.kill('SIGKILL')
    }
    await gone
  }
}
