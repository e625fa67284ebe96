import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Forbidden } from '../errors.js'
import { libreChatHeaders, upstreamFailure } from '../lib/forwarding.js'
import { mayUseLibreChatMethod } from '../lib/viewer-access.js'
import { libreChatStreamRoutes } from './librechat-streams.js'

/**
 * Everything under `/api` that policy does not need to read, streamed both ways untouched, as
 * the member's LibreChat user; and LibreChat's web UI (static files, no identity).
 */
export interface LibreChatProxyOptions {
  streamAbandonGraceMs: number
}

export async function libreChatProxyRoutes(app: FastifyInstance, options: LibreChatProxyOptions) {
  const { libreChat } = app
  const { settings } = libreChat

  const bridgeAndCheck = async (request: FastifyRequest) => {
    const bridged = await libreChat.bridgeMember(request)
    if (!mayUseLibreChatMethod(bridged.membership.role, request.method))
      throw new Forbidden('Viewers can read this workspace but not change it')
  }

  await app.register(httpProxy, {
    upstream: settings.url,
    prefix: '/api',
    rewritePrefix: '/api',
    undici: libreChat.pool,
    preHandler: bridgeAndCheck,
    replyOptions: {
      rewriteRequestHeaders: (request, headers) =>
        libreChatHeaders(request, headers, {
          token: request.bridged?.token ?? null,
          userAgent: settings.userAgent,
        }),
      onError: (reply, { error }) => {
        reply.log.warn({ err: error }, 'LibreChat request failed')
        reply.send(upstreamFailure('chat service', error))
      },
    },
  })

  // Registered in this context so they share the proxy's LibreChat client (`reply.from`).
  await app.register(libreChatStreamRoutes, { graceMs: options.streamAbandonGraceMs })

  await app.register(async (webUi) => {
    await webUi.register(httpProxy, {
      upstream: settings.url,
      prefix: '/',
      undici: libreChat.pool,
      httpMethods: ['GET', 'HEAD'],
      replyOptions: {
        rewriteRequestHeaders: (request, headers) =>
          libreChatHeaders(request, headers, { token: null, userAgent: settings.userAgent }),
        onError: (reply, { error }) => {
          reply.log.warn({ err: error }, 'LibreChat web UI request failed')
          reply.send(upstreamFailure('chat service', error))
        },
      },
    })
  })
}
