import { errorResponses, userOf } from '@platform/service-kit'
import { WorkspacePolicySchema } from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { PreconditionFailed } from '../errors.js'
import { actorOf } from '../lib/audit-log.js'
import { decodeCursor, PageQuerySchema, pageOf } from '../lib/cursor.js'
import { idParam, isoTime, pageSchema } from './schemas.js'

const WorkspaceParams = z.object({ wid: idParam })

/** The policy's version as an HTTP entity tag. */
const etagOf = (version: number) => `"${version}"`

/** `If-Match: "7"` → 7; absent → null; anything else is refused rather than ignored. */
function expectedVersion(header: string | undefined): number | null {
  if (header === undefined) return null
  const match = /^\s*(?:W\/)?"(\d{1,9})"\s*$/.exec(header)
  if (match?.[1] === undefined)
    throw new PreconditionFailed('If-Match must be the policy ETag, e.g. "7"')
  return Number(match[1])
}

const PolicyVersionSchema = z.object({
  version: z.number(),
  changedBy: z.string(),
  changedAt: isoTime,
  diff: z.array(z.object({ path: z.string(), before: z.unknown(), after: z.unknown() })),
})

/**
 * A workspace's policy (API.md §4). The body is the policy document itself, so what `GET`
 * answers can be edited and `PUT` back; the version travels as the `ETag`, and `If-Match`
 * makes a write fail (412) if someone else changed the policy meanwhile.
 */
export const policyRoutes: FastifyPluginAsyncZod = async (app) => {
  const { access, policies } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.get(
    '/policy',
    {
      schema: {
        params: WorkspaceParams,
        response: { 200: WorkspacePolicySchema, ...errorResponses(401, 404) },
      },
    },
    async (request, reply) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'policy.read',
      )
      reply.header('etag', etagOf(workspace.policyVersion))
      return workspace.policy
    },
  )

  app.put(
    '/policy',
    {
      schema: {
        params: WorkspaceParams,
        body: WorkspacePolicySchema,
        response: { 200: WorkspacePolicySchema, ...errorResponses(400, 401, 403, 404, 412) },
      },
    },
    async (request, reply) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'policy.write',
      )
      const expected = expectedVersion(request.headers['if-match'])
      const written = await policies.replace(workspace, request.body, actorOf(request), expected)
      reply.header('etag', etagOf(written.policyVersion))
      return written.policy
    },
  )

  app.get(
    '/policy/versions',
    {
      schema: {
        params: WorkspaceParams,
        querystring: PageQuerySchema,
        response: { 200: pageSchema(PolicyVersionSchema), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'policy.history',
      )
      const after = decodeCursor(request.query.cursor)
      const rows = await policies.versions(
        workspace._id,
        after === null ? null : Number(after[0]),
        request.query.limit,
      )
      const page = pageOf(rows, request.query.limit, (row) => [row.version, ''])
      return {
        items: page.items.map((row) => ({
          version: row.version,
          changedBy: row.changedBy,
          changedAt: row.changedAt.toISOString(),
          diff: row.diff,
        })),
        nextCursor: page.nextCursor,
      }
    },
  )
}
