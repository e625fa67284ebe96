/**
 * A bounded in-process cache whose misses load through one shared promise per key, so a burst
 * of requests for a cold workspace makes one upstream call, not hundreds. A failed load is not
 * cached. `drop` removes a key and makes any load already under way for it not count.
 *
 * An entry read in the last quarter of its life is reloaded in the background while it is
 * still served, so a key in steady use never makes a request wait for its reload (which on a
 * busy gateway would hold every request of the workspace at each expiry). No value is served
 * past its `ttlMs`: a reload that fails or is slow leaves the entry to expire as it would have.
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
  const refreshAfterMs = Math.floor((options.ttlMs * 3) / 4)
  const loading = new Map<string, { promise: Promise<Value> }>()

  const store = (key: string, value: Value) => {
    entries.delete(key)
    if (entries.size >= options.maxEntries) {
      const oldest = entries.keys().next()
      if (oldest.done !== true) entries.delete(oldest.value)
    }
    entries.set(key, { value, expiresAt: now() + options.ttlMs })
  }

  const load = (key: string) => {
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
  }

  return {
    get(key) {
      const entry = entries.get(key)
      if (entry !== undefined) {
        const at = now()
        if (entry.expiresAt > at) {
          if (entry.expiresAt - at <= options.ttlMs - refreshAfterMs && !loading.has(key))
            load(key).catch(() => undefined)
          return Promise.resolve(entry.value)
        }
        entries.delete(key)
      }
      return loading.get(key)?.promise ?? load(key)
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
