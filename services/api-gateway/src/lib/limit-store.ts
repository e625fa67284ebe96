import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

/*
 * What the gateway's Redis-held limits (rate limits, stream slots) share: how their Lua scripts
 * run, how a Redis failure reads (closed), and how keys are built.
 */

/**
 * Redis could not answer a limit decision (refused connection, closed socket, command timeout,
 * a server that is loading or read-only). Limits fail closed: the caller answers 503
 * `GW_DEPENDENCY_UNAVAILABLE`, never "allowed".
 */
export class LimitStoreUnavailableError extends Error {
  constructor(options?: ErrorOptions) {
    super('The limit store is unreachable', options)
    this.name = 'LimitStoreUnavailableError'
  }
}

/** Runs one Lua script: `(keys, args) → reply`, one round trip once Redis has the script cached. */
export type LimitScript = (keys: string[], args: (string | number)[]) => Promise<unknown>

/**
 * A script sent by its SHA (EVALSHA), and in full only when this Redis has not seen it yet
 * (NOSCRIPT: a restart or a fresh server), so every later call is one command on the wire. Every
 * Redis failure becomes a `LimitStoreUnavailableError`.
 */
export function defineLimitScript(redis: Redis, lua: string): LimitScript {
  const sha = createHash('sha1').update(lua).digest('hex')
  return async (keys, args) => {
    try {
      try {
        return await redis.evalsha(sha, keys.length, ...keys, ...args)
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith('NOSCRIPT'))) throw error
        return await redis.eval(lua, keys.length, ...keys, ...args)
      }
    } catch (error) {
      throw new LimitStoreUnavailableError({ cause: error })
    }
  }
}

/** A script's reply as the `count` integers it is written to return. */
export function integerReply(reply: unknown, count: number): number[] {
  if (
    !Array.isArray(reply) ||
    reply.length !== count ||
    !reply.every((value) => typeof value === 'number')
  )
    throw new LimitStoreUnavailableError({
      cause: new Error(`unexpected limit script reply: ${JSON.stringify(reply)}`),
    })
  return reply
}

/**
 * A key prefix that keeps the tenant id the key's only hash tag: Redis Cluster hashes the text
 * between the first `{` and the next `}`, so a brace in the prefix would move the tag.
 */
export function assertKeyPrefix(keyPrefix: string): void {
  if (/[{}]/.test(keyPrefix))
    throw new RangeError(`key prefix ${JSON.stringify(keyPrefix)} must not contain braces`)
}

/**
 * One id as a key segment. Encoding keeps `:` (the segment separator) and braces (the hash tag)
 * out of ids, so two different id tuples can never name the same key.
 */
export function keySegment(what: string, id: string): string {
  if (id.length === 0) throw new RangeError(`${what} must not be empty`)
  return encodeURIComponent(id)
}

/** `null` (no limit) or a whole number of at least 0. */
export function assertLimit(what: string, limit: number | null, max: number): void {
  if (limit === null) return
  if (!Number.isSafeInteger(limit) || limit < 0 || limit > max)
    throw new RangeError(`${what} must be null or a whole number from 0 to ${max}, not ${limit}`)
}
