import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'

/** A generation LibreChat runs for one member, named by its stream id (== conversation id). */
export interface WatchedStream {
  tenantId: string
  streamId: string
  libreChatUserId: string
}

export interface StreamWatchOptions {
  redis: Redis
  /** How long a stream left before its final frame waits for a reconnect (ARCHITECTURE §6). */
  graceMs: number
  /** Ends the generation if it still runs: status check, then abort with the stream id. */
  abort: (stream: WatchedStream) => Promise<void>
  log: FastifyBaseLogger
}

/** Keeps the subscriber count of a stream an hour after its last change, whatever happens. */
const COUNT_TTL_SECONDS = 3600

const subscribersKey = (stream: WatchedStream) =>
  `gw:stream-subscribers:{${stream.tenantId}}:${stream.streamId}`
/** Present from a generation's start until someone subscribes: that start's marker. */
const startKey = (stream: WatchedStream) =>
  `gw:stream-started:{${stream.tenantId}}:${stream.streamId}`

/**
 * Aborts abandoned generations and only those. LibreChat keeps generating after a client goes
 * away, which is what lets a reloaded page resume; so when a client leaves a stream before its
 * final frame, the gateway waits `graceMs` and aborts only if nobody, on any gateway replica,
 * has subscribed to that stream since. The count of open subscriptions lives in Redis for that.
 */
export function createStreamWatch(options: StreamWatchOptions) {
  const { redis, log } = options
  const timers = new Set<NodeJS.Timeout>()

  async function abortQuietly(stream: WatchedStream) {
    try {
      await options.abort(stream)
    } catch (error) {
      log.warn({ err: error, streamId: stream.streamId }, 'could not abort an abandoned stream')
    }
  }

  // Without Redis a reconnect on another replica cannot be seen; a generation left running
  // costs less than one cut off under a reader.
  const unreadable = (stream: WatchedStream) => (error: unknown) => {
    log.warn({ err: error, streamId: stream.streamId }, 'stream watch could not read its state')
    return undefined
  }

  let closed = false

  function later(check: () => Promise<void>) {
    // A stream ended by the gateway's own close is left to whoever reconnects to it.
    if (closed) return
    const timer = setTimeout(() => {
      timers.delete(timer)
      void check()
    }, options.graceMs)
    timer.unref()
    timers.add(timer)
  }

  /** Counts a subscription; call `ended(sawFinal)` exactly once when its client connection ends. */
  async function subscribe(stream: WatchedStream) {
    const key = subscribersKey(stream)
    // Any subscription means the latest start has been read: its own check stands down.
    await redis.multi().incr(key).expire(key, COUNT_TTL_SECONDS).del(startKey(stream)).exec()
    let done = false
    return {
      async ended(sawFinal: boolean) {
        if (done) return
        done = true
        await redis
          .multi()
          .decr(key)
          .expire(key, COUNT_TTL_SECONDS)
          .exec()
          .catch((error: unknown) => log.warn({ err: error }, 'stream watch lost a count'))
        if (sawFinal) return
        later(async () => {
          const count = await redis.get(key).catch(unreadable(stream))
          if (count === undefined || Number(count ?? '0') > 0) return
          await abortQuietly(stream)
        })
      },
    }
  }

  /**
   * A generation just started whose client has not subscribed yet: it is abandoned, like one
   * whose reader left, unless someone subscribes within the grace period. Call it before the
   * client can learn the stream id, so no subscription can come first. A stream id names a
   * conversation, whose earlier turns' counts say nothing about this one: each start is marked.
   */
  async function started(stream: WatchedStream) {
    const marker = randomUUID()
    const key = startKey(stream)
    const marked = await redis.set(key, marker, 'EX', COUNT_TTL_SECONDS).catch(unreadable(stream))
    if (marked === undefined) return
    later(async () => {
      const current = await redis.get(key).catch(unreadable(stream))
      if (current !== marker) return
      await abortQuietly(stream)
    })
  }

  return {
    subscribe,
    started,
    close() {
      closed = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
    },
  }
}

export type StreamWatch = ReturnType<typeof createStreamWatch>
/** One counted subscription, ended once when its client connection ends. */
export type OpenWatch = Awaited<ReturnType<StreamWatch['subscribe']>>

const FINAL_MARK = Buffer.from('"final":true', 'latin1')

/**
 * Watches an SSE body chunk by chunk for the frame that ends a LibreChat generation
 * (`{"final":true,…}`) and calls `onFinal` once it has gone by. The mark may straddle chunks,
 * so the last bytes of each chunk are kept for the next search.
 */
export function finalFrameDetector(onFinal: () => void): (chunk: Buffer) => void {
  // A buffer of its own, never a slice of a chunk: a slice would keep the socket's whole read
  // buffer alive for as long as an idle stream stays open.
  const tail = Buffer.alloc(FINAL_MARK.length - 1)
  let tailLength = 0
  let seen = false
  return (chunk) => {
    if (seen) return
    const straddles =
      tailLength > 0 &&
      Buffer.concat([tail.subarray(0, tailLength), chunk.subarray(0, tail.length)]).includes(
        FINAL_MARK,
      )
    if (straddles || chunk.includes(FINAL_MARK)) {
      seen = true
      onFinal()
      return
    }
    const kept =
      chunk.length >= tail.length ? chunk : Buffer.concat([tail.subarray(0, tailLength), chunk])
    tailLength = kept.copy(tail, 0, Math.max(0, kept.length - tail.length))
  }
}
