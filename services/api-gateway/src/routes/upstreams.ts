import type { IncomingHttpHeaders } from 'node:http'
import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { GatewayConfig } from '../config.js'
import { UpstreamNotConfigured, UpstreamTimeout, UpstreamUnavailable } from '../errors.js'

interface Upstream {
  /** The path prefix this upstream owns, kept as it is on the way through. */
  prefix: string
  service: string
  url: string | undefined
}

export function upstreamsFrom(config: GatewayConfig): Upstream[] {
  return [
    { prefix: '/auth/v1', service: 'auth-service', url: config.AUTH_SERVICE_URL },
    { prefix: '/.well-known', service: 'auth-service', url: config.AUTH_SERVICE_URL },
    { prefix: '/v1', service: 'workspace-service', url: config.WORKSPACE_SERVICE_URL },
    { prefix: '/dev/v1', service: 'code-runtime', url: config.CODE_RUNTIME_URL },
  ]
}

/** Identity and forwarding headers a client may not set for itself. */
const CLIENT_HEADERS_STRIPPED = [
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
  'forwarded',
  'x-tenant-id',
  'x-workspace-id',
  'x-user-id',
]

function forwardedHeaders(
  request: { ip: string; protocol: string; id: string },
  headers: IncomingHttpHeaders,
): IncomingHttpHeaders {
  const rewritten: IncomingHttpHeaders = { ...headers }
  for (const name of CLIENT_HEADERS_STRIPPED) delete rewritten[name]
  rewritten['x-forwarded-for'] = request.ip
  rewritten['x-forwarded-proto'] = request.protocol
  rewritten['x-request-id'] = request.id
  return rewritten
}

/** Maps a connection failure, which @fastify/reply-from answers in a shape of its own, to ours. */
function upstreamFailure(service: string, error: Error & { code?: unknown }) {
  const timedOut =
    error.code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT' || error.code === 'UND_ERR_CONNECT_TIMEOUT'
  return timedOut ? new UpstreamTimeout(service) : new UpstreamUnavailable(service)
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
  // Claimed explicitly so no later prefix or wildcard can ever route them.
  const notFound = async (_request: FastifyRequest, reply: FastifyReply) => reply.callNotFound()
  app.all('/internal', notFound)
  app.all('/internal/*', notFound)

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
      replyOptions: {
        rewriteRequestHeaders: (request, headers) => forwardedHeaders(request, headers),
        onError: (reply, { error }) => {
          reply.log.warn({ err: error, service: upstream.service }, 'upstream request failed')
          reply.send(upstreamFailure(upstream.service, error))
        },
      },
    })
  }
}
