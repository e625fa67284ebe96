import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { libreChatHeaders, upstreamFailure } from '../lib/forwarding.js'
import { relayStream } from '../lib/stream-relay.js'
import { finalFrameDetector, type WatchedStream } from '../lib/stream-watch.js'

/**
 * LibreChat's resumable chat stream (`GET /api/agents/chat/stream/:streamId`, librechat-api.md
 * §2.2): relayed chunk by chunk with backpressure, watched for its final frame so a generation
 * whose reader left early is aborted after the grace period, by its stream id.
 */
export async function libreChatStreamRoutes(app: FastifyInstance) {
  const { libreChat, limits } = app
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
      const stream: WatchedStream = {
        tenantId: bridged.membership.tenantId,
        streamId: request.params.streamId,
        libreChatUserId: bridged.identity.libreChatUserId,
      }
      // Keyed by the stream: a reconnect (a reloaded page) takes no second slot. LibreChat is
      // asked while the slot is taken, and nothing of its answer is relayed before it is; in a
      // workspace just refused a slot the slot comes first, so clients retrying at the limit do
      // not reach LibreChat.
      const { workspaceId } = bridged.membership
      const headers = libreChatHeaders(request, request.headers, {
        token: bridged.token,
        userAgent: settings.userAgent,
      })
      const slot = limits.holdStreamSlot(
        bridged,
        request,
        reply,
        `${bridged.identity.userId}:stream:${request.params.streamId}`,
      )
      if (limits.streamSlotRefusedLately(workspaceId)) await slot
      relayStream({
        admission: slot,
        dispatcher: libreChat.pool,
        path: request.url,
        headers,
        reply,
        failure: (error) => upstreamFailure('chat service', error),
        onHead: (statusCode, headers) => {
          const isStream = String(headers['content-type'] ?? '').startsWith('text/event-stream')
          if (statusCode !== 200 || !isStream) return undefined
          let sawFinal = false
          const subscription = watch.subscribe(stream).catch((error: unknown) => {
            reply.log.warn({ err: error }, 'stream watch unavailable')
            return undefined
          })
          const ended = () => {
            void subscription.then((open) => open?.ended(sawFinal))
          }
          if (reply.raw.destroyed) ended()
          else reply.raw.once('close', ended)
          return finalFrameDetector(() => {
            sawFinal = true
          })
        },
      })
      return reply
    },
  )
}
