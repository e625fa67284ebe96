import { DependencyUnavailable } from '../errors.js'

/** ioredis' failures while Redis is away (connection closed, retries used up, timeouts). */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|ECONNREFUSED|ETIMEDOUT|Stream isn't writeable|enableOfflineQueue/.test(
      error.message,
    )
  )
}

/**
 * Runs work that needs Redis for a safety decision (limits, revocations, sign-in state): while
 * Redis is away it fails closed, as 503 `AUTH_DEPENDENCY_UNAVAILABLE`.
 */
export async function withSessionStore<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    if (isRedisUnavailable(error))
      throw new DependencyUnavailable('The session store', { cause: error })
    throw error
  }
}
