import { randomUUID } from 'node:crypto'
import type { AuditEvent, UsageRecord } from '@platform/shared-types'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { toLedgerDocument } from '../../src/lib/usage-ledger.js'
import {
  bearer,
  errorCode,
  startTestStack,
  type TestStack,
  type TestUser,
} from '../helpers/stack.js'
import {
  appendUsage,
  type CallScope,
  changePolicy,
  mcpCall,
  modelCall,
  serviceRedis,
} from '../helpers/usage.js'

interface ExportDocument {
  format: string
  exportedAt: string
  range: { from: string | null; to: string | null }
  tenant: { id: string; name: string; timeZone: string }
  workspace: { id: string; tenantId: string; name: string }
  policy: { version: number; document: unknown }
  members: Array<{ userId: string; email: string; role: string }>
  policyVersions: Array<{ version: number; changedBy: string; policy: unknown }>
  usage: Array<Record<string, unknown> & { callId: string; startedAt: string }>
  audit: Array<Record<string, unknown> & { id: string; action: string; at: string }>
}

/** The lock an export holds while it runs (lib/export.ts), as the service's Redis client names it. */
const exportLockKey = (workspaceId: string) => `wsp:export-lock:${workspaceId}`

let stack: TestStack
let redis: Redis
beforeAll(async () => {
  stack = await startTestStack()
  redis = await serviceRedis(stack)
})
afterAll(async () => {
  await redis?.quit()
  await stack?.close()
})

const exportUrl = (workspaceId: string, query: Record<string, string> = {}) => {
  const search = new URLSearchParams(query).toString()
  return `/v1/workspaces/${workspaceId}/export${search === '' ? '' : `?${search}`}`
}

async function exportedEvents(target: TestStack, workspaceId: string) {
  return target.app.tenancy.models.Audit.find({ workspaceId, action: 'workspace.exported' })
    .sort({ at: 1 })
    .lean()
}

/** Waits until the export lock is gone: it is released as the response stream closes. */
async function lockReleased(target: Redis, workspaceId: string) {
  const deadline = Date.now() + 10_000
  while ((await target.exists(exportLockKey(workspaceId))) === 1) {
    if (Date.now() > deadline) throw new Error(`export lock of ${workspaceId} never released`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function auditEvent(scope: CallScope, at: string, action: string): AuditEvent {
  return {
    eventId: randomUUID(),
    at,
    action,
    actor: { type: 'user', id: scope.userId },
    target: { type: 'workspace', id: scope.workspaceId },
    tenantId: scope.tenantId,
    workspaceId: scope.workspaceId,
    ip: '203.0.113.7',
    userAgent: 'export-test',
    before: null,
    after: null,
  }
}

describe('GET /v1/workspaces/:wid/export', () => {
  let owner: TestUser
  let admin: TestUser
  let member: TestUser
  let tenantId: string
  let workspaceId: string
  let scope: CallScope
  let calls: UsageRecord[]
  let pastEvents: AuditEvent[]

  beforeAll(async () => {
    owner = await stack.user('export-owner')
    admin = await stack.user('export-admin')
    member = await stack.user('export-member')
    ;({ tenantId, workspaceId } = await stack.tenant(owner, 'Export Co'))
    scope = { tenantId, workspaceId, userId: member.id }
    await stack.addMember(owner, workspaceId, admin, 'admin')
    await stack.addMember(owner, workspaceId, member, 'member')
    await changePolicy(stack, admin.token, workspaceId, (policy) => {
      policy.models.allow = ['oai:gpt-4o-mini']
      policy.systemPrompt = 'Export me.'
    })
    calls = [
      modelCall(scope, { at: new Date('2026-06-01T00:00:00Z') }),
      modelCall(scope, { at: new Date('2026-07-01T00:00:00Z'), inputTokens: 77 }),
      mcpCall(scope, { at: new Date('2026-07-15T12:34:56.789Z') }),
      modelCall({ ...scope, userId: admin.id }, { at: new Date('2026-08-01T00:00:00Z') }),
    ]
    await appendUsage(stack, calls)
    pastEvents = [
      auditEvent(scope, '2026-06-15T00:00:00Z', 'gateway.model.refused'),
      auditEvent(scope, '2026-07-01T00:00:00Z', 'gateway.model.refused'),
      auditEvent(scope, '2026-07-31T23:59:59.999Z', 'gateway.mcp.refused'),
      auditEvent(scope, '2026-08-01T00:00:00Z', 'gateway.mcp.refused'),
    ]
    const ingested = await stack.call(
      await stack.serviceToken('api-gateway'),
      'POST',
      '/internal/v1/audit',
      { events: pastEvents },
    )
    expect(ingested.statusCode, ingested.body).toBe(200)
  })

  it('hands an admin the whole workspace as one JSON document, as an attachment', async () => {
    const response = await stack.call(admin.token, 'GET', exportUrl(workspaceId))
    expect(response.statusCode, response.body).toBe(200)
    expect(response.headers['content-type']).toMatch(/^application\/json/)
    expect(response.headers['content-disposition']).toMatch(
      new RegExp(`^attachment; filename="workspace-${workspaceId}-\\d{4}-\\d{2}-\\d{2}\\.json"$`),
    )
    const document = JSON.parse(response.body) as ExportDocument

    const { Workspace, PolicyVersion, Ledger, Audit } = stack.app.tenancy.models
    const [workspace, versions, ledger, audit] = await Promise.all([
      Workspace.findById(workspaceId).lean(),
      PolicyVersion.find({ workspaceId }).sort({ version: -1 }).lean(),
      Ledger.find({ workspaceId }).lean(),
      Audit.find({ workspaceId }).lean(),
    ])
    expect(document.format).toBe('platform.workspace-export/v1')
    expect(document.range).toEqual({ from: null, to: null })
    expect(document.tenant).toEqual({ id: tenantId, name: 'Export Co', timeZone: 'UTC' })
    expect(document.workspace).toMatchObject({ id: workspaceId, tenantId, name: 'General' })
    expect(document.policy).toEqual({
      version: workspace?.policyVersion,
      document: JSON.parse(JSON.stringify(workspace?.policy)),
    })
    expect(document.policy.document).toMatchObject({ systemPrompt: 'Export me.' })
    expect(
      document.members
        .map(({ userId, role }) => ({ userId, role }))
        .sort((a, b) => a.userId.localeCompare(b.userId)),
    ).toEqual(
      [
        { userId: owner.id, role: 'owner' },
        { userId: admin.id, role: 'admin' },
        { userId: member.id, role: 'member' },
      ].sort((a, b) => a.userId.localeCompare(b.userId)),
    )
    expect(document.policyVersions.map((version) => version.version)).toEqual(
      versions.map((version) => version.version),
    )
    expect(versions.length).toBeGreaterThan(0)

    expect(document.usage.map((row) => row.callId).sort()).toEqual(
      ledger.map((row) => row._id).sort(),
    )
    expect(document.usage).toHaveLength(calls.length)
    const tool = calls[2]
    expect(document.usage.find((row) => row.callId === tool?.callId)).toMatchObject({
      kind: 'mcp',
      server: 'github',
      tool: 'search_code',
      userId: member.id,
      startedAt: '2026-07-15T12:34:56.789Z',
    })
    for (const row of document.usage) expect(row).not.toHaveProperty('_id')

    // The export's own event is written before the document is read, so it is in it.
    expect(document.audit.map((event) => event.id).sort()).toEqual(
      audit.map((event) => event._id).sort(),
    )
    expect(document.audit.map((event) => event.action)).toEqual(
      expect.arrayContaining([
        'workspace.member.added',
        'workspace.policy.updated',
        'workspace.exported',
        'gateway.model.refused',
      ]),
    )
    for (const event of document.audit) {
      expect(event).not.toHaveProperty('_id')
      expect(event).not.toHaveProperty('expiresAt')
    }
    await lockReleased(redis, workspaceId)
  })

  it('narrows usage and audit to [from, to)', async () => {
    const response = await stack.call(
      admin.token,
      'GET',
      exportUrl(workspaceId, { from: '2026-07-01T02:00:00+02:00', to: '2026-08-01T00:00:00Z' }),
    )
    expect(response.statusCode, response.body).toBe(200)
    const document = JSON.parse(response.body) as ExportDocument
    expect(document.range).toEqual({
      from: '2026-07-01T00:00:00.000Z',
      to: '2026-08-01T00:00:00.000Z',
    })
    expect(document.usage.map((row) => row.callId)).toEqual([calls[1]?.callId, calls[2]?.callId])
    expect(document.audit.map((event) => event.id).sort()).toEqual(
      [pastEvents[1]?.eventId, pastEvents[2]?.eventId].sort(),
    )
    // Members and policy are not time series: they come whole.
    expect(document.members).toHaveLength(3)
    await lockReleased(redis, workspaceId)
  })

  it('releases its lock when it finishes, so the next export runs, and records each export', async () => {
    const before = await exportedEvents(stack, workspaceId)
    const first = await stack.call(owner.token, 'GET', exportUrl(workspaceId))
    expect(first.statusCode, first.body).toBe(200)
    await lockReleased(redis, workspaceId)
    const second = await stack.call(owner.token, 'GET', exportUrl(workspaceId))
    expect(second.statusCode, second.body).toBe(200)
    expect(() => JSON.parse(second.body)).not.toThrow()
    await lockReleased(redis, workspaceId)

    const after = await exportedEvents(stack, workspaceId)
    expect(after).toHaveLength(before.length + 2)
    expect(after.at(-1)).toMatchObject({
      actor: { type: 'user', id: owner.id },
      target: { type: 'workspace', id: workspaceId },
      tenantId,
      after: { usageRows: calls.length, from: null, to: null },
    })
  })

  it('refuses a second export while one holds the lock, with 409 and nothing written', async () => {
    await redis.set(exportLockKey(workspaceId), 'held-by-another-export', 'EX', 60)
    try {
      const before = await exportedEvents(stack, workspaceId)
      const response = await stack.call(admin.token, 'GET', exportUrl(workspaceId))
      expect(response.statusCode, response.body).toBe(409)
      expect(response.json()).toMatchObject(errorCode(409, 'WSP_CONFLICT'))
      expect(await exportedEvents(stack, workspaceId)).toEqual(before)
      // The refused export leaves the running one's lock alone.
      expect(await redis.get(exportLockKey(workspaceId))).toBe('held-by-another-export')
    } finally {
      await redis.del(exportLockKey(workspaceId))
    }
    const afterwards = await stack.call(admin.token, 'GET', exportUrl(workspaceId))
    expect(afterwards.statusCode).toBe(200)
    await lockReleased(redis, workspaceId)
  })

  it('refuses a member with 403, takes no lock and writes no audit event', async () => {
    const before = await exportedEvents(stack, workspaceId)
    const response = await stack.call(member.token, 'GET', exportUrl(workspaceId))
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    expect(await redis.exists(exportLockKey(workspaceId))).toBe(0)
    expect(await exportedEvents(stack, workspaceId)).toEqual(before)
  })

  it('answers 404 to a user outside the tenant and 401 without a token', async () => {
    const stranger = await stack.user('export-stranger')
    const outside = await stack.call(stranger.token, 'GET', exportUrl(workspaceId))
    expect(outside.statusCode).toBe(404)
    expect(outside.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    const anonymous = await stack.call(null, 'GET', exportUrl(workspaceId))
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
  })

  it.each([
    ['from after to', { from: '2026-08-01T00:00:00Z', to: '2026-07-01T00:00:00Z' }],
    ['from equal to to', { from: '2026-08-01T00:00:00Z', to: '2026-08-01T00:00:00Z' }],
    ['a bare day', { from: '2026-07-01' }],
    ['a time without an offset', { to: '2026-07-01T00:00:00' }],
    ['an unknown parameter', { format: 'csv' }],
  ])('refuses %s with 400, taking no lock', async (_name, query) => {
    const before = await exportedEvents(stack, workspaceId)
    const response = await stack.call(admin.token, 'GET', exportUrl(workspaceId, query))
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(await redis.exists(exportLockKey(workspaceId))).toBe(0)
    expect(await exportedEvents(stack, workspaceId)).toEqual(before)
  })

  describe('of a workspace with 20,000 calls', () => {
    let bigWorkspace: string
    let callIds: string[]

    beforeAll(async () => {
      const created = await stack.call(owner.token, 'POST', '/v1/workspaces', { name: 'Busy' })
      expect(created.statusCode, created.body).toBe(201)
      bigWorkspace = created.json<{ id: string }>().id
      const busy = { tenantId, workspaceId: bigWorkspace, userId: owner.id }
      const start = Date.parse('2026-09-01T00:00:00Z')
      const recordedAt = new Date()
      const rows = Array.from({ length: 20_000 }, (_, index) =>
        toLedgerDocument(
          index % 5 === 0
            ? mcpCall(busy, { at: new Date(start + index * 61_000) })
            : modelCall(busy, { at: new Date(start + index * 61_000) }),
          recordedAt,
        ),
      )
      callIds = rows.map((row) => row._id)
      // Loaded around the append path: the export reads the ledger rows, not the rollups.
      await stack.app.tenancy.models.Ledger.insertMany(rows, { lean: true })
    })

    it('still streams one parseable document holding every call, oldest first', async () => {
      const response = await stack.call(owner.token, 'GET', exportUrl(bigWorkspace))
      expect(response.statusCode).toBe(200)
      const document = JSON.parse(response.body) as ExportDocument
      expect(document.usage).toHaveLength(20_000)
      expect(document.usage.map((row) => row.callId).sort()).toEqual([...callIds].sort())
      const starts = document.usage.map((row) => Date.parse(row.startedAt))
      expect(starts).toEqual([...starts].sort((a, b) => a - b))
      expect(document.workspace.id).toBe(bigWorkspace)
      await lockReleased(redis, bigWorkspace)
    })

    it('releases its lock when the client goes away mid-stream', async () => {
      const address = stack.app.server.address()
      if (address === null || typeof address === 'string') throw new Error('not on TCP')
      const abort = new AbortController()
      const response = await fetch(`http://127.0.0.1:${address.port}${exportUrl(bigWorkspace)}`, {
        headers: bearer(owner.token),
        signal: abort.signal,
      })
      expect(response.status).toBe(200)
      const reader = response.body?.getReader()
      const first = await reader?.read()
      expect(first?.done).toBe(false)
      expect(await redis.exists(exportLockKey(bigWorkspace))).toBe(1)
      abort.abort()
      await reader?.cancel().catch(() => undefined)
      await lockReleased(redis, bigWorkspace)

      const next = await stack.call(owner.token, 'GET', exportUrl(bigWorkspace))
      expect(next.statusCode).toBe(200)
      await lockReleased(redis, bigWorkspace)
    })
  })
})

describe('an export over EXPORT_MAX_ROWS', () => {
  let small: TestStack
  let smallRedis: Redis

  beforeAll(async () => {
    small = await startTestStack({ EXPORT_MAX_ROWS: '10' })
    smallRedis = await serviceRedis(small)
  })
  afterAll(async () => {
    await smallRedis?.quit()
    await small?.close()
  })

  it('is refused with 413 before anything is written; narrowed with from/to it runs', async () => {
    const owner = await small.user('limit-owner')
    const { tenantId, workspaceId } = await small.tenant(owner, 'Limit Co')
    const scope = { tenantId, workspaceId, userId: owner.id }
    const may = Array.from({ length: 11 }, (_, day) =>
      modelCall(scope, { at: new Date(Date.UTC(2026, 4, day + 1, 9)) }),
    )
    await appendUsage(small, may)

    const refused = await small.call(owner.token, 'GET', exportUrl(workspaceId))
    expect(refused.statusCode, refused.body).toBe(413)
    expect(refused.json()).toMatchObject({
      ...errorCode(413, 'WSP_EXPORT_TOO_LARGE'),
      message: expect.stringContaining('10'),
    })
    expect(await exportedEvents(small, workspaceId)).toEqual([])
    expect(await smallRedis.exists(exportLockKey(workspaceId))).toBe(0)

    const narrowed = await small.call(
      owner.token,
      'GET',
      exportUrl(workspaceId, { from: '2026-05-01T00:00:00Z', to: '2026-05-04T00:00:00Z' }),
    )
    expect(narrowed.statusCode, narrowed.body).toBe(200)
    const document = JSON.parse(narrowed.body) as ExportDocument
    expect(document.usage.map((row) => row.callId)).toEqual(
      may.slice(0, 3).map((call) => call.callId),
    )
    expect(await exportedEvents(small, workspaceId)).toHaveLength(1)
  })
})
