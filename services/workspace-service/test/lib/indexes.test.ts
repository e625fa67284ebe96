import { startOfMonth, startOfNextMonth } from '@platform/service-kit'
import type { UsageRecord } from '@platform/shared-types'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AuditDocument, MemberDocument } from '../../src/lib/models.js'
import { BUCKET_MS, type UsageGroupBy, type UsageQuery } from '../../src/lib/usage-ledger.js'
import { startTestStack, type TestStack } from '../helpers/stack.js'
import { exactCost, mcpCall, modelCall, seededRandom } from '../helpers/usage.js'

/**
 * The hot queries of the ledger, quota, audit and member paths must be answered from indexes:
 * with many tenants in one database a collection scan costs every request the whole collection.
 */

let stack: TestStack
beforeAll(async () => {
  stack = await startTestStack()
})
afterAll(() => stack?.close())

const TENANT = 'idx-tenant'
const workspaceIds = ['idx-ws-0', 'idx-ws-1', 'idx-ws-2', 'idx-ws-3']
const userIds = Array.from({ length: 12 }, (_, index) => `idx-user-${index}`)
const ZONE = 'Asia/Kolkata'
const LEDGER_ROWS_PER_WORKSPACE = 1_500
const MEMBER_WORKSPACES = 40
const MEMBERS_PER_WORKSPACE = 60
const AUDIT_PER_WORKSPACE = 600
const TENANT_AUDIT = 800

type Explain = Record<string, unknown>

/** The winning plan trees anywhere in an explain: find, aggregate with $cursor, or pushed to SBE. */
function winningPlans(explain: unknown): unknown[] {
  const plans: unknown[] = []
  const visit = (value: unknown) => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item)
      return
    }
    if (value === null || typeof value !== 'object') return
    for (const [key, child] of Object.entries(value)) {
      if (key === 'rejectedPlans') continue
      if (key === 'winningPlan' && child !== null && typeof child === 'object') {
        // SBE explains wrap the classic tree in `queryPlan` beside the slot-based plan.
        plans.push('queryPlan' in child ? child.queryPlan : child)
        continue
      }
      visit(child)
    }
  }
  visit(explain)
  return plans
}

/** Every stage name in a plan tree (inputStage, inputStages, and any other nesting). */
function stageNames(plan: unknown): string[] {
  const names: string[] = []
  const visit = (value: unknown) => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item)
      return
    }
    if (value === null || typeof value !== 'object') return
    for (const [key, child] of Object.entries(value)) {
      if (key === 'stage' && typeof child === 'string') names.push(child)
      else visit(child)
    }
  }
  visit(plan)
  return names
}

/** The largest `totalDocsExamined` an explain reports (0 when none is reported). */
function docsExamined(explain: unknown): number {
  let most = 0
  const visit = (value: unknown) => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item)
      return
    }
    if (value === null || typeof value !== 'object') return
    for (const [key, child] of Object.entries(value)) {
      if (key === 'rejectedPlans' || key === 'allPlansExecution') continue
      if (key === 'totalDocsExamined' && typeof child === 'number') most = Math.max(most, child)
      else visit(child)
    }
  }
  visit(explain)
  return most
}

/** Asserts index use and no collection scan anywhere in the winning plans. */
function expectIndexed(explain: Explain, what: string, maxDocsExamined?: number) {
  const plans = winningPlans(explain)
  const stages = plans.flatMap(stageNames)
  const shown = JSON.stringify(plans)
  expect(plans.length, `${what}: no winning plan in ${JSON.stringify(explain)}`).toBeGreaterThan(0)
  expect(stages, `${what}: ${shown}`).not.toContain('COLLSCAN')
  expect(stages, `${what}: ${shown}`).toContain('IXSCAN')
  if (maxDocsExamined !== undefined)
    expect(docsExamined(explain), `${what}: documents examined`).toBeLessThanOrEqual(
      maxDocsExamined,
    )
}

const aligned = (date: Date, round: 'up' | 'down') =>
  new Date((round === 'up' ? Math.ceil : Math.floor)(date.getTime() / BUCKET_MS) * BUCKET_MS)

describe('query plans', () => {
  const ledgerRows = workspaceIds.length * LEDGER_ROWS_PER_WORKSPACE
  let rollupsPerWorkspace = 0
  let auditRow: AuditDocument
  let tenantAuditRow: AuditDocument

  beforeAll(async () => {
    const { ledger, models } = stack.app.tenancy
    const random = seededRandom(42)
    const start = Date.parse('2026-11-01T00:00:00Z')
    for (const workspaceId of workspaceIds) {
      const records: UsageRecord[] = Array.from({ length: LEDGER_ROWS_PER_WORKSPACE }, () => {
        const scope = { tenantId: TENANT, workspaceId, userId: random.pick(userIds) }
        const fields = {
          at: new Date(start + random.int(28 * 24 * 3600_000)),
          inputTokens: random.int(10_000),
          outputTokens: random.int(2_000),
          costUsd: exactCost(random.int(1_000)),
        }
        return random.next() < 0.8
          ? modelCall(scope, { ...fields, model: random.pick(['gpt-4o', 'gpt-4o-mini']) })
          : mcpCall(scope, fields)
      })
      for (let offset = 0; offset < records.length; offset += 1_000)
        await ledger.append(records.slice(offset, offset + 1_000))
    }
    rollupsPerWorkspace = await models.Rollup.countDocuments({ workspaceId: workspaceIds[0] })

    const addedAt = new Date('2026-10-01T00:00:00Z')
    const members: MemberDocument[] = []
    for (let workspace = 0; workspace < MEMBER_WORKSPACES; workspace += 1)
      for (let user = 0; user < MEMBERS_PER_WORKSPACE; user += 1)
        members.push({
          workspaceId: `idx-ws-${workspace}`,
          tenantId: TENANT,
          userId: `idx-user-${user}`,
          email: `idx-user-${user}@example.com`,
          name: `User ${user}`,
          role: user === 0 ? 'owner' : 'member',
          addedAt,
          addedBy: 'idx-user-0',
          lastUsedAt: user % 3 === 0 ? null : new Date(addedAt.getTime() + workspace * 60_000),
        })
    await models.Member.insertMany(members, { lean: true })
    await models.Workspace.collection.insertMany(
      Array.from({ length: MEMBER_WORKSPACES }, (_, workspace) => ({
        _id: `idx-ws-${workspace}` as never,
        tenantId: TENANT,
        name: `Workspace ${workspace}`,
        policy: {},
        policyVersion: 1,
        ownerCount: 1,
        createdBy: 'idx-user-0',
        createdAt: addedAt,
        updatedAt: addedAt,
        deletedAt: workspace % 10 === 9 ? addedAt : null,
        deletedBy: null,
        purgeAt: null,
      })),
    )

    const events: AuditDocument[] = []
    const event = (index: number, workspaceId: string | null): AuditDocument => {
      const at = new Date(start + index * 37_000)
      return {
        _id: `idx-event-${workspaceId ?? 'tenant'}-${index}`,
        at,
        action: 'workspace.policy.updated',
        actor: { type: 'user', id: 'idx-user-0' },
        target: { type: 'workspace', id: workspaceId },
        tenantId: TENANT,
        workspaceId,
        ip: null,
        userAgent: null,
        before: null,
        after: null,
        receivedAt: at,
        expiresAt: new Date(at.getTime() + 365 * 24 * 3600_000),
      }
    }
    for (const workspaceId of workspaceIds)
      for (let index = 0; index < AUDIT_PER_WORKSPACE; index += 1)
        events.push(event(index, workspaceId))
    for (let index = 0; index < TENANT_AUDIT; index += 1) events.push(event(index, null))
    await models.Audit.insertMany(events, { lean: true })
    auditRow = events[AUDIT_PER_WORKSPACE / 2] as AuditDocument
    tenantAuditRow = events.at(-TENANT_AUDIT / 2) as AuditDocument
  }, 180_000)

  const query = (groupBy: UsageGroupBy, userId?: string): UsageQuery => ({
    workspaceId: 'idx-ws-1',
    from: new Date('2026-11-03T10:07:13Z'),
    to: new Date('2026-11-20T13:52:01Z'),
    groupBy,
    timeZone: ZONE,
    userId,
  })

  it('has enough rows that a collection scan would read several workspaces', async () => {
    const { models } = stack.app.tenancy
    expect(await models.Ledger.estimatedDocumentCount()).toBeGreaterThanOrEqual(ledgerRows)
    expect(rollupsPerWorkspace).toBeGreaterThan(1_000)
    expect(await models.Member.estimatedDocumentCount()).toBeGreaterThanOrEqual(2_400)
    expect(await models.Audit.estimatedDocumentCount()).toBeGreaterThanOrEqual(3_200)
  })

  describe('the usage ledger', () => {
    it.each([
      ['a workspace', undefined],
      ['one member', 'idx-user-3'],
    ])('reads the edge rows of %s from an index', async (_name, userId) => {
      const { ledger } = stack.app.tenancy
      const usage = query('day', userId)
      for (const [from, to] of [
        [usage.from, aligned(usage.from, 'up')],
        [aligned(usage.to, 'down'), usage.to],
        [usage.from, usage.to],
      ] as const) {
        const explain = (await ledger
          .ledgerQuery(usage, from, to)
          .explain('executionStats')) as unknown as Explain
        expectIndexed(
          explain,
          `ledger ${from.toISOString()}..${to.toISOString()}`,
          LEDGER_ROWS_PER_WORKSPACE,
        )
      }
    })

    it.each([
      ['day', undefined],
      ['day', 'idx-user-3'],
      ['model', undefined],
      ['model', 'idx-user-3'],
      ['member', undefined],
      ['member', 'idx-user-3'],
    ] as const)('aggregates rollups by %s (member %s) from an index', async (groupBy, userId) => {
      const { ledger, models } = stack.app.tenancy
      const usage = query(groupBy, userId)
      const explain = (await models.Rollup.aggregate(
        ledger.rollupPipeline(usage, aligned(usage.from, 'up'), aligned(usage.to, 'down')),
      ).explain('executionStats')) as Explain
      expectIndexed(
        explain,
        `rollups by ${groupBy} for ${userId ?? 'everyone'}`,
        rollupsPerWorkspace,
      )
    })

    it.each([
      ['the workspace', undefined],
      ['the member', 'idx-user-5'],
    ])("reads the quota's month for %s from indexes", async (_name, userId) => {
      const { ledger, models } = stack.app.tenancy
      const now = new Date('2026-11-21T18:14:39.123Z')
      // What quota.forMember asks: this month by day, from rollups and the ledger at the edges.
      const month: UsageQuery = {
        workspaceId: 'idx-ws-2',
        from: startOfMonth(now, ZONE),
        to: startOfNextMonth(now, ZONE),
        groupBy: 'day',
        timeZone: ZONE,
        userId,
      }
      const from = aligned(month.from, 'up')
      const to = aligned(month.to, 'down')
      expectIndexed(
        (await models.Rollup.aggregate(ledger.rollupPipeline(month, from, to)).explain(
          'executionStats',
        )) as Explain,
        'quota rollups',
        rollupsPerWorkspace,
      )
      for (const [edgeFrom, edgeTo] of [
        [month.from, from],
        [to, month.to],
      ] as const)
        expectIndexed(
          (await ledger
            .ledgerQuery(month, edgeFrom, edgeTo)
            .explain('executionStats')) as unknown as Explain,
          'quota ledger edge',
          LEDGER_ROWS_PER_WORKSPACE,
        )
    })
  })

  describe('the audit log', () => {
    it('pages a workspace log from an index, first page and after a cursor', async () => {
      const { audit } = stack.app.tenancy
      const scope = { workspaceId: auditRow.workspaceId ?? '' }
      for (const position of [null, [auditRow.at.getTime(), auditRow._id] as [number, string]]) {
        const explain = (await audit
          .pageQuery(scope, position)
          .limit(51)
          .explain('executionStats')) as unknown as Explain
        expectIndexed(explain, `audit page after ${JSON.stringify(position)}`, 51)
      }
    })

    it("pages a tenant's own log from an index, first page and after a cursor", async () => {
      const { audit } = stack.app.tenancy
      for (const position of [
        null,
        [tenantAuditRow.at.getTime(), tenantAuditRow._id] as [number, string],
      ]) {
        const explain = (await audit
          .pageQuery({ tenantId: TENANT }, position)
          .limit(51)
          .explain('executionStats')) as unknown as Explain
        // Workspace events share the tenant id: the index skips none of them, but reads in order.
        expectIndexed(explain, `tenant audit page after ${JSON.stringify(position)}`)
      }
    })
  })

  describe('members and memberships', () => {
    it('lists a workspace’s members from an index, first page and after a cursor', async () => {
      const { Member } = stack.app.tenancy.models
      // The query of members.list.
      for (const filter of [
        { workspaceId: 'idx-ws-7' },
        { workspaceId: 'idx-ws-7', userId: { $gt: 'idx-user-30' } },
      ]) {
        const explain = (await Member.find(filter)
          .sort({ workspaceId: 1, userId: 1 })
          .limit(51)
          .explain('executionStats')) as unknown as Explain
        expectIndexed(explain, `member list ${JSON.stringify(filter)}`, 51)
      }
    })

    it('looks up one membership and all of a user’s memberships from indexes', async () => {
      const { Member, Workspace } = stack.app.tenancy.models
      // The queries of GET /internal/v1/memberships and /internal/v1/users/:userId/memberships.
      for (const filter of [
        { userId: 'idx-user-4', workspaceId: 'idx-ws-12' },
        { userId: 'idx-user-4' },
      ]) {
        const explain = (await Member.find(filter)
          .sort({ lastUsedAt: -1, addedAt: 1 })
          .limit(500)
          .explain('executionStats')) as unknown as Explain
        expectIndexed(explain, `memberships ${JSON.stringify(filter)}`, MEMBER_WORKSPACES)
      }
      const live = (await Workspace.find(
        { _id: { $in: ['idx-ws-1', 'idx-ws-9', 'idx-ws-12'] }, deletedAt: null },
        { name: 1 },
      ).explain('executionStats')) as unknown as Explain
      expectIndexed(live, 'live workspaces of memberships', 3)
    })

    it('checks a caller’s membership of a workspace from an index', async () => {
      const { Member } = stack.app.tenancy.models
      // The query of access.workspace, behind every workspace route.
      const explain = (await Member.findOne({
        workspaceId: 'idx-ws-3',
        userId: 'idx-user-8',
      }).explain('executionStats')) as unknown as Explain
      expectIndexed(explain, 'membership check', 1)
    })
  })

  describe('the export', () => {
    it('reads usage and audit in export order from indexes, whole and narrowed', async () => {
      const { Ledger, Audit } = stack.app.tenancy.models
      const range = {
        $gte: new Date('2026-11-05T00:00:00Z'),
        $lt: new Date('2026-11-06T00:00:00Z'),
      }
      for (const filter of [
        { workspaceId: 'idx-ws-0' },
        { workspaceId: 'idx-ws-0', startedAt: range },
      ])
        expectIndexed(
          (await Ledger.find(filter)
            .sort({ workspaceId: 1, startedAt: 1, _id: 1 })
            .explain('executionStats')) as unknown as Explain,
          `export usage ${JSON.stringify(filter)}`,
          LEDGER_ROWS_PER_WORKSPACE,
        )
      for (const filter of [{ workspaceId: 'idx-ws-0' }, { workspaceId: 'idx-ws-0', at: range }])
        expectIndexed(
          (await Audit.find(filter)
            .sort({ workspaceId: 1, at: -1, _id: -1 })
            .explain('executionStats')) as unknown as Explain,
          `export audit ${JSON.stringify(filter)}`,
          AUDIT_PER_WORKSPACE,
        )
    })
  })
})
