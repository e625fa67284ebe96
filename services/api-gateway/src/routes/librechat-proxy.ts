import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Forbidden, McpNotAllowed, Validation } from '../errors.js'
import { matcherFor } from '../lib/allowlist.js'
import { filteredRequestHeaders, markPerWorkspace, sendFiltered } from '../lib/filtered-response.js'
import { libreChatHeaders, upstreamFailure } from '../lib/forwarding.js'
import { libreChatRouteOf, listingFilterFor, mcpServersOfPath } from '../lib/listing-filters.js'
import { mayUseLibreChatMethod } from '../lib/viewer-access.js'

/**
 * The routes `librechat-policy.ts` serves, as LibreChat matches them (case-insensitive, extra
 * slashes ignored). The router sends only their exact spelling there; any other spelling that
 * reaches the pass-through would reach the same LibreChat route unchecked, so it is refused.
 */
const POLICY_ROUTES: { method: string; route: RegExp }[] = [
  {
    method: 'POST',
    route: /^api\/agents(\/chat(\/[^/]+)?|\/v1\/chat\/completions|\/v1\/responses)?$/,
  },
  { method: 'PATCH', route: /^api\/agents\/[^/]+$/ },
  { method: 'GET', route: /^api\/(config|agents\/chat\/stream\/[^/]+)$/ },
  { method: 'HEAD', route: /^api\/(config|agents\/chat\/stream\/[^/]+)$/ },
]

const isPolicyRoute = (method: string, url: string) => {
  const route = libreChatRouteOf(url)
  return POLICY_ROUTES.some((entry) => entry.method === method && entry.route.test(route))
}

/**
 * Everything under `/api` that policy does not need to read, streamed both ways untouched, as
 * the member's LibreChat user; listings filtered to the workspace's allowlists; and LibreChat's
 * web UI (static files, no identity). The routes policy reads are in `librechat-policy.ts`.
 */
export async function libreChatProxyRoutes(app: FastifyInstance) {
  const { libreChat } = app
  const { settings } = libreChat

  const bridgeAndCheck = async (request: FastifyRequest) => {
    if (isPolicyRoute(request.method, request.url))
      throw new Validation(
        'Spell this path as LibreChat’s client does (lower case, no extra or trailing slashes)',
      )
    const bridged = await libreChat.bridgeMember(request)
    if (!mayUseLibreChatMethod(bridged.membership.role, request.method))
      throw new Forbidden('Viewers can read this workspace but not change it')
    const matcher = matcherFor(bridged.policy)
    const refusedServer = mcpServersOfPath(request.url).find(
      (server) => !matcher.isServerAllowed(server),
    )
    if (refusedServer !== undefined)
      throw new McpNotAllowed(`MCP server ${refusedServer}`, matcher.workspaceName)
  }

  const listingFilterOf = (request: { method: string; url: string }) =>
    request.method === 'GET' || request.method === 'HEAD'
      ? listingFilterFor(request.url)
      : undefined

  await app.register(httpProxy, {
    upstream: settings.url,
    prefix: '/api',
    rewritePrefix: '/api',
    undici: libreChat.pool,
    destroyAgent: false,
    preHandler: bridgeAndCheck,
    replyOptions: {
      rewriteRequestHeaders: (request, headers) => {
        const rewritten = libreChatHeaders(request, headers, {
          token: request.bridged?.token ?? null,
          userAgent: settings.userAgent,
        })
        return listingFilterOf(request) === undefined
          ? rewritten
          : filteredRequestHeaders(rewritten)
      },
      onError: (reply, { error }) => {
        reply.log.warn({ err: error }, 'LibreChat request failed')
        reply.send(upstreamFailure('chat service', error))
      },
      onResponse: (request, reply, response) => {
        const filter = listingFilterOf(request)
        const bridged = request.bridged
        if (filter === undefined || bridged === null) {
          reply.send(response.stream)
          return
        }
        if (request.method === 'HEAD') {
          // No body to filter, but the unfiltered body's length and validators must not show.
          markPerWorkspace(reply)
          reply.removeHeader('content-length')
          reply.send(response.stream)
          return
        }
        const matcher = matcherFor(bridged.policy)
        sendFiltered(reply, response, (body) => filter(body, matcher)).catch((error: unknown) =>
          reply.send(error),
        )
      },
    },
  })

  await app.register(async (webUi) => {
    await webUi.register(httpProxy, {
      upstream: settings.url,
      prefix: '/',
      undici: libreChat.pool,
      destroyAgent: false,
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
