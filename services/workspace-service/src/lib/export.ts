import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { Conflict, DependencyUnavailable, ExportTooLarge } from '../errors.js'
import { memberView } from './members.js'
import type { TenantDocument, WorkspaceDocument, WorkspaceModels } from './models.js'

export interface ExportRange {
  from: Date | null
  to: Date | null
}

export interface ExportOptions {
  models: WorkspaceModels
  redis: Redis
  maxRows: number
}

/** Rows are serialized and handed over in chunks of about this many characters. */
const CHUNK_CHARS = 64 * 1024
const LOCK_SECONDS = 15 * 60
const RELEASE_IF_HELD = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

const timeRange = (range: ExportRange) => {
  const bounds: Record<string, Date> = {}
  if (range.from !== null) bounds.$gte = range.from
  if (range.to !== null) bounds.$lt = range.to
  return Object.keys(bounds).length === 0 ? undefined : bounds
}

/**
 * A workspace as one JSON document, written from database cursors as the client reads it, so
 * memory stays flat however large the ledger and the audit log are. One export per workspace runs
 * at a time; an export over the row limit is refused before anything is written.
 */
export function createExports(options: ExportOptions) {
  const { models, redis } = options
  const lockKey = (workspaceId: string) => `wsp:export-lock:${workspaceId}`

  function filters(workspace: WorkspaceDocument, range: ExportRange) {
    const started = timeRange(range)
    return {
      usage: { workspaceId: workspace._id, ...(started ? { startedAt: started } : {}) },
      audit: { workspaceId: workspace._id, ...(started ? { at: started } : {}) },
    }
  }

  /** Counts the rows, refuses an oversized export, and takes the workspace's export lock. */
  async function prepare(workspace: WorkspaceDocument, range: ExportRange) {
    const filter = filters(workspace, range)
    const [usageRows, auditRows] = await Promise.all([
      models.Ledger.countDocuments(filter.usage),
      models.Audit.countDocuments(filter.audit),
    ])
    if (usageRows + auditRows > options.maxRows)
      throw new ExportTooLarge(String(usageRows + auditRows), String(options.maxRows))
    const holder = randomUUID()
    let locked: string | null
    try {
      locked = await redis.set(lockKey(workspace._id), holder, 'EX', LOCK_SECONDS, 'NX')
    } catch (error) {
      throw new DependencyUnavailable('The export lock', { cause: error })
    }
    if (locked === null) throw new Conflict('An export of this workspace is already running')
    return { usageRows, auditRows, holder }
  }

  /** Releases the lock only if this export still holds it (it may have expired and moved on). */
  async function release(workspaceId: string, holder: string) {
    await redis.eval(RELEASE_IF_HELD, 1, lockKey(workspaceId), holder).catch(() => undefined)
  }

  async function* document(
    tenant: TenantDocument,
    workspace: WorkspaceDocument,
    range: ExportRange,
  ): AsyncGenerator<string> {
    const filter = filters(workspace, range)
    const head = {
      format: 'platform.workspace-export/v1',
      exportedAt: new Date().toISOString(),
      range: { from: range.from?.toISOString() ?? null, to: range.to?.toISOString() ?? null },
      tenant: { id: tenant._id, name: tenant.name, timeZone: tenant.timeZone },
      workspace: {
        id: workspace._id,
        tenantId: workspace.tenantId,
        name: workspace.name,
        createdAt: workspace.createdAt,
        createdBy: workspace.createdBy,
      },
      policy: { version: workspace.policyVersion, document: workspace.policy },
    }
    yield JSON.stringify(head).slice(0, -1)

    async function* array<T>(
      name: string,
      rows: AsyncIterable<T>,
      view: (row: T) => unknown,
    ): AsyncGenerator<string> {
      let chunk = `,${JSON.stringify(name)}:[`
      let first = true
      for await (const row of rows) {
        chunk += (first ? '' : ',') + JSON.stringify(view(row))
        first = false
        if (chunk.length >= CHUNK_CHARS) {
          yield chunk
          chunk = ''
        }
      }
      yield `${chunk}]`
    }

    yield* array(
      'members',
      models.Member.find({ workspaceId: workspace._id })
        .sort({ workspaceId: 1, userId: 1 })
        .lean()
        .cursor(),
      memberView,
    )
    yield* array(
      'policyVersions',
      models.PolicyVersion.find({ workspaceId: workspace._id })
        .sort({ workspaceId: 1, version: -1 })
        .lean()
        .cursor(),
      ({ version, policy, changedBy, changedAt, diff }) => ({
        version,
        changedBy,
        changedAt,
        diff,
        policy,
      }),
    )
    yield* array(
      'usage',
      models.Ledger.find(filter.usage)
        .sort({ workspaceId: 1, startedAt: 1, _id: 1 })
        .lean()
        .cursor({ batchSize: 2000 }),
      ({ _id, recordedAt, ...row }) => ({ callId: _id, ...row }),
    )
    yield* array(
      'audit',
      models.Audit.find(filter.audit)
        .sort({ workspaceId: 1, at: -1, _id: -1 })
        .lean()
        .cursor({ batchSize: 2000 }),
      ({ _id, receivedAt, expiresAt, ...row }) => ({ id: _id, ...row }),
    )
    yield '}'
  }

  return { prepare, release, document }
}

export type Exports = ReturnType<typeof createExports>
