import { randomUUID } from 'node:crypto'
import type { UsageRecord } from '@platform/shared-types'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { errorCode, startTestStack, type TestStack, type TestUser } from '../helpers/stack.js'
import {
  appendUsage,
  type CallScope,
  callKeyOf,
  exactCost,
  expectedUsage,
  mcpCall,
  modelCall,
  patchTenant,
  rollupsFromLedger,
  seededRandom,
  storedRollups,
} from '../helpers/usage.js'

let stack: TestStack
let gatewayToken: string
beforeAll(async () => {
  stack = await startTestStack()
  gatewayToken = await stack.serviceToken('api-gateway')
})
afterAll(() => stack?.close())

const appendRaw = (body: unknown, token: string = gatewayToken) =>
  stack.call(token, 'POST', '/internal/v1/usage', body)

/** Everything the ledger and its rollups hold for a workspace. */
async function ledgerState(workspaceId: string) {
  const { Ledger, Rollup } = stack.app.tenancy.models
  const [rows, rollups] = await Promise.all([
    Ledger.find({ workspaceId }).sort({ _id: 1 }).lean(),
    Rollup.find({ workspaceId }).sort({ dimension: 1, key: 1, bucket: 1 }).lean(),
  ])
  return { rows, rollups }
}

describe('POST /internal/v1/usage', () => {
  let owner: TestUser

  beforeAll(async () => {
    owner = await stack.user('ledger-owner')
  })

  /** A workspace of its own per test, so its ledger and rollups hold only that test's calls. */
  async function freshScope(): Promise<CallScope> {
    const { tenantId, workspaceId } = await stack.tenant(owner, 'Ledger Co')
    return { tenantId, workspaceId, userId: owner.id }
  }

  it('appends a model call and an MCP call, each with its rollup rows', async () => {
    const scope = await freshScope()
    const at = new Date('2026-11-03T10:07:13.250Z')
    const model = modelCall(scope, { at, inputTokens: 1000, outputTokens: 250, costUsd: 0.5 })
    const tool = mcpCall(scope, { at, inputTokens: 10, outputTokens: 20, costUsd: 0 })

    const response = await appendRaw({ records: [model, tool] })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json()).toEqual({ appended: 2, duplicates: 0 })

    const { rows, rollups } = await ledgerState(scope.workspaceId)
    const byId = new Map(rows.map((row) => [row._id, row]))
    expect(byId.get(model.callId)).toMatchObject({
      kind: 'model',
      tenantId: scope.tenantId,
      workspaceId: scope.workspaceId,
      userId: owner.id,
      provider: 'oai',
      model: 'gpt-4o-mini',
      inputTokens: 1000,
      outputTokens: 250,
      costUsd: 0.5,
      startedAt: at,
      endedAt: new Date(model.endedAt),
      status: 'completed',
    })
    expect(byId.get(tool.callId)).toMatchObject({
      kind: 'mcp',
      server: 'github',
      tool: 'search_code',
      inputTokens: 10,
      outputTokens: 20,
    })
    expect(byId.get(tool.callId)).not.toHaveProperty('provider')
    expect(byId.get(model.callId)?.recordedAt).toBeInstanceOf(Date)

    const bucket = new Date('2026-11-03T10:00:00.000Z')
    const figures = (dimension: string, key: string) =>
      rollups
        .filter((row) => row.dimension === dimension && row.key === key)
        .map(({ bucket, inputTokens, outputTokens, costUsd, calls }) => ({
          bucket,
          inputTokens,
          outputTokens,
          costUsd,
          calls,
        }))
    expect(figures('total', '')).toEqual([
      { bucket, inputTokens: 1010, outputTokens: 270, costUsd: 0.5, calls: 2 },
    ])
    expect(figures('model', 'oai:gpt-4o-mini')).toEqual([
      { bucket, inputTokens: 1000, outputTokens: 250, costUsd: 0.5, calls: 1 },
    ])
    expect(figures('tool', 'github/search_code')).toEqual([
      { bucket, inputTokens: 10, outputTokens: 20, costUsd: 0, calls: 1 },
    ])
    expect(figures('member', owner.id)).toEqual([
      { bucket, inputTokens: 1010, outputTokens: 270, costUsd: 0.5, calls: 2 },
    ])
    expect(figures('member-model', `${owner.id}\u0000oai:gpt-4o-mini`)).toHaveLength(1)
    expect(figures('member-tool', `${owner.id}\u0000github/search_code`)).toHaveLength(1)
    expect(rollups).toHaveLength(6)
  })

  it('answers a retried batch as all duplicates and leaves the ledger and rollups as they were', async () => {
    const scope = await freshScope()
    const records = [modelCall(scope), modelCall(scope), mcpCall(scope)]
    const first = await appendRaw({ records })
    expect(first.json()).toEqual({ appended: 3, duplicates: 0 })
    const before = await ledgerState(scope.workspaceId)

    const retried = await appendRaw({ records })
    expect(retried.statusCode, retried.body).toBe(200)
    expect(retried.json()).toEqual({ appended: 0, duplicates: 3 })
    expect(await ledgerState(scope.workspaceId)).toEqual(before)
    expect(before.rows).toHaveLength(3)
  })

  it('appends only the new calls of a batch that repeats some known ones', async () => {
    const scope = await freshScope()
    const known = modelCall(scope, { inputTokens: 7, outputTokens: 3 })
    await appendRaw({ records: [known] })
    const fresh = modelCall(scope, { inputTokens: 11, outputTokens: 5 })

    const response = await appendRaw({ records: [known, fresh] })
    expect(response.json()).toEqual({ appended: 1, duplicates: 1 })
    const { rows, rollups } = await ledgerState(scope.workspaceId)
    expect(rows.map((row) => row._id).sort()).toEqual([known.callId, fresh.callId].sort())
    expect(rollups.find((row) => row.dimension === 'total')).toMatchObject({
      inputTokens: 18,
      outputTokens: 8,
      calls: 2,
    })
  })

  it('counts a call id repeated inside one batch once', async () => {
    const scope = await freshScope()
    const repeated = modelCall(scope, { inputTokens: 100, outputTokens: 10 })
    const other = mcpCall(scope, { inputTokens: 1, outputTokens: 2 })

    const response = await appendRaw({ records: [repeated, other, repeated, repeated] })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json()).toEqual({ appended: 2, duplicates: 2 })
    const { rows, rollups } = await ledgerState(scope.workspaceId)
    expect(rows).toHaveLength(2)
    expect(rollups.find((row) => row.dimension === 'total')).toMatchObject({
      inputTokens: 101,
      outputTokens: 12,
      calls: 2,
    })
  })

  it('stores every call exactly once when overlapping batches race, with rollups equal to the ledger', async () => {
    const scope = await freshScope()
    const random = seededRandom(7)
    const start = Date.parse('2026-11-04T08:00:00Z')
    const record = () => {
      const fields = {
        at: new Date(start + random.int(3 * 3600_000)),
        inputTokens: random.int(5_000),
        outputTokens: random.int(2_000),
        costUsd: exactCost(random.int(4_096)),
      }
      return random.next() < 0.7 ? modelCall(scope, fields) : mcpCall(scope, fields)
    }
    const shared = Array.from({ length: 50 }, record)
    const batches = Array.from({ length: 5 }, () => [
      ...shared,
      ...Array.from({ length: 50 }, record),
    ])

    const responses = await Promise.all(batches.map((records) => appendRaw({ records })))
    for (const response of responses) {
      expect(response.statusCode, response.body).toBe(200)
      const { appended, duplicates } = response.json<{ appended: number; duplicates: number }>()
      expect(appended + duplicates).toBe(100)
    }
    const appended = responses.reduce(
      (sum, response) => sum + response.json<{ appended: number }>().appended,
      0,
    )
    expect(appended).toBe(300)

    const expectedIds = [...new Set(batches.flat().map((call) => call.callId))].sort()
    expect(expectedIds).toHaveLength(300)
    const { rows, rollups } = await ledgerState(scope.workspaceId)
    expect(rows.map((row) => row._id)).toEqual(expectedIds)
    const truth = rollupsFromLedger(rows)
    expect(storedRollups(rollups)).toEqual(truth)
    expect(truth.size).toBeGreaterThan(20)
  })

  it('stores every call exactly once when replicas append overlapping batches at the same time', async () => {
    // Appends inside one process may queue; separate replicas on the same database truly race.
    const replicas = await Promise.all(
      Array.from({ length: 4 }, () =>
        buildApp(stack.config, { dbName: stack.dbName, redisKeyPrefix: stack.redisKeyPrefix }),
      ),
    )
    try {
      const scope = await freshScope()
      const random = seededRandom(11)
      const start = Date.parse('2026-11-04T08:00:00Z')
      // Two buckets only: every batch increments the same rollup rows.
      const record = () => {
        const fields = {
          at: new Date(start + random.int(30 * 60_000)),
          inputTokens: random.int(5_000),
          outputTokens: random.int(2_000),
          costUsd: exactCost(random.int(4_096)),
        }
        return random.next() < 0.7 ? modelCall(scope, fields) : mcpCall(scope, fields)
      }
      const shared = Array.from({ length: 100 }, record)
      const batches = Array.from({ length: 5 }, () => [
        ...shared,
        ...Array.from({ length: 100 }, record),
      ])
      const apps = [stack.app, ...replicas]
      const responses = await Promise.all(
        batches.map((records, index) =>
          apps[index % apps.length]?.inject({
            method: 'POST',
            url: '/internal/v1/usage',
            headers: { authorization: `Bearer ${gatewayToken}` },
            payload: { records },
          }),
        ),
      )
      let appended = 0
      for (const response of responses) {
        expect(response?.statusCode, response?.body).toBe(200)
        const counts = response?.json<{ appended: number; duplicates: number }>()
        expect((counts?.appended ?? 0) + (counts?.duplicates ?? 0)).toBe(200)
        appended += counts?.appended ?? 0
      }
      expect(appended).toBe(600)

      const expectedIds = [...new Set(batches.flat().map((call) => call.callId))].sort()
      const { rows, rollups } = await ledgerState(scope.workspaceId)
      expect(rows.map((row) => row._id)).toEqual(expectedIds)
      expect(storedRollups(rollups)).toEqual(rollupsFromLedger(rows))
    } finally {
      await Promise.all(replicas.map((replica) => replica.close()))
    }
  })

  describe('refuses a batch with nothing written when', () => {
    const refusals: Array<[string, (scope: CallScope) => unknown, string | null]> = [
      [
        'a model call names no provider or model',
        (scope) => {
          const { provider: _p, model: _m, ...rest } = modelCall(scope)
          return rest
        },
        'records.1.provider',
      ],
      [
        'an MCP call names a provider',
        (scope) => ({ ...mcpCall(scope), provider: 'oai' }),
        'records.1.provider',
      ],
      [
        'a model call names an MCP tool',
        (scope) => ({ ...modelCall(scope), server: 'github', tool: 'search_code' }),
        'records.1.server',
      ],
      [
        'token counts are negative',
        (scope) => modelCall(scope, { inputTokens: -1 }),
        'records.1.inputTokens',
      ],
      [
        'token counts are fractional',
        (scope) => modelCall(scope, { outputTokens: 1.5 }),
        'records.1.outputTokens',
      ],
      ['a cost is negative', (scope) => modelCall(scope, { costUsd: -0.01 }), 'records.1.costUsd'],
      [
        'a call ends before it starts',
        (scope) =>
          modelCall(scope, {
            startedAt: '2026-11-05T10:00:00.000Z',
            endedAt: '2026-11-05T09:59:59.999Z',
          }),
        'records.1.endedAt',
      ],
      [
        'a time has no offset',
        (scope) => modelCall(scope, { startedAt: '2026-11-05T10:00:00' }),
        'records.1.startedAt',
      ],
      [
        'a record carries an unknown field',
        (scope) => ({ ...modelCall(scope), promptText: 'secret' }),
        null,
      ],
      ['a record has an unknown status', (scope) => ({ ...modelCall(scope), status: 'ok' }), null],
    ]

    it.each(refusals)('%s', async (_name, bad, path) => {
      const scope = await freshScope()
      const good = modelCall(scope)
      const response = await appendRaw({ records: [good, bad(scope)] })
      expect(response.statusCode, response.body).toBe(400)
      const body = response.json<{ code: string; details?: Array<{ path: string }> }>()
      expect(body).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
      if (path !== null) expect(body.details?.map((detail) => detail.path)).toContain(path)
      expect(await ledgerState(scope.workspaceId)).toEqual({ rows: [], rollups: [] })
    })

    it('the batch has an unknown top-level field', async () => {
      const scope = await freshScope()
      const response = await appendRaw({ records: [modelCall(scope)], replay: true })
      expect(response.statusCode).toBe(400)
      expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
      expect(await ledgerState(scope.workspaceId)).toEqual({ rows: [], rollups: [] })
    })

    it('the batch is empty', async () => {
      const response = await appendRaw({ records: [] })
      expect(response.statusCode).toBe(400)
      expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    })

    it('the batch holds more than 1000 records', async () => {
      const scope = await freshScope()
      const records = Array.from({ length: 1001 }, () => modelCall(scope))
      const response = await appendRaw({ records })
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
      expect(await ledgerState(scope.workspaceId)).toEqual({ rows: [], rollups: [] })

      // 1000 is the limit, not past it.
      const atLimit = await appendRaw({ records: records.slice(0, 1000) })
      expect(atLimit.json()).toEqual({ appended: 1000, duplicates: 0 })
    })

    it('a record charges a workspace of another tenant than the one it names', async () => {
      const mine = await freshScope()
      const theirs = await freshScope()
      const misplaced = modelCall({ ...theirs, tenantId: mine.tenantId })
      const response = await appendRaw({ records: [modelCall(mine), misplaced] })
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json()).toMatchObject({
        ...errorCode(400, 'WSP_VALIDATION'),
        message: expect.stringContaining('records.1'),
      })
      expect(await ledgerState(mine.workspaceId)).toEqual({ rows: [], rollups: [] })
      expect(await ledgerState(theirs.workspaceId)).toEqual({ rows: [], rollups: [] })
    })

    it('a record names a workspace that does not exist', async () => {
      const scope = await freshScope()
      const unknown = modelCall({ ...scope, workspaceId: `ws-missing-${randomUUID()}` })
      const response = await appendRaw({ records: [modelCall(scope), unknown] })
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
      expect(await ledgerState(scope.workspaceId)).toEqual({ rows: [], rollups: [] })
      expect(await ledgerState(unknown.workspaceId)).toEqual({ rows: [], rollups: [] })
    })

    it('the caller presents a user token (401) or no token (401)', async () => {
      const scope = await freshScope()
      const records = [modelCall(scope)]
      const asUser = await appendRaw({ records }, owner.token)
      expect(asUser.statusCode).toBe(401)
      expect(asUser.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
      const anonymous = await stack.call(null, 'POST', '/internal/v1/usage', { records })
      expect(anonymous.statusCode).toBe(401)
      expect(anonymous.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
      expect(await ledgerState(scope.workspaceId)).toEqual({ rows: [], rollups: [] })
    })

    it('the caller is a service that does not report usage (403)', async () => {
      const scope = await freshScope()
      const token = await stack.serviceToken('auth-service')
      const response = await appendRaw({ records: [modelCall(scope)] }, token)
      expect(response.statusCode).toBe(403)
      expect(response.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
      expect(await ledgerState(scope.workspaceId)).toEqual({ rows: [], rollups: [] })
    })
  })
})

interface UsageBody {
  from: string
  to: string
  timeZone: string
  totals: { inputTokens: number; outputTokens: number; costUsd: number; calls: number }
  items: Array<{
    key: string
    kind?: 'model' | 'mcp'
    inputTokens: number
    outputTokens: number
    costUsd: number
    calls: number
  }>
}

type GroupBy = 'day' | 'model' | 'member'

/** The tenant's zone, Asia/Kolkata, is UTC+05:30 all year: a local day starts at 18:30Z. */
const KOLKATA_MS = 5.5 * 3600_000
const kolkataDay = (instant: string) =>
  new Date(Date.parse(instant) + KOLKATA_MS).toISOString().slice(0, 10)

/** The report a usage query must give, worked out record by record from what was appended. */
function bruteForce(
  records: UsageRecord[],
  from: Date,
  to: Date,
  groupBy: GroupBy,
  userId?: string,
) {
  return expectedUsage(records, (record) => {
    const at = Date.parse(record.startedAt)
    if (at < from.getTime() || at >= to.getTime()) return null
    if (userId !== undefined && record.userId !== userId) return null
    if (groupBy === 'day') return { key: kolkataDay(record.startedAt) }
    if (groupBy === 'member') return { key: record.userId }
    return { key: callKeyOf(record), kind: record.kind }
  })
}

describe('GET /v1/workspaces/:wid/usage', () => {
  let owner: TestUser
  let admin: TestUser
  let member: TestUser
  let otherMember: TestUser
  let tenantId: string
  let workspaceId: string
  const records: UsageRecord[] = []

  /** Ranges whose ends fall mid-bucket, on bucket edges, inside one bucket, and across days. */
  const ranges: Array<[string, string]> = [
    ['2026-03-09T10:07:13Z', '2026-03-11T13:52:01Z'],
    ['2026-03-09T15:37:13.500+05:30', '2026-03-10T23:59:59+05:30'],
    ['2026-03-10T10:01:00Z', '2026-03-10T10:14:00Z'],
    ['2026-03-10T10:00:00Z', '2026-03-10T10:15:00Z'],
    ['2026-03-10T10:07:00Z', '2026-03-10T10:22:00Z'],
    ['2026-03-09T00:00:00Z', '2026-03-12T00:00:00Z'],
    ['2026-03-08T18:30:00Z', '2026-03-11T18:30:00Z'],
  ]

  beforeAll(async () => {
    owner = await stack.user('usage-owner')
    admin = await stack.user('usage-admin')
    member = await stack.user('usage-member')
    otherMember = await stack.user('usage-other')
    ;({ tenantId, workspaceId } = await stack.tenant(owner, 'Usage Co'))
    await patchTenant(stack, owner.token, tenantId, { timeZone: 'Asia/Kolkata' })
    await stack.addMember(owner, workspaceId, admin, 'admin')
    await stack.addMember(owner, workspaceId, member, 'member')
    await stack.addMember(owner, workspaceId, otherMember, 'member')

    const random = seededRandom(20260309)
    const users = [owner, admin, member, otherMember]
    const models = [
      ['oai', 'gpt-4o-mini'],
      ['oai', 'gpt-4o'],
      ['claude', 'claude-sonnet-4'],
      ['ollama', 'llama3:8b'],
    ] as const
    const tools = [
      ['github', 'search_code'],
      ['workspace-tools', 'run'],
    ] as const
    const start = Date.parse('2026-03-09T00:00:00Z')
    const call = (at: Date) => {
      const scope = { tenantId, workspaceId, userId: random.pick(users).id }
      const fields = {
        at,
        inputTokens: random.int(20_000),
        outputTokens: random.int(4_000),
        costUsd: exactCost(random.int(10_000)),
      }
      if (random.next() < 0.75) {
        const [provider, model] = random.pick(models)
        return modelCall(scope, { ...fields, provider, model })
      }
      const [server, tool] = random.pick(tools)
      return mcpCall(scope, { ...fields, server, tool })
    }
    for (let index = 0; index < 400; index += 1)
      records.push(call(new Date(start + random.int(3 * 24 * 3600_000))))
    // Calls exactly on the ends of the ranges and on bucket edges: `from` counts, `to` does not.
    for (const [from, to] of ranges) records.push(call(new Date(from)), call(new Date(to)))
    for (const edge of ['2026-03-10T10:15:00Z', '2026-03-10T10:14:59.999Z', '2026-03-09T18:30:00Z'])
      records.push(call(new Date(edge)))
    await appendUsage(stack, records)
  })

  const usageUrl = (query: Record<string, string>) =>
    `/v1/workspaces/${workspaceId}/usage?${new URLSearchParams(query)}`

  async function usage(token: string, query: Record<string, string>) {
    const response = await stack.call(token, 'GET', usageUrl(query))
    expect(response.statusCode, response.body).toBe(200)
    return response.json<UsageBody>()
  }

  it('gives an admin exactly what the appended calls add up to, by day, model and member', async () => {
    for (const [from, to] of ranges) {
      for (const groupBy of ['day', 'model', 'member'] as const) {
        const body = await usage(admin.token, { from, to, groupBy })
        const expected = bruteForce(records, new Date(from), new Date(to), groupBy)
        expect({ totals: body.totals, items: body.items }, `${groupBy} ${from}..${to}`).toEqual(
          expected,
        )
        expect(body).toMatchObject({
          from: new Date(from).toISOString(),
          to: new Date(to).toISOString(),
          timeZone: 'Asia/Kolkata',
        })
      }
    }
    // The widest range really covers calls of every user, model and tool.
    const wide = bruteForce(
      records,
      new Date('2026-03-09T10:07:13Z'),
      new Date('2026-03-11T13:52:01Z'),
      'model',
    )
    expect(wide.totals.calls).toBeGreaterThan(200)
    expect(wide.items.map((item) => item.key)).toEqual([
      'claude:claude-sonnet-4',
      'github/search_code',
      'oai:gpt-4o',
      'oai:gpt-4o-mini',
      'ollama:llama3:8b',
      'workspace-tools/run',
    ])
  })

  it('labels model items provider:model with kind model and tool items server/tool with kind mcp', async () => {
    const body = await usage(owner.token, {
      from: '2026-03-09T00:00:00Z',
      to: '2026-03-12T00:00:00Z',
      groupBy: 'model',
    })
    const kinds = Object.fromEntries(body.items.map((item) => [item.key, item.kind]))
    expect(kinds).toEqual({
      'claude:claude-sonnet-4': 'model',
      'github/search_code': 'mcp',
      'oai:gpt-4o': 'model',
      'oai:gpt-4o-mini': 'model',
      'ollama:llama3:8b': 'model',
      'workspace-tools/run': 'mcp',
    })
    // Day and member items carry no kind.
    const byDay = await usage(owner.token, { from: '2026-03-10', to: '2026-03-10' })
    for (const item of byDay.items) expect(item).not.toHaveProperty('kind')
  })

  it('shows a member only its own calls whatever it groups by; an admin sees everyone', async () => {
    for (const [from, to] of ranges.slice(0, 3)) {
      for (const groupBy of ['day', 'model', 'member'] as const) {
        const body = await usage(member.token, { from, to, groupBy })
        const expected = bruteForce(records, new Date(from), new Date(to), groupBy, member.id)
        expect({ totals: body.totals, items: body.items }, `${groupBy} ${from}..${to}`).toEqual(
          expected,
        )
      }
    }
    const range = { from: '2026-03-09T00:00:00Z', to: '2026-03-12T00:00:00Z', groupBy: 'member' }
    const own = await usage(member.token, range)
    expect(own.items.map((item) => item.key)).toEqual([member.id])
    const everyone = await usage(admin.token, range)
    expect(everyone.items.map((item) => item.key).sort()).toEqual(
      [owner.id, admin.id, member.id, otherMember.id].sort(),
    )
    expect(own.totals.calls).toBeLessThan(everyone.totals.calls)
  })

  it('reads from and to given as days as whole days in the tenant zone, to inclusive', async () => {
    const body = await usage(admin.token, { from: '2026-03-10', to: '2026-03-11', groupBy: 'day' })
    const from = new Date('2026-03-09T18:30:00.000Z')
    const to = new Date('2026-03-11T18:30:00.000Z')
    expect(body.from).toBe(from.toISOString())
    expect(body.to).toBe(to.toISOString())
    expect({ totals: body.totals, items: body.items }).toEqual(bruteForce(records, from, to, 'day'))
    expect(body.items.map((item) => item.key)).toEqual(['2026-03-10', '2026-03-11'])

    const oneDay = await usage(admin.token, { from: '2026-03-10', to: '2026-03-10' })
    expect(oneDay.items.map((item) => item.key)).toEqual(['2026-03-10'])
  })

  it('files a call at 19:00Z under the next day in a +05:30 tenant, from rollups and from the ledger', async () => {
    const response = await stack.call(owner.token, 'POST', '/v1/workspaces', {
      name: 'Night shift',
    })
    expect(response.statusCode, response.body).toBe(201)
    const night = response.json<{ id: string }>().id
    const scope = { tenantId, workspaceId: night, userId: owner.id }
    await appendUsage(stack, [
      modelCall(scope, { at: new Date('2026-03-20T18:29:59.999Z'), inputTokens: 1 }),
      modelCall(scope, { at: new Date('2026-03-20T18:30:00.000Z'), inputTokens: 10 }),
      modelCall(scope, { at: new Date('2026-03-20T19:00:00.000Z'), inputTokens: 100 }),
    ])
    const expected = [
      { key: '2026-03-20', inputTokens: 1, calls: 1 },
      { key: '2026-03-21', inputTokens: 110, calls: 2 },
    ]
    // Whole buckets (read from rollups) and mid-bucket ends (read from the ledger).
    for (const [from, to] of [
      ['2026-03-20T12:00:00Z', '2026-03-21T00:00:00Z'],
      ['2026-03-20T18:29:59.500Z', '2026-03-20T19:00:00.001Z'],
    ] as const) {
      const read = await stack.call(
        owner.token,
        'GET',
        `/v1/workspaces/${night}/usage?from=${from}&to=${to}&groupBy=day`,
      )
      expect(read.statusCode, read.body).toBe(200)
      const body = read.json<UsageBody>()
      expect(body.items).toMatchObject(expected)
      expect(body.items).toHaveLength(2)
    }
  })

  it.each([
    ['from after to', { from: '2026-03-11T00:00:00Z', to: '2026-03-10T00:00:00Z' }],
    ['from equal to to', { from: '2026-03-10T00:00:00Z', to: '2026-03-10T00:00:00Z' }],
    ['a day after the day it ends', { from: '2026-03-11', to: '2026-03-10' }],
    ['a range of 401 days', { from: '2025-01-01', to: '2026-02-05' }],
    [
      'a range a second over 400 days',
      { from: '2025-01-01T00:00:00Z', to: '2026-02-05T00:00:01Z' },
    ],
    ['a word for a date', { from: 'yesterday' }],
    ['a day that does not exist', { from: '2026-02-30' }],
    ['a time without an offset', { from: '2026-03-10T10:00:00' }],
    ['a time with a space', { to: '2026-03-10 10:00:00Z' }],
    ['epoch milliseconds', { from: '1773100800000' }],
    ['an unknown grouping', { groupBy: 'week' }],
    ['an unknown parameter', { userId: 'someone' }],
  ])('refuses %s with 400', async (_name, query) => {
    const response = await stack.call(admin.token, 'GET', usageUrl(query))
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })

  it('answers the last days of year 9999 with an empty report, not a server error', async () => {
    // In a +05:30 zone the last local day ends at 9999-12-31T18:30Z, still a four-digit year.
    for (const groupBy of ['day', 'model', 'member']) {
      const body = await usage(admin.token, { from: '9999-12-30', to: '9999-12-31', groupBy })
      expect(body).toMatchObject({
        from: '9999-12-29T18:30:00.000Z',
        to: '9999-12-31T18:30:00.000Z',
        totals: { inputTokens: 0, outputTokens: 0, costUsd: 0, calls: 0 },
        items: [],
      })
    }
  })

  it('refuses a range that reaches outside the years 0000 to 9999 with 400, not a server error', async () => {
    const utcOwner = await stack.user('usage-utc')
    const { workspaceId: utcWorkspace } = await stack.tenant(utcOwner, 'UTC Co')
    for (const [caller, wid, query] of [
      // Ends at 10000-01-01T00:00Z in UTC.
      [utcOwner, utcWorkspace, { from: '9999-12-31', to: '9999-12-31' }],
      // Starts in year -1 in a zone east of UTC.
      [owner, workspaceId, { from: '0000-01-01', to: '0000-01-01' }],
      [owner, workspaceId, { from: '0000-01-01T00:00:00+05:00', to: '0000-01-02T00:00:00Z' }],
    ] as const) {
      const response = await stack.call(
        caller.token,
        'GET',
        `/v1/workspaces/${wid}/usage?${new URLSearchParams(query)}`,
      )
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    }
  })

  it('accepts a range of exactly 400 days', async () => {
    // 2025-01-01 to 2026-02-04 inclusive is 400 local days.
    const body = await usage(admin.token, { from: '2025-01-01', to: '2026-02-04' })
    expect(Date.parse(body.to) - Date.parse(body.from)).toBe(400 * 24 * 3600_000)
  })

  it('answers 404 to a user outside the tenant and 401 without a token', async () => {
    const stranger = await stack.user('usage-stranger')
    const outside = await stack.call(stranger.token, 'GET', usageUrl({}))
    expect(outside.statusCode).toBe(404)
    expect(outside.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    const anonymous = await stack.call(null, 'GET', usageUrl({}))
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.json()).toMatchObject(errorCode(401, 'WSP_UNAUTHENTICATED'))
  })
})
