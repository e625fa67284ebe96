import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { stopChild, waitUntilReady } from '@platform/local-infra'

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
  nodeFlags?: string[]
}): StartedService {
  const flags = [...(options.nodeFlags ?? []), '--import', 'tsx', options.entry]
  const child = spawn(process.execPath, flags, {
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

/** Waits for 200 from the service's /readyz; fails when it exits first or the deadline passes. */
export async function waitForReady(service: StartedService, timeoutMs: number): Promise<void> {
  let lastAnswer = 'no answer yet'
  await waitUntilReady({
    what: service.name,
    child: service.child,
    output: () => lastAnswer,
    timeoutMs,
    probe: async () => {
      try {
        const response = await fetch(`${service.url}/readyz`, { signal: AbortSignal.timeout(2000) })
        if (response.status === 200) return true
        lastAnswer = `/readyz answered ${response.status}: ${await response.text()}`
      } catch (error) {
        lastAnswer = (error as Error).message
      }
      return false
    },
  })
}

/** SIGTERM, then SIGKILL to the service's whole process group if it outlives `graceMs`. */
export const stopService = (service: StartedService, graceMs: number) =>
  stopChild(service.child, 'SIGTERM', graceMs, { processGroup: true })
