import { errorResponses, userOf } from '@platform/service-kit'
import type { WorkspaceRole } from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { InvalidRequest } from '../errors.js'
import { actorOf } from '../lib/audit-log.js'
import { decodeCursor, encodeCursor, PageQuerySchema } from '../lib/cursor.js'
import type { WorkspaceDocument } from '../lib/models.js'
import { DisplayNameSchema, idParam, isoTime, pageSchema, WorkspaceViewSchema } from './schemas.js'

const WorkspaceDetailSchema = WorkspaceViewSchema.extend({
  createdAt: isoTime,
  policyVersion: z.number(),
})

const detailOf = (workspace: WorkspaceDocument, role: WorkspaceRole) => ({
  id: workspace._id,
  tenantId: workspace.tenantId,
  name: workspace.name,
  role,
  createdAt: workspace.createdAt.toISOString(),
  policyVersion: workspace.policyVersion,
})

/** Workspaces: list mine, create, read, rename, delete and restore (API.md §4). */
export const workspaceRoutes: FastifyPluginAsyncZod = async (app) => {
  const { access, workspaces, users, models } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.get(
    '/',
    {
      schema: {
        querystring: PageQuerySchema.extend({ tenantId: idParam.optional() }),
        response: { 200: pageSchema(WorkspaceViewSchema), ...errorResponses(400, 401) },
      },
    },
    async (request) => {
      const after = decodeCursor(request.query.cursor)
      const page = await workspaces.listMine(userOf(request).sub, {
        tenantId: request.query.tenantId,
        after: after === null ? null : after[1],
        limit: request.query.limit,
      })
      return {
        items: page.items,
        nextCursor: page.more && page.lastId !== null ? encodeCursor([0, page.lastId]) : null,
      }
    },
  )

  app.post(
    '/',
    {
      schema: {
        body: z.strictObject({ name: DisplayNameSchema }),
        response: {
          201: z.object({ id: z.string(), tenantId: z.string(), name: z.string() }),
          ...errorResponses(400, 401, 403, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const claims = userOf(request)
      // The tenant is the token's; a token without one means the one tenant the user runs.
      let tenantId = claims.tid
      if (tenantId === undefined) {
        const runs = await models.TenantMember.find({
          userId: claims.sub,
          role: { $in: ['owner', 'admin'] },
        })
          .limit(2)
          .lean()
        const only = runs.length === 1 ? runs[0] : undefined
        if (only === undefined)
          throw new InvalidRequest(
            'Say which tenant: switch to one of its workspaces, or POST /v1/tenants/:tid/workspaces',
          )
        tenantId = only.tenantId
      }
      const { tenant } = await access.tenant(claims.sub, tenantId, 'workspaces.create')
      const owner = await users.account(claims.sub)
      const workspace = await workspaces.create(tenant, request.body.name, owner, actorOf(request))
      return reply
        .code(201)
        .send({ id: workspace._id, tenantId: workspace.tenantId, name: workspace.name })
    },
  )

  app.get(
    '/:wid',
    {
      schema: {
        params: z.object({ wid: idParam }),
        response: { 200: WorkspaceDetailSchema, ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      const { workspace, member } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'workspace.read',
      )
      return detailOf(workspace, member.role)
    },
  )

  app.patch(
    '/:wid',
    {
      schema: {
        params: z.object({ wid: idParam }),
        body: z.strictObject({ name: DisplayNameSchema }),
        response: { 200: WorkspaceDetailSchema, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { workspace, member } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'workspace.update',
      )
      const renamed = await workspaces.rename(workspace, request.body.name, actorOf(request))
      return detailOf(renamed, member.role)
    },
  )

  app.delete(
    '/:wid',
    {
      schema: {
        params: z.object({ wid: idParam }),
        response: {
          200: z.object({ id: z.string(), deletedAt: isoTime, purgeAt: isoTime }),
          ...errorResponses(401, 403, 404),
        },
      },
    },
    async (request) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'workspace.delete',
      )
      const { deletedAt, purgeAt } = await workspaces.softDelete(workspace, actorOf(request))
      return {
        id: workspace._id,
        deletedAt: deletedAt.toISOString(),
        purgeAt: purgeAt.toISOString(),
      }
    },
  )

  app.post(
    '/:wid/restore',
    {
      schema: {
        params: z.object({ wid: idParam }),
        response: { 200: WorkspaceDetailSchema, ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      // Only an owner can restore, so the caller's role is owner.
      return detailOf(await workspaces.restore(request.params.wid, actorOf(request)), 'owner')
    },
  )
}
