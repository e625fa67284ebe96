import { errorResponses } from '@platform/service-kit'
import {
  AuditBatchSchema,
  EffectivePolicySchema,
  MembershipSchema,
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
  const { models, policies, ledger, audit } = app.tenancy
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
      const workspaceIds = [...new Set(records.map((record) => record.workspaceId))]
      const known = await Workspace.find({ _id: { $in: workspaceIds } }, { tenantId: 1 }).lean()
      const tenantOf = new Map(known.map((workspace) => [workspace._id, workspace.tenantId]))
      const misplaced = records.findIndex(
        (record) => tenantOf.get(record.workspaceId) !== record.tenantId,
      )
      if (misplaced !== -1) {
        const record = records[misplaced]
        throw new InvalidRequest(
          `records.${misplaced}: workspace ${record?.workspaceId} is not in tenant ${record?.tenantId}`,
        )
      }
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
      // An event shows in a workspace's log only if it names that workspace's own tenant.
      const workspaceIds = [
        ...new Set(
          events.flatMap((event) => (event.workspaceId === null ? [] : [event.workspaceId])),
        ),
      ]
      const known = await Workspace.find({ _id: { $in: workspaceIds } }, { tenantId: 1 }).lean()
      const tenantOf = new Map(known.map((workspace) => [workspace._id, workspace.tenantId]))
      const misplaced = events.findIndex(
        (event) =>
          event.workspaceId !== null &&
          tenantOf.has(event.workspaceId) &&
          tenantOf.get(event.workspaceId) !== event.tenantId,
      )
      if (misplaced !== -1)
        throw new InvalidRequest(
          `events.${misplaced}: workspace ${events[misplaced]?.workspaceId} is not in tenant ${events[misplaced]?.tenantId}`,
        )
      return audit.ingest(events)
    },
  )
}
