import type { Redis } from 'ioredis'

/** Every key matching `pattern`, SCANned in batches (never KEYS on a Redis others may share). */
export async function keysMatching(redis: Redis, pattern: string) {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}
