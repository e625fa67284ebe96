import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Provisioned artefacts live outside the clone so every clone on the machine reuses them. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env.AI_PLATFORM_CACHE_DIR ||
    join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ai-platform')
  )
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk)
  return hash.digest('hex')
}
