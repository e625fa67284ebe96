import { cp, mkdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ensureDebianPackages } from './debian-packages.js'
import { execFileAsync } from './processes.js'
import type { Report } from './report.js'

export interface Wine {
  /** Debian's 64-bit loader; the package does not put it on PATH. */
  loader: string
  server: string
  version: string
}

async function findInPackage(pkg: string, suffix: string): Promise<string> {
  const { stdout } = await execFileAsync('dpkg', ['-L', pkg])
  const found = stdout.split('\n').find((line) => line.endsWith(suffix))
  if (found === undefined) throw new Error(`Debian package ${pkg} has no file ending in ${suffix}`)
  return found
}

export async function locateWine(report: Report): Promise<Wine> {
  await ensureDebianPackages(['wine64'], report)
  const loader = await findInPackage('wine64', '/wine64')
  const server = await findInPackage('libwine', '/wineserver')
  const { stdout } = await execFileAsync(loader, ['--version'])
  return { loader, server, version: stdout.trim() }
}

export function wineEnv(prefix: string): NodeJS.ProcessEnv {
  return { ...process.env, WINEPREFIX: prefix, WINEDEBUG: '-all' }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

/**
 * Ends every process of a prefix: wineserver outlives the programs it served and keeps their
 * listening sockets, so a program's exit alone does not free its port.
 */
export async function killWineServer(wine: Wine, prefix: string): Promise<void> {
  const env = wineEnv(prefix)
  await execFileAsync(wine.server, ['-k'], { env }).catch(() => undefined)
  await execFileAsync(wine.server, ['-w'], { env, timeout: 15_000 }).catch(() => undefined)
}

/**
 * A private prefix per server, copied from an initialized template in the cache: a fresh
 * `wineboot` takes ~15 s, a copy ~2 s. Each server gets its own because stopping one prefix's
 * wineserver would end every program sharing it.
 */
export async function ensureWinePrefix(
  wine: Wine,
  cacheDir: string,
  prefix: string,
  report: Report,
): Promise<void> {
  if (await exists(join(prefix, 'system.reg'))) return
  const template = join(cacheDir, `wine-prefix-${wine.version.replace(/[^\w.-]+/g, '_')}`)
  if (!(await exists(join(template, 'system.reg')))) {
    report(`initializing a Wine prefix template in ${template} (once, ~15 s)`)
    const staging = `${template}.tmp-${process.pid}`
    await rm(staging, { recursive: true, force: true })
    await execFileAsync(wine.loader, ['wineboot', '--init'], { env: wineEnv(staging) })
    await execFileAsync(wine.server, ['-w'], { env: wineEnv(staging) })
    await rename(staging, template).catch(async () => {
      await rm(staging, { recursive: true, force: true })
    })
  }
  await mkdir(join(prefix, '..'), { recursive: true })
  await cp(template, prefix, { recursive: true, verbatimSymlinks: true })
}
