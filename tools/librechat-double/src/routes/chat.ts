import { randomUUID } from 'node:crypto'
import { setTimeout } from 'node:timers/promises'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { type DoubleContext, requestIp, requestUser } from '../context.js'
import { NO_PARENT, runTurn, type TurnSink, type TurnTarget } from '../generation.js'
import { errorFrame, messageFrame, sendSseTextDenial } from '../http-helpers.js'
import type { ResumeState, StreamJob } from '../jobs.js'
import { MCP_SERVER_PLACEHOLDER, parseToolKey } from '../mcp.js'
import type { AgentDoc } from '../store.js'

/** `CONCURRENT_MESSAGE_MAX` with `LIMIT_CONCURRENT_MESSAGES=true`, as `.env.example` ships it. */
const CONCURRENT_MESSAGE_MAX = 2
const ABORT_SETTLE_MS = 2000

/** LibreChat's built-in endpoint names: they parse, but none is configured in the double. */
const BUILT_IN_ENDPOINTS = new Set([
  'openAI',
  'azureOpenAI',
  'google',
  'anthropic',
  'bedrock',
  'assistants',
  'azureAssistants',
])

const ChatBodySchema = z.looseObject({
  text: z.string().optional(),
  endpoint: z.string().optional(),
  endpointType: z.string().optional(),
  model: z.string().optional(),
  agent_id: z.string().optional(),
  conversationId: z.string().nullable().optional(),
  parentMessageId: z.string().nullable().optional(),
  messageId: z.string().optional(),
  spec: z.string().optional(),
  ephemeralAgent: z
    .looseObject({ mcp: z.array(z.string()).optional() })
    .nullable()
    .optional(),
})
type ChatBody = z.infer<typeof ChatBodySchema>

/**
 * The conversation's (or agent's) sampling parameters LibreChat passes to a custom endpoint:
 * `max_tokens`, `temperature`, `top_p`, when set to numbers.
 */
function samplingOf(options: Record<string, unknown>): Record<string, number> | undefined {
  const sampling: Record<string, number> = {}
  for (const name of ['max_tokens', 'temperature', 'top_p']) {
    const value = options[name]
    if (typeof value === 'number' && Number.isFinite(value)) sampling[name] = value
  }
  return Object.keys(sampling).length > 0 ? sampling : undefined
}

const StreamParamsSchema = z.object({ streamId: z.string() })
const AbortBodySchema = z.looseObject({
  streamId: z.string().optional(),
  conversationId: z.string().optional(),
  abortKey: z.string().optional(),
})

/** `/api/agents/chat*`: the chat POST for both versions, and v0.8.7's stream, abort and status routes. */
export async function chatRoutes(app: FastifyInstance, context: DoubleContext): Promise<void> {
  const chat = (request: FastifyRequest, reply: FastifyReply) => postChat(context, request, reply)
  app.post('/api/agents/chat', chat)
  app.post('/api/agents/chat/:endpoint', chat)
  // v0.8.1 has none of these: POST …/abort falls through to the chat route above, as it does there.
  if (context.version === '0.8.1') return

  app.get('/api/agents/chat/stream/:streamId', async (request, reply) => {
    const user = requestUser(context, request)
    const { streamId } = StreamParamsSchema.parse(request.params)
    const job = context.registry.get(streamId)
    if (!job) return reply.code(404).send({ error: 'Stream not found' })
    if (job.userId !== user.id) return reply.code(403).send({ error: 'Unauthorized' })
    const resume = (request.query as Record<string, unknown>).resume === 'true'
    reply.hijack()
    reply.raw.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
      'Content-Encoding': 'identity',
    })
    reply.raw.flushHeaders()
    job.subscribe(reply.raw, resume ? messageFrame(syncPayload(job)) : undefined)
    return reply
  })

  app.post('/api/agents/chat/abort', async (request, reply) => {
    const user = requestUser(context, request)
    const body = AbortBodySchema.safeParse(request.body ?? {})
    const named = body.success ? body.data : {}
    context.aborts.push({
      userId: user.id,
      ...(named.streamId !== undefined ? { streamId: named.streamId } : {}),
      ...(named.conversationId !== undefined ? { conversationId: named.conversationId } : {}),
    })
    const own = (id: string | undefined) => {
      const job = id === undefined ? undefined : context.registry.get(id)
      return job?.userId === user.id && job.isRunning ? job : undefined
    }
    // When no id matches, LibreChat aborts the user's most recent active job.
    const job =
      own(named.streamId) ??
      own(named.conversationId) ??
      own(named.abortKey?.split(':')[0]) ??
      context.registry.latestRunning(user.id)
    if (!job) return reply.code(404).send({ error: 'Job not found' })
    job.abortController.abort()
    // LibreChat answers once the job has emitted its aborted final.
    await Promise.race([job.finished, setTimeout(ABORT_SETTLE_MS)])
    return { success: true, aborted: job.streamId }
  })

  app.get('/api/agents/chat/status/:conversationId', async (request, reply) => {
    const user = requestUser(context, request)
    const { conversationId } = request.params as { conversationId: string }
    const job = context.registry.get(conversationId)
    if (!job?.isRunning) return { active: false }
    if (job.userId !== user.id) return reply.code(403).send({ error: 'Unauthorized' })
    return {
      active: true,
      streamId: job.streamId,
      status: job.status,
      aggregatedContent: job.resumeState.aggregatedContent,
      createdAt: job.createdAt,
      resumeState: job.resumeState,
    }
  })

  app.get('/api/agents/chat/active', async (request) => {
    const user = requestUser(context, request)
    return { activeJobIds: context.registry.running(user.id).map((job) => job.streamId) }
  })
}

function syncPayload(job: StreamJob) {
  return { sync: true, resumeState: { ...job.resumeState, collectedUsage: [] }, pendingEvents: [] }
}

/**
 * The chat POST through LibreChat's middleware order: agent ACL (agent_id from the body),
 * conversation ownership, endpoint parsing (body.endpoint decides, never the path), model
 * spec, then the controller with its concurrency limit.
 */
async function postChat(
  context: DoubleContext,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const user = requestUser(context, request)
  const parsed = ChatBodySchema.safeParse(request.body ?? {})
  const body: ChatBody = parsed.success ? parsed.data : {}
  const denial = (data: unknown) => sendSseTextDenial(reply, data)
  const parseError = () => denial({ text: 'Error parsing conversation' })
  if (!parsed.success) return parseError()

  let agent: AgentDoc | undefined
  if (body.endpoint === 'agents') {
    if (!body.agent_id) {
      return reply
        .code(400)
        .send({ error: 'Bad Request', message: 'agent_id is required in request body' })
    }
    const stored = await context.store.agents.findOne({ id: body.agent_id })
    if (!stored) return reply.code(404).send({ error: 'Not Found', message: 'agent not found' })
    if (!stored.author.equals(user.doc._id) && user.role !== 'ADMIN') {
      return reply
        .code(403)
        .send({ error: 'Forbidden', message: 'Insufficient permissions to access this agent' })
    }
    agent = stored
  }

  const requestedConversation = body.conversationId ?? undefined
  const isNewConvo =
    requestedConversation === undefined ||
    (context.version === '0.8.7' && requestedConversation === 'new')
  if (!isNewConvo) {
    const existing = await context.store.conversations.findOne({
      conversationId: requestedConversation,
    })
    if (existing && existing.user !== user.id) return denial(conversationDenied(body))
  }

  const endpoint = body.endpoint
  if (!endpoint) return parseError()
  const custom = context.endpoints.find((candidate) => candidate.name === endpoint)
  if (custom && body.endpointType !== 'custom') return parseError()
  const knownShape =
    endpoint === 'agents' ||
    custom !== undefined ||
    BUILT_IN_ENDPOINTS.has(endpoint) ||
    body.endpointType === 'custom'
  if (!knownShape) return parseError()

  let model = body.model ?? ''
  const mcpServers = [...(body.ephemeralAgent?.mcp ?? [])]
  const spec = body.spec ? context.modelSpecs.find((item) => item.name === body.spec) : undefined
  if (spec) {
    if (spec.preset.endpoint !== endpoint) return denial({ text: 'Model spec mismatch' })
    model = spec.preset.model
    mcpServers.push(...(spec.mcpServers ?? []))
  }

  const active = context.activeTurns.get(user.id) ?? 0
  if (active >= CONCURRENT_MESSAGE_MAX) {
    return reply
      .code(429)
      .send({ type: 'concurrent', limit: CONCURRENT_MESSAGE_MAX, pendingRequests: active + 1 })
  }

  const target: TurnTarget = {
    endpoint,
    providerName: endpoint,
    provider: custom,
    model,
    mcpServers,
  }
  if (body.endpointType) target.endpointType = body.endpointType
  if (spec) target.spec = spec.name
  const sampling = samplingOf(body)
  if (sampling) target.sampling = sampling
  if (agent) {
    target.agent = agent
    target.agentToolKeys = agent.tools
    target.providerName = agent.provider
    target.provider = context.endpoints.find((candidate) => candidate.name === agent.provider)
    target.model = agent.model
    const agentSampling = samplingOf(agent.model_parameters ?? {})
    if (agentSampling) target.sampling = agentSampling
    else delete target.sampling
    target.mcpServers = agent.tools.flatMap((key) => {
      const parsed = parseToolKey(key)
      return parsed && parsed.tool !== MCP_SERVER_PLACEHOLDER ? [parsed.server] : []
    })
  }

  const conversationId = isNewConvo ? randomUUID() : (requestedConversation ?? randomUUID())
  const input = {
    user,
    ip: requestIp(request),
    text: body.text ?? '',
    conversationId,
    isNewConvo,
    parentMessageId: body.parentMessageId ?? NO_PARENT,
    ...(body.messageId ? { clientMessageId: body.messageId } : {}),
    target,
  }

  const startTurn = (sink: TurnSink, signal: AbortSignal, progress: ResumeState) => {
    context.activeTurns.set(user.id, (context.activeTurns.get(user.id) ?? 0) + 1)
    let counted = true
    // The slot frees when the terminal frame goes out, as LibreChat's pending-request counter does.
    const release = () => {
      if (!counted) return
      counted = false
      context.activeTurns.set(user.id, (context.activeTurns.get(user.id) ?? 1) - 1)
    }
    const counting: TurnSink = {
      message: (data) => sink.message(data),
      fail: (data) => {
        release()
        sink.fail(data)
      },
      complete: (data, aborted) => {
        release()
        sink.complete(data, aborted)
      },
    }
    const turn = runTurn(context, input, counting, signal, progress).finally(() => {
      release()
      context.turns.delete(turn)
    })
    context.turns.add(turn)
  }

  if (context.version === '0.8.7') {
    const job = context.registry.create(conversationId, user.id)
    const sink: TurnSink = {
      message: (data) => job.emit(messageFrame(data)),
      fail: (data) => job.finish('error', errorFrame(data)),
      complete: (data, aborted) => job.finish(aborted ? 'aborted' : 'complete', messageFrame(data)),
    }
    startTurn(sink, job.abortController.signal, job.resumeState)
    return reply.send({ streamId: conversationId, conversationId, status: 'started' })
  }

  // v0.8.1: the POST is the stream, and a client closing it aborts the generation.
  reply.hijack()
  reply.raw.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache, no-transform',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
    'Access-Control-Allow-Origin': '*',
  })
  reply.raw.flushHeaders()
  const stream = context.registry.attachDirect(conversationId, reply.raw)
  const abortController = new AbortController()
  let ended = false
  reply.raw.on('close', () => {
    if (!ended) abortController.abort()
  })
  const finish = (frame: string) => {
    ended = true
    stream.send(frame)
    stream.end()
  }
  const sink: TurnSink = {
    message: (data) => stream.send(messageFrame(data)),
    fail: (data) => finish(errorFrame(data)),
    complete: (data) => finish(messageFrame(data)),
  }
  const progress: ResumeState = {
    runSteps: [],
    aggregatedContent: [],
    userMessage: null,
    responseMessageId: '',
    conversationId,
    sender: '',
  }
  startTurn(sink, abortController.signal, progress)
  return reply
}

/** The error message object LibreChat's `denyRequest` sends for a conversation the user does not own. */
function conversationDenied(body: ChatBody) {
  return {
    sender: 'AI',
    messageId: randomUUID(),
    conversationId: body.conversationId ?? null,
    parentMessageId: body.parentMessageId ?? NO_PARENT,
    unfinished: false,
    error: true,
    final: true,
    text: JSON.stringify({ type: 'convo_access' }),
    isCreatedByUser: false,
  }
}
