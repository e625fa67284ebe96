import { pipeline } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { libreChatHeaders, upstreamFailure } from '../lib/forwarding.js'
import { createStreamWatch, finalFrameSpy, type WatchedStream } from '../lib/stream-watch.js'

export interface LibreChatStreamOptions {
  graceMs: number
}

const StatusSchema = z.object({ active: z.boolean() }).loose()

/**
 * LibreChat's resumable chat stream (`GET /api/agents/chat/stream/:streamId`, librechat-api.md
 * §2.2): passed through frame by frame with backpressure, watched for its final frame so a
 * generation whose reader left early is aborted after the grace period, by its stream id.
 */
export async function libreChatStreamRoutes(app: FastifyInstance, options: LibreChatStreamOptions) {
  const { libreChat } = app
  const { settings } = libreChat

  const watch = createStreamWatch({
    redis: app.redis,
    graceMs: options.graceMs,
    log: app.log,
    async abort(stream) {
      const id = encodeURIComponent(stream.streamId)
      const status = await libreChat.requestAs(stream.libreChatUserId, {
        method: 'GET',
        path: `/api/agents/chat/status/${id}`,
      })
      if (status.status === 200) {
        const parsed = StatusSchema.safeParse(JSON.parse(status.text))
        if (parsed.success && !parsed.data.active) return
      }
      // Always with the id: without one LibreChat aborts the user's latest job, which may be
      // another tab's.
      const aborted = await libreChat.requestAs(stream.libreChatUserId, {
        method: 'POST',
        path: '/api/agents/chat/abort',
        body: { streamId: stream.streamId, conversationId: stream.streamId },
      })
      app.log.info(
        { streamId: stream.streamId, status: aborted.status },
        'aborted an abandoned generation',
      )
    },
  })
  app.addHook('onClose', async () => watch.close())

  app.get(
    '/api/agents/chat/stream/:streamId',
    {
      preHandler: async (request) => {
        await libreChat.bridgeMember(request)
      },
      schema: { params: z.object({ streamId: z.string().min(1).max(200) }) },
    },
    async (request: FastifyRequest<{ Params: { streamId: string } }>, reply: FastifyReply) => {
      const bridged = request.bridged
      if (bridged === null) throw new Error('stream route without a bridged member')
      // Keyed by the stream: a reconnect (a reloaded page) takes no second slot.
      await app.limits.holdStreamSlot(
        bridged,
        reply,
        `${bridged.identity.userId}:stream:${request.params.streamId}`,
      )
      const stream: WatchedStream = {
        tenantId: bridged.membership.tenantId,
        streamId: request.params.streamId,
        libreChatUserId: bridged.identity.libreChatUserId,
      }
      return reply.from(request.url, {
        rewriteRequestHeaders: (incoming, headers) =>
          libreChatHeaders(incoming, headers, {
            token: bridged.token,
            userAgent: settings.userAgent,
          }),
        onError: (failed, { error }) => {
          failed.log.warn({ err: error }, 'LibreChat stream request failed')
          failed.send(upstreamFailure('chat service', error))
        },
        onResponse: (_incoming, outgoing, response) => {
          // reply-from has copied the upstream's status and headers onto the reply by now.
          const isStream = String(outgoing.getHeader('content-type') ?? '').startsWith(
            'text/event-stream',
          )
          if (response.statusCode !== 200 || !isStream) {
            outgoing.send(response.stream)
            return
          }
          let sawFinal = false
          const subscription = watch.subscribe(stream)
          outgoing.raw.once('close', () => {
            void subscription.then(
              (open) => open.ended(sawFinal),
              (error: unknown) => outgoing.log.warn({ err: error }, 'stream watch unavailable'),
            )
          })
          const spy = finalFrameSpy(() => {
            sawFinal = true
          })
          // pipeline, not pipe: a client that leaves destroys the spy, and with it the
          // upstream body, so its connection to LibreChat is released.
          pipeline(response.stream, spy, () => undefined)
          outgoing.send(spy)
        },
      })
    },
  )
}
