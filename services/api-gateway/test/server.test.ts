import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { findFreePort, isPortOpen, portEverOpened } from '@platform/local-infra'
import { testMongoUrl, testRedisUrl } from '@platform/local-infra/vitest'
import { describe, expect, it } from 'vitest'

const serviceDir = fileURLToPath(new URL('..', import.meta.url))

/** Where the gateway's neighbours would be: nothing answers there, and boot does not need them. */
const NEIGHBOURS = {
  PUBLIC_URL: 'http://platform.test',
  AUTH_SERVICE_URL: 'http://127.0.0.1:9',
  WORKSPACE_SERVICE_URL: 'http://127.0.0.1:9',
  SERVICE_SECRET_GATEWAY: 'gateway-test-secret-0123456789abcdefghijklmnop',
}

/** Runs src/server.ts as a real process and watches its port while it lives. */
function runServer(env: NodeJS.ProcessEnv, port: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: serviceDir,
    env: { PATH: process.env.PATH, GATEWAY_PORT: String(port), LISTEN_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, exit, output: () => ({ stdout, stderr }) }
}

describe('the gateway process', () => {
  it('exits non-zero naming both bad variables, and never binds its port', async () => {
    const port = await findFreePort()
    const server = runServer(
      { ...NEIGHBOURS, MONGO_URL: 'postgres://not-mongo', REDIS_URL: 'localhost:6379' },
      port,
    )
    const bound = await portEverOpened(port, server.exit)
    expect(await server.exit).toBe(1)
    expect(bound).toBe(false)
    const { stderr } = server.output()
    expect(stderr).toContain('MONGO_URL')
    expect(stderr).toContain('REDIS_URL')
    expect(stderr).not.toContain('postgres://not-mongo')
    const line = JSON.parse(stderr.trim().split('\n').at(-1) ?? '{}')
    expect(line.level).toBe(60)
    expect(line.invalid.map((issue: { variable: string }) => issue.variable).sort()).toEqual([
      'MONGO_URL',
      'REDIS_URL',
    ])
  })

  it('serves on its port with a good environment and exits 0 on SIGTERM', async () => {
    const port = await findFreePort()
    const server = runServer(
      { ...NEIGHBOURS, MONGO_URL: testMongoUrl(), REDIS_URL: testRedisUrl() },
      port,
    )
    const deadline = Date.now() + 30_000
    let status = 0
    while (Date.now() < deadline && status !== 200) {
      status = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (response) => response.status,
        () => 0,
      )
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(status, server.output().stderr).toBe(200)
    server.child.kill('SIGTERM')
    expect(await server.exit).toBe(0)
    expect(await isPortOpen(port)).toBe(false)
  })
})
