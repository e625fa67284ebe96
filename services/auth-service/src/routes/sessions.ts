import { clientOf, errorResponses, userOf } from '@platform/service-kit'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { SessionNotFound } from '../errors.js'
import { withSessionStore } from '../lib/redis-guard.js'

const SessionSchema = z.object({
  id: z.string(),
  createdAt: z.iso.datetime({ offset: true }),
  lastUsedAt: z.iso.datetime({ offset: true }),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  current: z.boolean(),
})

/** A user's own live sessions: list them, end one (API.md §3). */
export const sessionRoutes: FastifyPluginAsyncZod = async (app) => {
  const { sessions, audit } = app.identity
  app.addHook('preHandler', app.requireUser)

  app.get(
    '/',
    {
      schema: {
        response: { 200: z.object({ items: z.array(SessionSchema) }), ...errorResponses(401, 503) },
      },
    },
    async (request) => {
      const claims = userOf(request)
      const live = await sessions.listLive(claims.sub)
      return {
        items: live.map((session) => ({
          id: session._id,
          createdAt: session.createdAt.toISOString(),
          lastUsedAt: session.lastUsedAt.toISOString(),
          ip: session.ip,
          userAgent: session.userAgent,
          current: session._id === claims.sid,
        })),
      }
    },
  )

  app.delete(
    '/:id',
    {
      schema: {
        params: z.object({ id: z.string().min(1).max(64) }),
        response: {
          204: z.null(),
          ...errorResponses(401, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const claims = userOf(request)
      const session = await sessions.find(request.params.id)
      // Someone else's session is as unknown as one that never existed.
      if (session === null || session.userId !== claims.sub)
        throw new SessionNotFound(request.params.id)
      if (await withSessionStore(() => sessions.revoke(session._id)))
        await audit.record({
          action: 'auth.session.revoked',
          actor: { type: 'user', id: claims.sub },
          target: { type: 'session', id: session._id },
          tenantId: session.scope?.tenantId ?? null,
          workspaceId: session.scope?.workspaceId ?? null,
          after: { reason: 'user-request' },
          ...clientOf(request),
        })
      return reply.code(204).send(null)
    },
  )
}
