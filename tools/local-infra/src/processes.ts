import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

export const execFileAsync = promisify(execFile)

/** Whether an executable is on PATH; returns its path. */
export async function whichExecutable(name: string): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync('sh', ['-c', `command -v ${name}`])
    const found = stdout.trim()
    return found === '' ? undefined : found
  } catch {
    return undefined
  }
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

/**
 * Sends `signal`, then SIGKILL if the process has not exited after `graceMs`; with
 * `processGroup` (a child spawned detached) the SIGKILL reaches everything it started too.
 */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals,
  graceMs: number,
  options: { processGroup?: boolean } = {},
) {
  if (hasExited(child)) return
  child.kill(signal)
  if (await waitForExit(child, graceMs)) return
  if (options.processGroup === true && child.pid !== undefined) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      child.kill('SIGKILL')
    }
  } else {
    child.kill('SIGKILL')
  }
  await waitForExit(child, 5000)
}

/**
 * Polls `probe` until it resolves true, failing early when the child exits (with the tail of its
 * output, which is where a server explains why it would not start).
 */
export async function waitUntilReady(options: {
  what: string
  child: ChildProcess
  output: () => string
  probe: () => Promise<boolean>
  timeoutMs: number
}): Promise<void> {
  const deadline = Date.now() + options.timeoutMs
  while (Date.now() < deadline) {
    if (hasExited(options.child)) {
      throw new Error(
        `${options.what} exited (${options.child.exitCode ?? options.child.signalCode}) before it was ready:\n${options.output()}`,
      )
    }
    if (await options.probe()) return
    await sleep(200)
  }
  throw new Error(
    `${options.what} was not ready after ${options.timeoutMs} ms:\n${options.output()}`,
  )
}

/** Starts a server process and keeps the last few KiB of its output for error messages. */
export function spawnServer(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; detached: boolean },
) {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: options.detached,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let tail = ''
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-4096)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => tail }
}
