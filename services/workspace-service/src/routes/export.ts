import { Readable } from 'node:stream'
import { errorResponses, userOf } from '@platform/service-kit'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { InvalidRequest } from '../errors.js'
import { actorOf } from '../lib/audit-log.js'
import { idParam } from './schemas.js'

/**
 * `GET /v1/workspaces/:wid/export`: the workspace as one JSON document, streamed (API.md §4).
 * `from`/`to` narrow the usage and audit rows to a period.
 */
export const exportRoutes: FastifyPluginAsyncZod = async (app) => {
  const { access, exports, audit } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.get(
    '/export',
    {
      schema: {
        params: z.object({ wid: idParam }),
        querystring: z.strictObject({
          from: z.iso.datetime({ offset: true }).optional(),
          to: z.iso.datetime({ offset: true }).optional(),
        }),
        response: {
          200: z.unknown().describe('the export document, streamed as it is read'),
          ...errorResponses(400, 401, 403, 404, 409, 413, 503),
        },
      },
    },
    async (request, reply) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'export',
      )
      const range = {
        from: request.query.from === undefined ? null : new Date(request.query.from),
        to: request.query.to === undefined ? null : new Date(request.query.to),
      }
      if (range.from !== null && range.to !== null && !(range.from < range.to))
        throw new InvalidRequest('from must be before to')
      const tenant = await access.tenantOf(workspace)
      const { holder, ...counts } = await exports.prepare(workspace, range)
      try {
        await app.mongo.transaction((session) =>
          audit.record(
            actorOf(request),
            {
              action: 'workspace.exported',
              target: { type: 'workspace', id: workspace._id },
              tenantId: workspace.tenantId,
              workspaceId: workspace._id,
              after: { ...counts, from: request.query.from ?? null, to: request.query.to ?? null },
            },
            session,
          ),
        )
      } catch (error) {
        await exports.release(workspace._id, holder)
        throw error
      }
      const body = Readable.from(exports.document(tenant, workspace, range), { objectMode: false })
      let released = false
      const release = () => {
        if (released) return
        released = true
        void exports.release(workspace._id, holder)
      }
      body.on('close', release)
      body.on('error', (error) => {
        request.log.error({ err: error }, 'export stream failed')
        release()
      })
      const stamp = new Date().toISOString().slice(0, 10)
      return reply
        .header('content-type', 'application/json; charset=utf-8')
        .header(
          'content-disposition',
          `attachment; filename="workspace-${workspace._id}-${stamp}.json"`,
        )
        .header('cache-control', 'no-store')
        .send(body)
    },
  )
}
