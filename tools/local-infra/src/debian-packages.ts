import { execFileAsync } from './processes.js'
import type { Report } from './report.js'

let aptListsUpdated = false

async function isInstalled(pkg: string): Promise<boolean> {
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
    const { stdout } = await execFileAsync('dpkg-query', ['-W', '-f=${Status}', pkg])
    return stdout.includes('install ok installed')
  } catch {
    return false
  }
}

/** Installs Debian packages that are missing, refreshing the package lists once per process. */
export async function ensureDebianPackages(packages: string[], report: Report): Promise<void> {
  const missing: string[] = []
  for (const pkg of packages) if (!(await isInstalled(pkg))) missing.push(pkg)
  if (missing.length === 0) return
  if (process.getuid?.() !== 0) {
    throw new Error(
      `Debian packages ${missing.join(', ')} are needed; install them (apt-get install ${missing.join(' ')}) or set MONGO_URL and REDIS_URL`,
    )
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  if (!aptListsUpdated) {
    report('apt-get update')
    await execFileAsync('apt-get', ['update', '-q'], { env, maxBuffer: 64 * 1024 * 1024 })
    aptListsUpdated = true
  }
  report(`apt-get install ${missing.join(' ')}`)
  await execFileAsync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], {
    env,
    maxBuffer: 64 * 1024 * 1024,
  })
}
