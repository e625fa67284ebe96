import { pipeline } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { libreChatHeaders, upstreamFailure } from '../lib/forwarding.js'
import { finalFrameSpy, type WatchedStream } from '../lib/stream-watch.js'

/**
 * LibreChat's resumable chat stream (`GET /api/agents/chat/stream/:streamId`, librechat-api.md
 * §2.2): passed through frame by frame with backpressure, watched for its final frame so a
 * generation whose reader left early is aborted after the grace period, by its stream id.
 */
export async function libreChatStreamRoutes(app: FastifyInstance) {
  const { libreChat } = app
  const { settings } = libreChat

  const watch = libreChat.streamWatch

  app.get(
    '/api/agents/chat/stream/:streamId',
    {
      // A HEAD would subscribe, end at once without the final frame, and so abandon the stream.
      exposeHeadRoute: false,
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
        request,
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
          const subscription = watch.subscribe(stream).catch((error: unknown) => {
            outgoing.log.warn({ err: error }, 'stream watch unavailable')
            return undefined
          })
          const ended = () => {
            void subscription.then((open) => open?.ended(sawFinal))
          }
          // The client may have left while LibreChat's headers were on their way.
          if (outgoing.raw.destroyed) ended()
          else outgoing.raw.once('close', ended)
          const spy = finalFrameSpy(() => {
            sawFinal = true
          })
          // Fastify would write the head with the first frame, which may be a while off for a
          // second reader of a running generation: the head goes now, as LibreChat sent it.
          reply.hijack()
          for (const [name, value] of Object.entries(reply.getHeaders()))
            if (value !== undefined) reply.raw.setHeader(name, value)
          reply.raw.writeHead(response.statusCode)
          reply.raw.flushHeaders()
          // pipeline, not pipe: a client that leaves destroys the spy, and with it the
          // upstream body, so its connection to LibreChat is released.
          pipeline(response.stream, spy, reply.raw, () => undefined)
        },
      })
    },
  )
}
