/**
 * A bounded in-process cache whose misses load through one shared promise per key, so a burst
 * of requests for a cold workspace makes one upstream call, not hundreds. A failed load is not
 * cached. `drop` removes a key and makes any load already under way for it not count.
 */
export interface LoadingCache<Value> {
  get(key: string): Promise<Value>
  drop(key: string): void
  clear(): void
}

export interface LoadingCacheOptions<Value> {
  load: (key: string) => Promise<Value>
  ttlMs: number
  maxEntries: number
  now?: () => number
}

export function createLoadingCache<Value>(
  options: LoadingCacheOptions<Value>,
): LoadingCache<Value> {
  const now = options.now ?? Date.now
  const entries = new Map<string, { value: Value; expiresAt: number }>()
  const loading = new Map<string, { promise: Promise<Value> }>()

  const store = (key: string, value: Value) => {
    if (entries.size >= options.maxEntries) {
      const oldest = entries.keys().next()
      if (oldest.done !== true) entries.delete(oldest.value)
    }
    entries.set(key, { value, expiresAt: now() + options.ttlMs })
  }

  return {
    get(key) {
      const entry = entries.get(key)
      if (entry !== undefined) {
        if (entry.expiresAt > now()) return Promise.resolve(entry.value)
        entries.delete(key)
      }
      const pending = loading.get(key)
      if (pending !== undefined) return pending.promise
      const started = { promise: options.load(key) }
      loading.set(key, started)
      started.promise.then(
        (value) => {
          if (loading.get(key) !== started) return
          loading.delete(key)
          store(key, value)
        },
        () => {
          if (loading.get(key) === started) loading.delete(key)
        },
      )
      return started.promise
    },
    drop(key) {
      entries.delete(key)
      loading.delete(key)
    },
    clear() {
      entries.clear()
      loading.clear()
    },
  }
}
