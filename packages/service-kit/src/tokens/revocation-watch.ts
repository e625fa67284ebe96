import { revokedSessionKey } from '@platform/shared-types'
import type { Redis } from 'ioredis'

/** The channel Redis publishes key invalidations on for RESP2 clients (CLIENT TRACKING). */
const INVALIDATION_CHANNEL = '__redis__:invalidate'
/** An answer that old is asked again even with no invalidation: bounds a silently lost watch. */
const DEFAULT_MAX_AGE_MS = 10_000
const DEFAULT_CAPACITY = 50_000

export interface RevocationWatchOptions {
  /** The service's client; its `keyPrefix` is the watched keys' prefix too. */
  redis: Redis
  maxAgeMs?: number
  capacity?: number
}

export interface RevocationWatch {
  /** Whether the session is revoked: from memory when the watch is live, else from Redis. */
  isRevoked(sessionId: string): Promise<boolean>
  /** Whether answers are served from memory now (the watch is subscribed). */
  readonly live: boolean
  close(): void
}

interface Answer {
  revoked: boolean
  atMs: number
}

/**
 * The revocation list held in memory and kept true by Redis itself: a connection of its own asks
 * for server-assisted client-side caching of every revocation key (`CLIENT TRACKING … BCAST
 * PREFIX`, redirected to itself and subscribed to the invalidation channel), so a revocation
 * written by the auth-service reaches every replica as an invalidation the moment it is set.
 * Without it each request paid a Redis round trip (bench:gateway).
 *
 * Memory answers only while that subscription is up; a lost connection clears them and every
 * check goes to Redis until tracking is set up again. An answer read from Redis is kept only if
 * no invalidation arrived while it was being read (it could predate the revocation), and none is
 * kept longer than `maxAgeMs`, which bounds what a connection dropped without a close could hide.
 */
export function createRevocationWatch(options: RevocationWatchOptions): RevocationWatch {
  const { redis } = options
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS
  const capacity = options.capacity ?? DEFAULT_CAPACITY
  const keyPrefix = redis.options.keyPrefix ?? ''
  const watchedPrefix = `${keyPrefix}${revokedSessionKey('')}`
  const answers = new Map<string, Answer>()
  let live = false
  // Bumped by every invalidation and every loss of the watch: an answer read across a bump
  // may be stale, so it is not kept.
  let epoch = 0
  let closed = false

  const forgetAll = () => {
    answers.clear()
    epoch += 1
  }

  const watcher = redis.duplicate({
    keyPrefix: undefined,
    // The tracking request must precede the subscription on every new connection.
    autoResubscribe: false,
    enableAutoPipelining: false,
    lazyConnect: true,
    // Named for operators reading CLIENT LIST (and tests that cut this connection).
    connectionName: `revocation-watch:${keyPrefix.replace(/[^\w:.-]/g, '_')}`,
  })
  watcher.on('error', () => {
    // Reported by the service's own client; here a failure only means "ask Redis".
  })
  const lost = () => {
    live = false
    forgetAll()
  }
  watcher.on('close', lost)
  watcher.on('reconnecting', lost)
  watcher.on('ready', () => {
    void track().catch(() => {
      // The connection went away while setting up; its reconnection tries again.
      lost()
    })
  })
  watcher.on('messageBuffer', (channel: Buffer, keys: unknown) => {
    if (channel.toString() !== INVALIDATION_CHANNEL) return
    epoch += 1
    // A flush invalidates everything and arrives without keys.
    if (!Array.isArray(keys)) {
      answers.clear()
      return
    }
    for (const key of keys) {
      const name = String(key)
      if (name.startsWith(watchedPrefix)) answers.delete(name.slice(watchedPrefix.length))
    }
  })

  async function track() {
    const id = await watcher.client('ID')
    await watcher.call(
      'CLIENT',
      'TRACKING',
      'ON',
      'REDIRECT',
      String(id),
      'BCAST',
      'PREFIX',
      watchedPrefix,
    )
    await watcher.subscribe(INVALIDATION_CHANNEL)
    forgetAll()
    live = !closed
  }
  watcher.connect().catch(() => {
    // Retried by ioredis; checks go to Redis meanwhile.
  })

  const remember = (sessionId: string, answer: Answer) => {
    if (answers.size >= capacity) {
      const oldest = answers.keys().next()
      if (oldest.done !== true) answers.delete(oldest.value)
    }
    answers.set(sessionId, answer)
  }

  return {
    async isRevoked(sessionId) {
      const nowMs = Date.now()
      if (live) {
        const known = answers.get(sessionId)
        if (known !== undefined && nowMs - known.atMs < maxAgeMs) return known.revoked
      }
      const epochBefore = epoch
      const liveBefore = live
      const revoked = (await redis.exists(revokedSessionKey(sessionId))) > 0
      if (liveBefore && live && epoch === epochBefore) remember(sessionId, { revoked, atMs: nowMs })
      return revoked
    },
    get live() {
      return live
    },
    close() {
      closed = true
      live = false
      answers.clear()
      watcher.disconnect()
    },
  }
}
