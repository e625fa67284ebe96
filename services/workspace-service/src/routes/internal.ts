import { errorResponses } from '@platform/service-kit'
import {
  AuditBatchSchema,
  EffectivePolicySchema,
  MembershipSchema,
  QuotaStatusSchema,
  UsageAppendResponseSchema,
  UsageBatchSchema,
  UserMembershipsResponseSchema,
} from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { InvalidRequest, NotFound } from '../errors.js'
import { idParam } from './schemas.js'

/** Between services only, never routed by the gateway (API.md §7). */
export const internalRoutes: FastifyPluginAsyncZod = async (app) => {
  const { models, policies, ledger, audit, quota } = app.tenancy
  const { Member, Workspace } = models

  /** Memberships of live workspaces only: a deleted workspace scopes no token. */
  async function liveMemberships(filter: Record<string, unknown>) {
    const rows = await Member.find(filter).sort({ lastUsedAt: -1, addedAt: 1 }).limit(500).lean()
    const live = await Workspace.find(
      { _id: { $in: rows.map((row) => row.workspaceId) }, deletedAt: null },
      { name: 1 },
    ).lean()
    const names = new Map(live.map((workspace) => [workspace._id, workspace.name]))
    return rows.flatMap((row) => {
      const name = names.get(row.workspaceId)
      return name === undefined
        ? []
        : [{ workspaceId: row.workspaceId, tenantId: row.tenantId, name, role: row.role, row }]
    })
  }

  /**
   * Refuses a batch in which an item names a workspace outside the tenant it names (400 with the
   * item's index); items naming no workspace pass.
   */
  async function refuseMisplaced(
    field: string,
    items: ReadonlyArray<{ workspaceId: string | null; tenantId: string | null }>,
    options: { unknownWorkspace: 'refuse' | 'accept' },
  ) {
    const workspaceIds = [
      ...new Set(items.flatMap((item) => (item.workspaceId === null ? [] : [item.workspaceId]))),
    ]
    const known = await Workspace.find({ _id: { $in: workspaceIds } }, { tenantId: 1 }).lean()
    const tenantOf = new Map(known.map((workspace) => [workspace._id, workspace.tenantId]))
    const index = items.findIndex(({ workspaceId, tenantId }) => {
      if (workspaceId === null) return false
      const owner = tenantOf.get(workspaceId)
      if (owner === undefined) return options.unknownWorkspace === 'refuse'
      return owner !== tenantId
    })
    const item = items[index]
    if (item !== undefined)
      throw new InvalidRequest(
        `${field}.${index}: workspace ${item.workspaceId} is not in tenant ${item.tenantId}`,
      )
  }

  app.get(
    '/memberships',
    {
      onRequest: app.requireService('auth-service', 'api-gateway', 'code-runtime'),
      schema: {
        querystring: z.strictObject({ userId: idParam, workspaceId: idParam }),
        response: { 200: MembershipSchema, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const [membership] = await liveMemberships(request.query)
      if (membership === undefined) throw new NotFound('No such membership')
      const { row: _row, ...shown } = membership
      return shown
    },
  )

  app.get(
    '/users/:userId/memberships',
    {
      onRequest: app.requireService('auth-service', 'api-gateway', 'code-runtime'),
      schema: {
        params: z.object({ userId: idParam }),
        response: { 200: UserMembershipsResponseSchema, ...errorResponses(401, 403) },
      },
    },
    async (request) => {
      const memberships = await liveMemberships({ userId: request.params.userId })
      const lastUsed = memberships.find((membership) => membership.row.lastUsedAt !== null)
      return {
        items: memberships.map(({ row: _row, ...shown }) => shown),
        lastUsedWorkspaceId: lastUsed?.workspaceId ?? null,
      }
    },
  )

  app.get(
    '/workspaces/:wid/effective-policy',
    {
      onRequest: app.requireService('api-gateway', 'code-runtime'),
      schema: {
        params: z.object({ wid: idParam }),
        response: { 200: EffectivePolicySchema, ...errorResponses(401, 403, 404) },
      },
    },
    async (request) => {
      const policy = await policies.effective(request.params.wid)
      if (policy === null) throw new NotFound(`Workspace ${request.params.wid} not found`)
      return policy
    },
  )

  app.get(
    '/workspaces/:wid/quota',
    {
      onRequest: app.requireService('api-gateway', 'code-runtime'),
      schema: {
        params: z.object({ wid: idParam }),
        querystring: z.strictObject({ userId: idParam }),
        response: { 200: QuotaStatusSchema, ...errorResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const policy = await policies.effective(request.params.wid)
      if (policy === null) throw new NotFound(`Workspace ${request.params.wid} not found`)
      return quota.forMember(policy, request.query.userId)
    },
  )

  app.post(
    '/usage',
    {
      onRequest: app.requireService('api-gateway', 'code-runtime'),
      bodyLimit: 2 * 1024 * 1024,
      schema: {
        body: UsageBatchSchema,
        response: { 200: UsageAppendResponseSchema, ...errorResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { records } = request.body
      // A record must name a workspace of the tenant it names: usage never lands across tenants.
      await refuseMisplaced('records', records, { unknownWorkspace: 'refuse' })
      return ledger.append(records)
    },
  )

  app.post(
    '/audit',
    {
      onRequest: app.requireService('auth-service', 'api-gateway', 'code-runtime'),
      bodyLimit: 4 * 1024 * 1024,
      schema: {
        body: AuditBatchSchema,
        response: {
          200: z.object({ stored: z.number(), duplicates: z.number() }),
          ...errorResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const { events } = request.body
      // An event shows in a workspace's log only if it names that workspace's own tenant; a
      // purged workspace's late events are kept.
      await refuseMisplaced('events', events, { unknownWorkspace: 'accept' })
      return audit.ingest(events)
    },
  )
}
