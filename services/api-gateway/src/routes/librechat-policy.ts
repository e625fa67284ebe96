import replyFrom, { type FastifyReplyFromHooks } from '@fastify/reply-from'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import {
  Forbidden,
  McpNotAllowed,
  ModelNotAllowed,
  UpstreamAnswerUnreadable,
  UpstreamUnavailable,
  Validation,
} from '../errors.js'
import { AGENT_ID_PATTERN, checkAgentGraph, checkAgentWrite } from '../lib/agent-check.js'
import {
  isJsonObject,
  matcherFor,
  ownField,
  type PolicyMatcher,
  type PolicyRefusal,
} from '../lib/allowlist.js'
import { checkChatRequest } from '../lib/chat-request-check.js'
import { filteredRequestHeaders, readWhole, sendFiltered } from '../lib/filtered-response.js'
import { answerUpstreamFailure, libreChatHeaders } from '../lib/forwarding.js'
import { parseJson } from '../lib/json.js'
import { listingFilterFor, rewriteStartupConfigForPlatform } from '../lib/listing-filters.js'
import { mayUseLibreChatMethod } from '../lib/viewer-access.js'
import type { BridgedRequest } from '../plugins/librechat.js'
import { libreChatStreamRoutes } from './librechat-streams.js'

const AbortBodySchema = z.strictObject({
  streamId: z.string().max(200).optional(),
  conversationId: z.string().max(200).optional(),
  abortKey: z.string().max(400).optional(),
})

/** A chat POST's own answer (`{streamId, conversationId, status}`) is small. */
const STARTED_ANSWER_MAX_BYTES = 64 * 1024

const StartedSchema = z.object({ streamId: z.string().min(1).max(200) }).loose()

function streamIdOf(raw: Buffer): string | undefined {
  const started = StartedSchema.safeParse(parseJson(raw.toString('utf8')))
  return started.success ? started.data.streamId : undefined
}

type ResponseHandler = NonNullable<FastifyReplyFromHooks['onResponse']>

/** LibreChat's own JSON body limit (librechat-api.md §2.1): nothing larger could run anyway. */
const LIBRECHAT_BODY_LIMIT = 3 * 1024 * 1024

/**
 * The LibreChat routes whose request policy must read (ARCHITECTURE §4.1): everything that can
 * start a model call or tool use, and agent writes. Each body is parsed, checked against the
 * workspace's allowlists, capped, and the checked body is what LibreChat receives. Limits
 * (requests per minute, budget, concurrent streams) apply to the requests that start a
 * generation. Also `GET /api/config` (optional token, filtered answer) and, beside the chat
 * routes it serves, the stream route.
 *
 * Registered beside the `/api/*` pass-through proxy: the router prefers these routes, and the
 * proxy refuses other spellings of them (LibreChat matches paths case-insensitively).
 */
export async function libreChatPolicyRoutes(app: FastifyInstance) {
  const { libreChat, limits } = app
  const { settings } = libreChat
  // The LibreChat plugin owns the pool and closes it; reply-from would destroy it.
  await app.register(replyFrom, {
    base: settings.url,
    undici: libreChat.pool,
    destroyAgent: false,
  })

  const refusal = (refused: PolicyRefusal, matcher: PolicyMatcher) => {
    if (refused.code === 'GW_MODEL_NOT_ALLOWED')
      return new ModelNotAllowed(refused.subject, matcher.workspaceName)
    if (refused.code === 'GW_MCP_NOT_ALLOWED')
      return new McpNotAllowed(refused.subject, matcher.workspaceName)
    return new Validation(refused.message)
  }

  /** The member, who must be allowed to write: viewers only read. */
  const writingMember = async (request: FastifyRequest) => {
    const bridged = await libreChat.bridgeMember(request)
    if (!mayUseLibreChatMethod(bridged.membership.role, request.method))
      throw new Forbidden('Viewers can read this workspace but not change it')
    return bridged
  }

  /** Every saved agent `rootIds` names and every agent they reach, as this member's user. */
  const checkAgents = async (
    rootIds: readonly string[],
    bridged: BridgedRequest,
    matcher: PolicyMatcher,
  ) => {
    if (rootIds.length === 0) return
    const checked = await checkAgentGraph(
      rootIds,
      (agentId) => libreChat.agentAs(bridged.identity.libreChatUserId, agentId),
      matcher,
    )
    if (!checked.ok) throw refusal(checked, matcher)
  }

  /** The limits a request that starts a generation meets, after policy allowed it. */
  const admitGeneration = async (
    request: FastifyRequest,
    reply: FastifyReply,
    bridged: BridgedRequest,
  ) => {
    await limits.refuseSpentBudget(bridged)
    // The POST's own slot: for v0.8.1 it is the stream itself; for v0.8.7 it holds a slot while
    // the generation starts, and the stream route takes the stream's own.
    await limits.holdStreamSlot(
      bridged,
      request,
      reply,
      `${bridged.identity.userId}:post:${request.id}`,
    )
  }

  const forward = (
    request: FastifyRequest,
    reply: FastifyReply,
    bridged: BridgedRequest | null,
    body?: unknown,
    onResponse?: ResponseHandler,
  ) =>
    reply.from(request.url, {
      ...(body === undefined ? {} : { body }),
      rewriteRequestHeaders: (incoming, headers) =>
        libreChatHeaders(incoming, headers, {
          token: bridged?.token ?? null,
          userAgent: settings.userAgent,
        }),
      onError: answerUpstreamFailure('chat service'),
      ...(onResponse === undefined ? {} : { onResponse }),
    })

  /**
   * v0.8.7 answers a chat POST with `{streamId}` and generates whether or not anyone reads the
   * stream: one nobody subscribes to within the grace period is abandoned like one whose reader
   * left. v0.8.1 answers with the stream itself and stops when its reader leaves.
   */
  const watchStartedGeneration =
    (bridged: BridgedRequest): ResponseHandler =>
    (_incoming, outgoing, response) => {
      const isJson = String(outgoing.getHeader('content-type') ?? '').includes('json')
      if (response.statusCode !== 200 || !isJson) {
        outgoing.send(response.stream)
        return
      }
      readWhole(response.stream, STARTED_ANSWER_MAX_BYTES).then(
        (raw) => {
          if (raw === undefined) {
            outgoing.send(new UpstreamAnswerUnreadable('chat service'))
            return
          }
          const streamId = streamIdOf(raw)
          if (streamId === undefined) {
            outgoing.send(raw)
            return
          }
          // Marked before the client learns the id, so its subscription cannot come first.
          void libreChat.streamWatch
            .started({
              tenantId: bridged.membership.tenantId,
              streamId,
              libreChatUserId: bridged.identity.libreChatUserId,
            })
            .finally(() => outgoing.send(raw))
        },
        (error: unknown) => {
          outgoing.log.warn({ err: error }, 'LibreChat broke off a chat answer')
          outgoing.send(new UpstreamUnavailable('chat service'))
        },
      )
    }

  const chat = async (request: FastifyRequest, reply: FastifyReply) => {
    const bridged = await writingMember(request)
    await limits.countRequest(bridged, reply)
    const matcher = matcherFor(bridged.policy)
    const checked = checkChatRequest(request.body, {
      matcher,
      modelSpecs: await libreChat.modelSpecs(bridged.identity.libreChatUserId),
    })
    if (!checked.ok) throw refusal(checked, matcher)
    await checkAgents(checked.agentIds, bridged, matcher)
    await admitGeneration(request, reply, bridged)
    return forward(request, reply, bridged, checked.body, watchStartedGeneration(bridged))
  }

  const chatRoute = { bodyLimit: LIBRECHAT_BODY_LIMIT }
  app.post('/api/agents/chat', chatRoute, chat)
  app.post('/api/agents/chat/:endpoint', chatRoute, chat)
  // Before `/:endpoint` in LibreChat's router too: it stops a generation, it starts none. Only
  // an abort's own fields pass, so the body cannot be a chat for a LibreChat that has no abort
  // route of its own (v0.8.1 reads `body.endpoint` there).
  app.post(
    '/api/agents/chat/abort',
    { bodyLimit: 16 * 1024, schema: { body: AbortBodySchema } },
    async (request, reply) => forward(request, reply, await writingMember(request), request.body),
  )

  // LibreChat's OpenAI-compatible and Open Responses APIs run a saved agent named by `model`.
  const remoteAgentChat = async (request: FastifyRequest, reply: FastifyReply) => {
    const bridged = await writingMember(request)
    await limits.countRequest(bridged, reply)
    const matcher = matcherFor(bridged.policy)
    const agentId = ownField(request.body, 'model')
    if (typeof agentId !== 'string' || !AGENT_ID_PATTERN.test(agentId))
      throw new Validation('model must name a saved agent (agent_…)')
    await checkAgents([agentId], bridged, matcher)
    await admitGeneration(request, reply, bridged)
    return forward(request, reply, bridged, request.body)
  }
  app.post('/api/agents/v1/chat/completions', chatRoute, remoteAgentChat)
  app.post('/api/agents/v1/responses', chatRoute, remoteAgentChat)

  // Agent writes: a model or tool the workspace may not use is refused before LibreChat stores
  // it, and so is a link to an agent that uses one. Running an agent is checked again at chat
  // time, which also covers agents stored before the policy changed.
  app.post('/api/agents', chatRoute, async (request, reply) => {
    const bridged = await writingMember(request)
    const matcher = matcherFor(bridged.policy)
    const checked = checkAgentWrite(request.body, matcher)
    if (!checked.ok) throw refusal(checked, matcher)
    await checkAgents(checked.agentIds, bridged, matcher)
    return forward(request, reply, bridged, request.body)
  })
  app.patch<{ Params: { id: string } }>('/api/agents/:id', chatRoute, async (request, reply) => {
    const bridged = await writingMember(request)
    const matcher = matcherFor(bridged.policy)
    const current = AGENT_ID_PATTERN.test(request.params.id)
      ? await libreChat.agentAs(bridged.identity.libreChatUserId, request.params.id)
      : null
    const checked = checkAgentWrite(request.body, matcher, current ?? undefined)
    if (!checked.ok) throw refusal(checked, matcher)
    await checkAgents(checked.agentIds, bridged, matcher)
    return forward(request, reply, bridged, request.body)
  })

  // The startup config: signed out (or with a token for no workspace) LibreChat's login-page
  // subset, rewritten for platform accounts; signed in, also filtered to the workspace's policy.
  const configFilter = listingFilterFor('/api/config')
  // v0.8.1 shows every model spec and MCP server to anyone; nobody signed out may use any.
  const signedOutConfig = (body: unknown) => {
    const rewritten = rewriteStartupConfigForPlatform(body)
    if (!isJsonObject(rewritten)) return rewritten
    const { modelSpecs: _specs, mcpServers: _servers, ...rest } = rewritten
    return rest
  }
  app.get('/api/config', async (request, reply) => {
    const signedIn = request.user !== null && request.user.wid !== undefined
    const bridged = signedIn ? await libreChat.bridgeMember(request) : null
    const filter =
      bridged === null || configFilter === undefined
        ? signedOutConfig
        : (body: unknown) => configFilter(body, matcherFor(bridged.policy))
    return reply.from(request.url, {
      rewriteRequestHeaders: (incoming, headers) =>
        filteredRequestHeaders(
          libreChatHeaders(incoming, headers, {
            token: bridged?.token ?? null,
            userAgent: settings.userAgent,
          }),
        ),
      onError: answerUpstreamFailure('chat service'),
      onResponse: (_incoming, outgoing, response) => {
        sendFiltered(outgoing, response, filter).catch((error: unknown) => outgoing.send(error))
      },
    })
  })

  await app.register(libreChatStreamRoutes)
}
