import { errorResponses, userOf } from '@platform/service-kit'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { PageQuerySchema } from '../lib/cursor.js'
import { AuditItemSchema, idParam, pageSchema } from './schemas.js'

/** A workspace's audit log, newest first (API.md §4). */
export const auditRoutes: FastifyPluginAsyncZod = async (app) => {
  const { access, audit } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.get(
    '/audit',
    {
      schema: {
        params: z.object({ wid: idParam }),
        querystring: PageQuerySchema,
        response: { 200: pageSchema(AuditItemSchema), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'audit.read',
      )
      const page = await audit.list(
        { workspaceId: workspace._id },
        request.query.limit,
        request.query.cursor,
      )
      return {
        items: page.items.map((item) => ({ ...item, at: item.at.toISOString() })),
        nextCursor: page.nextCursor,
      }
    },
  )
}
