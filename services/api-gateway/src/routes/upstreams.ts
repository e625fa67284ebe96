import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { GatewayConfig } from '../config.js'
import { UpstreamNotConfigured } from '../errors.js'
import { answerUpstreamFailure, forwardedHeaders } from '../lib/forwarding.js'

interface Upstream {
  /** The path prefix this upstream owns, kept as it is on the way through. */
  prefix: string
  service: string
  url: string | undefined
  /** Also proxies WebSocket upgrades (Dev Mode's console; the runtime authenticates its first message). */
  websocket?: boolean
}

export function upstreamsFrom(config: GatewayConfig): Upstream[] {
  return [
    { prefix: '/auth/v1', service: 'auth-service', url: config.AUTH_SERVICE_URL },
    { prefix: '/.well-known', service: 'auth-service', url: config.AUTH_SERVICE_URL },
    { prefix: '/v1', service: 'workspace-service', url: config.WORKSPACE_SERVICE_URL },
    { prefix: '/dev/v1', service: 'code-runtime', url: config.CODE_RUNTIME_URL, websocket: true },
  ]
}

export interface UpstreamRoutesOptions {
  upstreams: Upstream[]
  timeoutMs: number
}

/**
 * One proxy per upstream, each in its own encapsulated context. An upstream with no URL answers
 * 503 so a client can tell "not deployed" from "no such route"; /internal is never routed.
 */
export async function upstreamRoutes(app: FastifyInstance, options: UpstreamRoutesOptions) {
  // Reserved prefixes no upstream here serves (the egress routes live on their own port),
  // claimed explicitly so no wildcard, such as the chat web UI's, can ever route them.
  const notFound = async (_request: FastifyRequest, reply: FastifyReply) => reply.callNotFound()
  for (const prefix of ['/internal', '/llm', '/mcp', '/auth', '/dev']) {
    app.all(prefix, notFound)
    app.all(`${prefix}/*`, notFound)
  }

  for (const upstream of options.upstreams) {
    if (upstream.url === undefined) {
      const notConfigured = async () => {
        throw new UpstreamNotConfigured(upstream.service)
      }
      app.all(upstream.prefix, notConfigured)
      app.all(`${upstream.prefix}/*`, notConfigured)
      continue
    }
    await app.register(httpProxy, {
      upstream: upstream.url,
      prefix: upstream.prefix,
      rewritePrefix: upstream.prefix,
      undici: { headersTimeout: options.timeoutMs, connectTimeout: 5000 },
      websocket: upstream.websocket === true,
      replyOptions: {
        rewriteRequestHeaders: (request, headers) => forwardedHeaders(request, headers),
        onError: answerUpstreamFailure(upstream.service),
      },
    })
  }
}
