import { mkdir } from 'node:fs/promises'
import { Socket } from 'node:net'
import { ensureDebianPackages } from './debian-packages.js'
import {
  execFileAsync,
  spawnServer,
  stopChild,
  waitUntilReady,
  whichExecutable,
} from './processes.js'
import type { Report } from './report.js'
import type { RunningServer } from './running-server.js'

export interface RedisServerOptions {
  port: number
  dir: string
  /** Append-only persistence for local runs; tests keep nothing on disk. */
  persistent: boolean
  detached: boolean
  report: Report
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket()
    let reply = ''
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1000, () => done(false))
    socket.once('error', () => done(false))
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8')
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'))
  })
}

/** Starts Debian's redis-server (installing it when missing) and waits until it answers PING. */
export async function startRedisServer(options: RedisServerOptions): Promise<RunningServer> {
  let binary = await whichExecutable('redis-server')
  if (binary === undefined) {
    await ensureDebianPackages(['redis-server'], options.report)
    binary = '/usr/bin/redis-server'
  }
  const { stdout } = await execFileAsync(binary, ['--version'])
  const version = /v=([\d.]+)/.exec(stdout)?.[1] ?? 'unknown'
  await mkdir(options.dir, { recursive: true })
  const args = [
    '--port',
    String(options.port),
    '--bind',
    '127.0.0.1',
    '--daemonize',
    'no',
    '--dir',
    options.dir,
    '--save',
    '',
    '--appendonly',
    options.persistent ? 'yes' : 'no',
  ]
  const server = spawnServer(binary, args, { detached: options.detached })
  const description = `Redis ${version} (${binary})`
  const stop = () => stopChild(server.child, 'SIGTERM', 10_000, { processGroup: options.detached })
  try {
    await waitUntilReady({
      what: description,
      child: server.child,
      output: server.output,
      probe: () => answersPing(options.port),
      timeoutMs: 30_000,
    })
  } catch (error) {
    await stop()
    throw error
  }
  return { url: `redis://127.0.0.1:${options.port}`, description, stop }
}
