import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Forbidden, McpNotAllowed, Validation } from '../errors.js'
import { matcherFor } from '../lib/allowlist.js'
import { filteredRequestHeaders, markPerWorkspace, sendFiltered } from '../lib/filtered-response.js'
import { answerUpstreamFailure, libreChatHeaders } from '../lib/forwarding.js'
import {
  type ListingFilter,
  libreChatRouteOf,
  listingFilterOfRoute,
  mcpServersOfPath,
} from '../lib/listing-filters.js'
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

const isPolicyRoute = (method: string, route: string) =>
  POLICY_ROUTES.some((entry) => entry.method === method && entry.route.test(route))

/**
 * Everything under `/api` that policy does not need to read, streamed both ways untouched, as
 * the member's LibreChat user; listings filtered to the workspace's allowlists; and LibreChat's
 * web UI (static files, no identity). The routes policy reads are in `librechat-policy.ts`.
 */
export async function libreChatProxyRoutes(app: FastifyInstance) {
  const { libreChat } = app
  const { settings } = libreChat
  app.decorateRequest('libreChatListing', null)

  const bridgeAndCheck = async (request: FastifyRequest) => {
    // The route as LibreChat will match it, worked out once for every decision below.
    const route = libreChatRouteOf(request.url)
    if (isPolicyRoute(request.method, route))
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
    const reads = request.method === 'GET' || request.method === 'HEAD'
    request.libreChatListing = reads ? (listingFilterOfRoute(route) ?? null) : null
  }

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
        return request.libreChatListing === null ? rewritten : filteredRequestHeaders(rewritten)
      },
      onError: answerUpstreamFailure('chat service'),
      onResponse: (request, reply, response) => {
        const filter = request.libreChatListing
        const bridged = request.bridged
        if (filter === null || bridged === null) {
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
        onError: answerUpstreamFailure('chat service'),
      },
    })
  })
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The filter for a listing this request reads, set once the request has been checked. */
    libreChatListing: ListingFilter | null
  }
}
