import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { findFreePort, isPortOpen, portEverOpened } from '@platform/local-infra'
import { describe, expect, it, onTestFinished } from 'vitest'

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
const FIXTURE = 'test/fixtures/run-server.ts'

interface Run {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts the fixture with exactly the given environment (plus what node itself needs). */
function startFixture(env: Record<string, string>): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    cwd: packageDir,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      TMPDIR: process.env.TMPDIR ?? '/tmp',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }))
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

interface BootLine {
  level: number
  service: string
  msg: string
  invalid: { variable: string; message: string }[]
}

function fatalLine(stderr: string): BootLine {
  const lines = stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as BootLine)
  const fatal = lines.find((line) => line.level === 60)
  expect(fatal, stderr).toBeDefined()
  return fatal as BootLine
}

describe('runServer', () => {
  it('exits 1 naming both invalid variables on stderr, and never listens', async () => {
    const port = await findFreePort()
    const badMongo = 'mysql://root:hunter2-db-password@db:3306/app'
    const badSecret = 'short-session-secret'
    const run = startFixture({
      FIXTURE_PORT: String(port),
      LISTEN_HOST: '127.0.0.1',
      MONGO_URL: badMongo,
      SESSION_SECRET: badSecret,
    })

    const everOpen = await portEverOpened(port, run.exited)
    const { code } = await run.exited

    expect(code).toBe(1)
    expect(everOpen).toBe(false)
    const fatal = fatalLine(run.stderr())
    expect(fatal).toMatchObject({
      level: 60,
      service: 'run-server-fixture',
      invalid: [
        { variable: 'MONGO_URL', message: 'must be a mongodb:// or mongodb+srv:// URL' },
        { variable: 'SESSION_SECRET', message: 'must be at least 32 characters' },
      ],
    })
    expect(fatal.msg).toContain('MONGO_URL')
    expect(fatal.msg).toContain('SESSION_SECRET')
    expect(run.stderr()).not.toContain('hunter2')
    expect(run.stderr()).not.toContain(badSecret)
    expect(run.stdout()).toBe('')
  })

  it('exits 1 naming both variables when they are missing', async () => {
    const port = await findFreePort()
    const run = startFixture({ FIXTURE_PORT: String(port), LISTEN_HOST: '127.0.0.1' })

    const everOpen = await portEverOpened(port, run.exited)
    const { code } = await run.exited

    expect(code).toBe(1)
    expect(everOpen).toBe(false)
    expect(fatalLine(run.stderr()).invalid).toEqual([
      { variable: 'MONGO_URL', message: 'is required' },
      { variable: 'SESSION_SECRET', message: 'is required (npm start generates one)' },
    ])
  })

  it('listens on the configured port when the config is valid, and stops on SIGTERM', async () => {
    const port = await findFreePort()
    const run = startFixture({
      FIXTURE_PORT: String(port),
      LISTEN_HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      MONGO_URL: 'mongodb://127.0.0.1:27017/app',
      SESSION_SECRET: 's'.repeat(32),
    })

    const deadline = Date.now() + 20_000
    while (!(await isPortOpen(port)) && Date.now() < deadline && run.child.exitCode === null) {
      await sleep(50)
    }
    expect(await isPortOpen(port), run.stderr()).toBe(true)
    const health = await fetch(`http://127.0.0.1:${port}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: 'ok' })

    run.child.kill('SIGTERM')
    const { code } = await run.exited
    expect(code).toBe(0)
    expect(await isPortOpen(port)).toBe(false)
  })
})
