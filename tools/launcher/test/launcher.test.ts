import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { findFreePort, isPortOpen } from '@platform/local-infra'
import { afterAll, describe, expect, it } from 'vitest'

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url))

interface ProcessInfo {
  pid: number
  ppid: number
  state: string
  startTime: string
}

async function processTable(): Promise<Map<number, ProcessInfo>> {
  const table = new Map<number, ProcessInfo>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // The command name may hold spaces and parentheses; fields resume after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields.length < 20) continue
    table.set(Number(entry), {
      pid: Number(entry),
      ppid: Number(fields[1]),
      state: fields[0] ?? '',
      startTime: fields[19] ?? '',
    })
  }
  return table
}

function descendantsOf(root: number, table: Map<number, ProcessInfo>): ProcessInfo[] {
  const found: ProcessInfo[] = []
  const frontier = [root]
  while (frontier.length > 0) {
    const parent = frontier.pop()
    for (const info of table.values()) {
      if (info.ppid === parent) {
        found.push(info)
        frontier.push(info.pid)
      }
    }
  }
  return found
}

/** Wine's own processes are re-parented to init; they are ours when they run in our prefix. */
async function processesUsing(directory: string, table: Map<number, ProcessInfo>) {
  const found: ProcessInfo[] = []
  for (const info of table.values()) {
    const environ = await readFile(`/proc/${info.pid}/environ`, 'utf8').catch(() => '')
    if (environ.split('\0').some((entry) => entry.startsWith(`WINEPREFIX=${directory}`))) {
      found.push(info)
    }
  }
  return found
}

async function stillAlive(recorded: ProcessInfo[]): Promise<ProcessInfo[]> {
  const now = await processTable()
  return recorded.filter((info) => {
    const current = now.get(info.pid)
    return current !== undefined && current.startTime === info.startTime && current.state !== 'Z'
  })
}

describe('npm start', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const cleanup of cleanups) await cleanup()
  })

  it('starts every service, prints the URL, and leaves nothing behind after SIGINT', async () => {
    const localDir = await mkdtemp(join(tmpdir(), 'ai-platform-launcher-'))
    cleanups.push(() => rm(localDir, { recursive: true, force: true }))
    const gatewayPort = await findFreePort()
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      GATEWAY_PORT: String(gatewayPort),
      AUTH_SERVICE_PORT: String(await findFreePort()),
      WORKSPACE_SERVICE_PORT: String(await findFreePort()),
      CODE_RUNTIME_PORT: String(await findFreePort()),
      AI_PLATFORM_LOCAL_DIR: localDir,
      LOG_LEVEL: 'warn',
    }
    // The launcher provisions its own MongoDB and Redis here, which is what this test proves.
    delete env.MONGO_URL
    delete env.REDIS_URL

    const npmStart = spawn('npm', ['start'], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const npmPid = npmStart.pid as number
    cleanups.push(async () => {
      if (npmStart.exitCode === null) npmStart.kill('SIGKILL')
    })
    let output = ''
    npmStart.stdout.on('data', (chunk) => {
      output += chunk
    })
    npmStart.stderr.on('data', (chunk) => {
      output += chunk
    })
    const exited = new Promise<number | null>((resolve) =>
      npmStart.on('exit', (code) => resolve(code)),
    )

    const deadline = Date.now() + 150_000
    while (!/Platform ready: (\S+)/.test(output) && Date.now() < deadline) {
      if (npmStart.exitCode !== null) break
      await sleep(200)
    }
    const readyUrl = /Platform ready: (\S+)/.exec(output)?.[1]
    expect(readyUrl, output).toBe(`http://127.0.0.1:${gatewayPort}`)

    const readyServices = [...output.matchAll(/service (\S+) ready at (\S+)/g)]
    expect(readyServices.map((m) => m[1])).toEqual(
      expect.arrayContaining(['auth-service', 'workspace-service', 'api-gateway']),
    )
    const serviceUrls = readyServices.map((m) => m[2])
    for (const url of serviceUrls) {
      const response = await fetch(`${url}/readyz`)
      expect(response.status, `${url}/readyz`).toBe(200)
    }
    const mongoPort = Number(/MongoDB: .* at mongodb:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1])
    const redisPort = Number(/Redis: .* at redis:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1])
    expect(await isPortOpen(mongoPort)).toBe(true)
    expect(await isPortOpen(redisPort)).toBe(true)

    const table = await processTable()
    const recorded = [...descendantsOf(npmPid, table), ...(await processesUsing(localDir, table))]
    expect(recorded.length).toBeGreaterThan(3)

    process.kill(npmPid, 'SIGINT')
    const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)])
    expect(code, output).toBe(0)
    await sleep(10_000)

    expect(await stillAlive(recorded)).toEqual([])
    for (const port of [gatewayPort, mongoPort, redisPort]) {
      expect(await isPortOpen(port), `port ${port}`).toBe(false)
    }
  }, 240_000)
})
