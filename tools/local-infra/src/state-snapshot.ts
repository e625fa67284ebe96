import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import mongoose from 'mongoose'
import { expect } from 'vitest'

/**
 * Everything a service has stored, in a form two snapshots can be compared in: what a request
 * wrote shows up as a changed count, a changed document hash or a changed Redis key. The hostile
 * suites take one before and after each attack.
 */
export interface StateSnapshot {
  /** Documents per collection, for every collection in the app's database. */
  counts: Record<string, number>
  /** `collection/id` → SHA-256 of the document's BSON, so edits show up, not only inserts. */
  documents: Record<string, string>
  /**
   * `collection/id` → the ids the document belongs to (its `ownerFields`), so a comparison can
   * be narrowed to one tenant's rows.
   */
  owners: Record<string, string[]>
  /** Redis keys under the app's prefix, with the prefix removed, sorted. */
  redisKeys: string[]
  /** Key (prefix removed) → SHA-256 of its DUMP, so a counter going from 1 to 2 is a change. */
  redisValues: Record<string, string>
  /** Key → when it expires (epoch ms), for keys with a TTL. */
  redisExpiresAt: Record<string, number>
  /** When the snapshot was finished (epoch ms). */
  takenAt: number
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('base64url')

// SCAN's MATCH is a glob; the prefix is matched literally.
const globEscape = (value: string) => value.replace(/[*?[\]\\]/g, '\\$&')

export interface SnapshotSource {
  /** The app's database (`app.mongo.db`). */
  db: mongoose.mongo.Db | undefined
  /** The app's Redis client, with its key prefix. */
  redis: Redis
  redisKeyPrefix: string
  /**
   * Fields left out of a collection's document hashes: values the service refreshes on its own
   * (a last-used time), which are not state a request decides to write.
   */
  volatileFields?: Record<string, readonly string[]>
  /** Fields whose string values say whom a document belongs to (see `narrowSnapshot`). */
  ownerFields?: readonly string[]
}

export async function snapshotState(source: SnapshotSource): Promise<StateSnapshot> {
  const { db } = source
  if (db === undefined) throw new Error('the app has no database connection')
  const ownerFields = source.ownerFields ?? ['_id']
  const counts: Record<string, number> = {}
  const documents: Record<string, string> = {}
  const owners: Record<string, string[]> = {}
  const collections = await db.listCollections({}, { nameOnly: true }).toArray()
  for (const { name } of collections) {
    if (name.startsWith('system.')) continue
    const all = await db.collection(name).find({}).toArray()
    counts[name] = all.length
    const volatile = source.volatileFields?.[name] ?? []
    for (const document of all) {
      const key = `${name}/${String(document._id)}`
      const stable = Object.fromEntries(
        Object.entries(document).filter(([field]) => !volatile.includes(field)),
      )
      documents[key] = sha256(mongoose.mongo.BSON.serialize(stable))
      owners[key] = ownerFields.flatMap((field) => {
        const value: unknown = document[field]
        return typeof value === 'string' ? [value] : []
      })
    }
  }

  // ioredis applies its keyPrefix to key arguments but not to SCAN's pattern, which therefore
  // carries the full prefix; the keys it answers carry it too.
  const { redis } = source
  const prefix = source.redisKeyPrefix
  const fullKeys = new Set<string>()
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${globEscape(prefix)}*`, 'COUNT', 1000)
    for (const key of batch) fullKeys.add(key)
    cursor = next
  } while (cursor !== '0')
  const redisKeys = [...fullKeys].map((key) => key.slice(prefix.length)).sort()
  const redisValues: Record<string, string> = {}
  const redisExpiresAt: Record<string, number> = {}
  // DUMP and PTTL go through the client, which adds the prefix back.
  const pipeline = redis.pipeline()
  for (const key of redisKeys) pipeline.dumpBuffer(key).pttl(key)
  const results = (await pipeline.exec()) ?? []
  const at = Date.now()
  redisKeys.forEach((key, index) => {
    const [dumpError, dumped] = results[index * 2] ?? [null, null]
    const [ttlError, ttl] = results[index * 2 + 1] ?? [null, -2]
    if (dumpError !== null || ttlError !== null) throw dumpError ?? ttlError
    redisValues[key] = dumped instanceof Buffer ? sha256(dumped) : '(gone)'
    if (typeof ttl === 'number' && ttl >= 0) redisExpiresAt[key] = at + ttl
  })
  return {
    counts,
    documents,
    owners,
    redisKeys,
    redisValues,
    redisExpiresAt,
    takenAt: Date.now(),
  }
}

/**
 * The part of a snapshot that belongs to the given ids: documents with one of them in an owner
 * field, and Redis keys that contain one.
 */
export function narrowSnapshot(snapshot: StateSnapshot, ids: readonly string[]): StateSnapshot {
  const wanted = new Set(ids)
  const keys = Object.keys(snapshot.documents).filter((key) =>
    (snapshot.owners[key] ?? []).some((id) => wanted.has(id)),
  )
  const counts: Record<string, number> = Object.fromEntries(
    Object.keys(snapshot.counts).map((name) => [name, 0]),
  )
  for (const key of keys) {
    const collection = key.slice(0, key.indexOf('/'))
    counts[collection] = (counts[collection] ?? 0) + 1
  }
  const pick = <T>(record: Record<string, T>, names: readonly string[]): Record<string, T> =>
    Object.fromEntries(
      names.flatMap((name) => {
        const value = record[name]
        return value === undefined ? [] : [[name, value] as const]
      }),
    )
  const redisKeys = snapshot.redisKeys.filter((key) => ids.some((id) => key.includes(id)))
  return {
    counts,
    documents: pick(snapshot.documents, keys),
    owners: pick(snapshot.owners, keys),
    redisKeys,
    redisValues: pick(snapshot.redisValues, redisKeys),
    redisExpiresAt: pick(snapshot.redisExpiresAt, redisKeys),
    takenAt: snapshot.takenAt,
  }
}

/** A key or document id matched exactly (string) or by pattern. */
export type Matcher = string | RegExp

export interface ExpectedChanges {
  /** Document count change per collection; every collection not named keeps its count. */
  counts?: Record<string, number>
  /** Existing documents (`collection/id`) whose content changes; each matcher matches one. */
  modified?: Matcher[]
  /** Documents (`collection/id`) that disappear; each matcher matches one. */
  removed?: Matcher[]
  /** Redis keys (prefix removed) that must appear; each matcher matches one. */
  redisAdded?: Matcher[]
  /** Redis keys that appear or whose value changes (a counter); each matcher matches one. */
  redisWritten?: Matcher[]
  /** Redis keys that disappear; each matcher matches one. */
  redisRemoved?: Matcher[]
}

/** What differs between two snapshots. */
export interface StateChanges {
  counts: Record<string, number>
  added: string[]
  modified: string[]
  removed: string[]
  redisAdded: string[]
  redisChanged: string[]
  redisRemoved: string[]
  /** Keys gone because their TTL ran out between the snapshots: time, not the request. */
  redisExpired: string[]
}

// PTTL is read a moment after DUMP, and Redis expires keys lazily or in its 100 ms cycle.
const EXPIRY_SLACK_MS = 250

export function diffState(before: StateSnapshot, after: StateSnapshot): StateChanges {
  const counts: Record<string, number> = {}
  for (const name of new Set([...Object.keys(before.counts), ...Object.keys(after.counts)])) {
    const delta = (after.counts[name] ?? 0) - (before.counts[name] ?? 0)
    if (delta !== 0) counts[name] = delta
  }
  const beforeKeys = new Set(before.redisKeys)
  const afterKeys = new Set(after.redisKeys)
  const gone = before.redisKeys.filter((key) => !afterKeys.has(key))
  const expired = (key: string) => {
    const expiresAt = before.redisExpiresAt[key]
    return expiresAt !== undefined && expiresAt <= after.takenAt + EXPIRY_SLACK_MS
  }
  return {
    counts,
    added: Object.keys(after.documents).filter((id) => before.documents[id] === undefined),
    modified: Object.keys(after.documents).filter(
      (id) => before.documents[id] !== undefined && before.documents[id] !== after.documents[id],
    ),
    removed: Object.keys(before.documents).filter((id) => after.documents[id] === undefined),
    redisAdded: after.redisKeys.filter((key) => !beforeKeys.has(key)),
    redisChanged: after.redisKeys.filter(
      (key) => beforeKeys.has(key) && before.redisValues[key] !== after.redisValues[key],
    ),
    redisRemoved: gone.filter((key) => !expired(key)),
    redisExpired: gone.filter(expired),
  }
}

const matches = (matcher: Matcher, value: string) =>
  typeof matcher === 'string' ? matcher === value : matcher.test(value)

/**
 * Problems of one kind of change: every actual change must be allowed by a matcher, and every
 * matcher must have happened, so an expected write that did not occur fails as well.
 */
function problemsOf(
  what: string,
  actual: readonly string[],
  required: readonly Matcher[],
  alsoAllowed: readonly Matcher[] = [],
): string[] {
  const problems: string[] = []
  for (const value of actual)
    if (![...required, ...alsoAllowed].some((matcher) => matches(matcher, value)))
      problems.push(`unexpected ${what}: ${value}`)
  for (const matcher of required)
    if (!actual.some((value) => matches(matcher, value)))
      problems.push(`expected ${what} did not happen: ${String(matcher)}`)
  return problems
}

const sortedEntries = (record: Record<string, number>) =>
  Object.entries(record).sort(([a], [b]) => a.localeCompare(b))

/** Asserts that the only differences between the snapshots are the expected ones. */
export function expectOnlyChanged(
  before: StateSnapshot,
  after: StateSnapshot,
  expected: ExpectedChanges,
  context = 'state changes',
): StateChanges {
  const changes = diffState(before, after)
  const expectedCounts = Object.fromEntries(
    Object.entries(expected.counts ?? {}).filter(([, delta]) => delta !== 0),
  )
  const redisAdded = expected.redisAdded ?? []
  const redisWritten = expected.redisWritten ?? []
  const problems = [
    ...(JSON.stringify(sortedEntries(changes.counts)) ===
    JSON.stringify(sortedEntries(expectedCounts))
      ? []
      : [
          `document counts changed by ${JSON.stringify(changes.counts)}, expected ${JSON.stringify(expectedCounts)}`,
        ]),
    ...problemsOf('document change', changes.modified, expected.modified ?? []),
    ...problemsOf('document removal', changes.removed, expected.removed ?? []),
    // A key written for the first time is "added"; a counter bumped again is "changed".
    ...problemsOf('new Redis key', changes.redisAdded, redisAdded, redisWritten),
    ...problemsOf(
      'Redis write',
      [...changes.redisAdded, ...changes.redisChanged],
      redisWritten,
      redisAdded,
    ),
    ...problemsOf('Redis key removal', changes.redisRemoved, expected.redisRemoved ?? []),
  ]
  expect(problems, `${context}: ${JSON.stringify(changes, null, 2)}`).toEqual([])
  return changes
}

/** Asserts that nothing stored changed between the snapshots. */
export function expectUnchanged(
  before: StateSnapshot,
  after: StateSnapshot,
  context?: string,
): void {
  expectOnlyChanged(before, after, {}, context)
}

/** Asserts that nothing stored under the given tenant, workspace or other ids changed. */
export function expectUnchangedWithin(
  before: StateSnapshot,
  after: StateSnapshot,
  ids: readonly string[],
  context?: string,
): void {
  expectOnlyChanged(narrowSnapshot(before, ids), narrowSnapshot(after, ids), {}, context)
}
