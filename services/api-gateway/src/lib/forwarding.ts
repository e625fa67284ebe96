import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import { UpstreamTimeout, UpstreamUnavailable } from '../errors.js'

/** Identity and forwarding headers a client may not set for itself (ARCHITECTURE §3). */
const CLIENT_HEADERS_STRIPPED = new Set([
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-real-ip',
  'forwarded',
  'x-tenant-id',
  'x-workspace-id',
  'x-user-id',
  'x-librechat-user-id',
])

/**
 * …and, for LibreChat, the client's own credentials: its cookies could select another LibreChat
 * auth strategy (librechat-api.md §1.1), and the User-Agent is the gateway's to set (§8.1).
 */
const LIBRECHAT_HEADERS_STRIPPED = new Set([
  ...CLIENT_HEADERS_STRIPPED,
  'authorization',
  'cookie',
  'proxy-authorization',
  'user-agent',
])

/**
 * A copy of `headers` without `stripped` and with the gateway's forwarding headers, built in one
 * pass (deleting from a copy would turn it into a slow dictionary).
 */
function rewriteHeaders(
  request: { ip: string; protocol: string; id: string },
  headers: IncomingHttpHeaders,
  stripped: ReadonlySet<string>,
) {
  const kept: IncomingHttpHeaders = {}
  for (const name in headers) if (!stripped.has(name)) kept[name] = headers[name]
  kept['x-forwarded-for'] = request.ip
  kept['x-forwarded-proto'] = request.protocol
  kept['x-request-id'] = request.id
  return kept
}

/** What every upstream hears about the client: the gateway's word, never the client's. */
export function forwardedHeaders(
  request: { ip: string; protocol: string; id: string },
  headers: IncomingHttpHeaders,
): IncomingHttpHeaders {
  return rewriteHeaders(request, headers, CLIENT_HEADERS_STRIPPED)
}

/**
 * What LibreChat hears: the client's own credentials never, the member's minted token instead,
 * and a browser User-Agent, without which LibreChat refuses the call and bans user and IP (§8.1).
 */
export function libreChatHeaders(
  request: { ip: string; protocol: string; id: string },
  headers: IncomingHttpHeaders,
  bridged: { token: string | null; userAgent: string },
): IncomingHttpHeaders {
  const rewritten = rewriteHeaders(request, headers, LIBRECHAT_HEADERS_STRIPPED)
  if (bridged.token !== null) rewritten.authorization = `Bearer ${bridged.token}`
  rewritten['user-agent'] = bridged.userAgent
  return rewritten
}

/** Maps a connection failure, which @fastify/reply-from answers in a shape of its own, to ours. */
export function upstreamFailure(service: string, error: Error & { code?: unknown }) {
  const timedOut =
    error.code === 'FST_REPLY_FROM_GATEWAY_TIMEOUT' ||
    error.code === 'UND_ERR_CONNECT_TIMEOUT' ||
    error.code === 'UND_ERR_HEADERS_TIMEOUT'
  return timedOut ? new UpstreamTimeout(service) : new UpstreamUnavailable(service)
}

/** reply-from's `onError` for `service`: logs the failure and answers it in the platform's shape. */
export const answerUpstreamFailure =
  (service: string) =>
  (
    reply: { log: FastifyBaseLogger; send(payload: unknown): unknown },
    { error }: { error: Error & { code?: unknown } },
  ) => {
    reply.log.warn({ err: error, service }, 'upstream request failed')
    reply.send(upstreamFailure(service, error))
  }
