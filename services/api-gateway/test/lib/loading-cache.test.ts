import { describe, expect, it } from 'vitest'
import { createLoadingCache } from '../../src/lib/loading-cache.js'

/** A load the test finishes by hand, one per call, in order. */
function manualLoads() {
  const calls: { key: string; resolve: (value: string) => void; reject: (error: Error) => void }[] =
    []
  const load = (key: string) =>
    new Promise<string>((resolve, reject) => calls.push({ key, resolve, reject }))
  return { calls, load }
}

const settled = () => new Promise<void>((resolve) => setImmediate(resolve))

function cacheAt(ttlMs = 1000, maxEntries = 10) {
  const clock = { ms: 0 }
  const loads = manualLoads()
  const cache = createLoadingCache({
    load: loads.load,
    ttlMs,
    maxEntries,
    now: () => clock.ms,
  })
  /** Loads `key` as `value` (the next load the cache starts) and waits for it to be stored. */
  const stored = async (key: string, value: string) => {
    const loading = cache.get(key)
    loads.calls.at(-1)?.resolve(value)
    await loading
  }
  return { cache, clock, loads, stored }
}

describe('createLoadingCache', () => {
  it('loads a cold key once for every concurrent reader', async () => {
    const { cache, loads } = cacheAt()
    const readers = [cache.get('w1'), cache.get('w1'), cache.get('w1')]
    expect(loads.calls).toHaveLength(1)
    loads.calls[0]?.resolve('v1')
    expect(await Promise.all(readers)).toEqual(['v1', 'v1', 'v1'])
  })

  it('serves an entry in the last quarter of its life while one background reload replaces it', async () => {
    const { cache, clock, loads, stored } = cacheAt(1000)
    await stored('w1', 'v1')
    clock.ms = 700
    expect(await cache.get('w1')).toBe('v1')
    expect(loads.calls).toHaveLength(1)

    clock.ms = 800
    // Answered from memory at once, the reload under way behind it; a second reader starts none.
    expect(await cache.get('w1')).toBe('v1')
    expect(await cache.get('w1')).toBe('v1')
    expect(loads.calls).toHaveLength(2)
    loads.calls[1]?.resolve('v2')
    await settled()
    expect(await cache.get('w1')).toBe('v2')

    // The reloaded entry lives a full ttl from its reload.
    clock.ms = 1500
    expect(await cache.get('w1')).toBe('v2')
    expect(loads.calls).toHaveLength(2)
  })

  it('never serves an entry past its ttl: a failed or slow reload leaves it to expire', async () => {
    const { cache, clock, loads, stored } = cacheAt(1000)
    await stored('w1', 'v1')
    clock.ms = 900
    expect(await cache.get('w1')).toBe('v1')
    loads.calls[1]?.reject(new Error('workspace-service down'))
    await settled()

    clock.ms = 950
    expect(await cache.get('w1')).toBe('v1')
    expect(loads.calls).toHaveLength(3)

    // Expired with its reload still pending: the reader waits for that reload, not the old value.
    clock.ms = 1000
    const waiting = cache.get('w1')
    expect(loads.calls).toHaveLength(3)
    let answered: string | undefined
    void waiting.then((value) => {
      answered = value
    })
    await settled()
    expect(answered).toBeUndefined()
    loads.calls[2]?.resolve('v3')
    expect(await waiting).toBe('v3')
  })

  it('drops a key with its reload under way: the reload does not bring it back', async () => {
    const { cache, clock, loads, stored } = cacheAt(1000)
    await stored('w1', 'v1')
    clock.ms = 800
    await cache.get('w1')
    cache.drop('w1')
    loads.calls[1]?.resolve('stale')
    await settled()

    const next = cache.get('w1')
    expect(loads.calls).toHaveLength(3)
    loads.calls[2]?.resolve('fresh')
    expect(await next).toBe('fresh')
  })

  it('keeps at most maxEntries, a reloaded key counting as stored anew', async () => {
    const { cache, clock, loads, stored } = cacheAt(1000, 2)
    await stored('w1', 'w1-v1')
    await stored('w2', 'w2-v1')
    clock.ms = 800
    await cache.get('w1')
    loads.calls.at(-1)?.resolve('w1-v2')
    await settled()
    expect(loads.calls.map((call) => call.key)).toEqual(['w1', 'w2', 'w1'])

    // A third key evicts the oldest stored: w2, since w1 was stored again by its reload.
    await stored('w3', 'w3-v1')
    expect(await cache.get('w1')).toBe('w1-v2')
    expect(loads.calls).toHaveLength(4)
    void cache.get('w2')
    expect(loads.calls.map((call) => call.key)).toEqual(['w1', 'w2', 'w1', 'w3', 'w2'])
  })
})
