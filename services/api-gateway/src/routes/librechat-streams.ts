import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { ClientGone } from '../errors.js'
import { libreChatHeaders, upstreamFailure } from '../lib/forwarding.js'
import { relayStream } from '../lib/stream-relay.js'
import { finalFrameDetector, type OpenWatch, type WatchedStream } from '../lib/stream-watch.js'

/** How long a stream whose head came without a chunk waits before it is watched and counted. */
const WATCH_AFTER_HEAD_MS = 20

/**
 * LibreChat's resumable chat stream (`GET /api/agents/chat/stream/:streamId`, librechat-api.md
 * §2.2): relayed chunk by chunk with backpressure, watched for its final frame so a generation
 * whose reader left early is aborted after the grace period, by its stream id.
 */
export async function libreChatStreamRoutes(app: FastifyInstance) {
  const { libreChat, limits } = app
  const { settings } = libreChat
  const watch = libreChat.streamWatch
  // A closing gateway ends its open streams rather than wait for generations to finish: their
  // clients reconnect to another replica within the grace period, and LibreChat keeps the
  // generation for them (librechat-api.md §2.2).
  const openStreams = new Set<FastifyReply['raw']>()
  app.addHook('preClose', async () => {
    for (const client of openStreams) client.destroy()
  })

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
      const { workspaceId } = bridged.membership
      const headers = libreChatHeaders(request, request.headers, {
        token: bridged.token,
        userAgent: settings.userAgent,
      })
      // Keyed by the stream: a reconnect (a reloaded page) takes no second slot.
      const takeSlot = () =>
        limits.holdStreamSlot(
          bridged,
          request,
          reply,
          `${bridged.identity.userId}:stream:${request.params.streamId}`,
        )
      // Without a limit there is nothing to refuse: the stream is counted (so a limit set later
      // sees it) once its first bytes are on their way. Under a limit, LibreChat is asked while
      // the slot is taken and nothing of its answer is relayed before it is; in a workspace just
      // refused a slot the slot comes first, so clients retrying at the limit do not reach
      // LibreChat.
      const unlimited = bridged.policy.quota.maxConcurrentStreams === null
      const slotFirst = !unlimited && limits.streamSlotRefusedLately(workspaceId)
      if (slotFirst) await takeSlot()
      const client = reply.raw
      if (!client.destroyed) {
        openStreams.add(client)
        client.once('close', () => openStreams.delete(client))
      }
      relayStream({
        ...(unlimited || slotFirst ? {} : { admission: takeSlot }),
        dispatcher: libreChat.pool,
        path: request.url,
        headers,
        reply,
        failure: (error) => upstreamFailure('chat service', error),
        onHead: (statusCode, headers) => {
          const isStream = String(headers['content-type'] ?? '').startsWith('text/event-stream')
          if (statusCode !== 200 || !isStream) return undefined
          let sawFinal = false
          let subscription: Promise<OpenWatch | undefined> | undefined
          const watchStream = () => {
            if (subscription !== undefined) return subscription
            // A stream already closed needs its watch (its leaving may abandon the generation),
            // but no count.
            if (unlimited && !reply.raw.destroyed)
              takeSlot().catch((error: unknown) => {
                if (!(error instanceof ClientGone))
                  reply.log.warn({ err: error }, 'could not count an unlimited stream')
              })
            subscription = watch.subscribe(stream).catch((error: unknown) => {
              reply.log.warn({ err: error }, 'stream watch unavailable')
              return undefined
            })
            return subscription
          }
          // Watched (and counted) once the first chunk has gone out, or soon after the head when
          // none comes: their Redis writes do not stand between LibreChat's first frames and
          // the client.
          const watchSoon = setTimeout(watchStream, WATCH_AFTER_HEAD_MS)
          const ended = () => {
            clearTimeout(watchSoon)
            void watchStream().then((open) => open?.ended(sawFinal))
          }
          if (reply.raw.destroyed) ended()
          else reply.raw.once('close', ended)
          const detectFinal = finalFrameDetector(() => {
            sawFinal = true
          })
          let firstChunk = true
          return (chunk) => {
            detectFinal(chunk)
            if (!firstChunk) return
            firstChunk = false
            clearTimeout(watchSoon)
            setImmediate(watchStream)
          }
        },
      })
      return reply
    },
  )
}
