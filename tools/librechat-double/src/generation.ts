import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AuthUser } from './auth.js'
import type { ResumeState } from './jobs.js'
import {
  asProviderTool,
  MCP_ALL_TOOLS,
  type McpConnector,
  type McpSession,
  type McpTool,
  parseToolKey,
  toolKey,
} from './mcp.js'
import { resolveHeaders } from './placeholders.js'
import {
  type CompletionRequest,
  completeChat,
  type ProviderMessage,
  streamChatCompletion,
} from './provider-client.js'
import type { AgentDoc, ContentPart, ConversationDoc, MessageDoc, Store } from './store.js'
import type { CustomEndpointConfig, LibreChatVersion, Violation } from './types.js'

/** `Constants.NO_PARENT`: the parent of a conversation's first message. */
export const NO_PARENT = '00000000-0000-0000-0000-000000000000'
const DEFAULT_TITLE = 'New Chat'
/** How long chat frames wait for a title requested just before the chat, so the usual order holds. */
const TITLE_GRACE_MS = 200
const MAX_TOOL_ROUNDS = 5

/** Where a turn's frames go: a v0.8.7 job, or v0.8.1's POST response. */
export interface TurnSink {
  message(data: unknown): void
  /** An `event: error` frame; the stream ends after it. */
  fail(data: unknown): void
  /** The final frame; the stream ends after it. */
  complete(data: unknown, aborted: boolean): void
}

/** What the chat request resolved to before the controller ran. */
export interface TurnTarget {
  /** `body.endpoint` as sent: a custom endpoint name or `agents`. */
  endpoint: string
  endpointType?: string
  /** The custom endpoint that serves the model; undefined when none is configured under that name. */
  provider: CustomEndpointConfig | undefined
  /** The name the provider was looked up by (agent provider or body endpoint). */
  providerName: string
  model: string
  agent?: AgentDoc
  /** MCP servers whose tools are attached (ephemeralAgent.mcp, a model spec, or the agent's tool keys). */
  mcpServers: string[]
  /** For agents: only these `<tool>_mcp_<server>` keys (or `sys__all__sys_mcp_<server>`). */
  agentToolKeys?: string[]
  spec?: string
  /** Sampling parameters for the chat calls (not the title call). */
  sampling?: Record<string, number>
}

export interface TurnInput {
  user: AuthUser
  ip: string
  text: string
  conversationId: string
  isNewConvo: boolean
  parentMessageId: string
  clientMessageId?: string
  target: TurnTarget
}

export interface TurnContext {
  version: LibreChatVersion
  store: Store
  mcp: McpConnector
  violations: Violation[]
}

/** LibreChat's own token estimate (it uses a tokenizer; roughly four characters per token here). */
export const estimateTokens = (text: string): number => Math.ceil(text.length / 4)

const randomId = (prefix: string) => `${prefix}_${randomBytes(9).toString('base64url')}`

/**
 * One chat turn as LibreChat's agents controller runs it: initialize (endpoint config, model
 * validation, MCP tools), emit `created`, call the provider (title first on a new conversation),
 * forward each provider chunk as `on_message_delta`, run tool calls through MCP, persist, emit
 * `final`. Never throws: failures become an error frame.
 */
export async function runTurn(
  context: TurnContext,
  input: TurnInput,
  sink: TurnSink,
  signal: AbortSignal,
  progress: ResumeState,
): Promise<void> {
  const { store, version } = context
  const { user, target, conversationId } = input
  const is087 = version === '0.8.7'
  const userMessageId = randomUUID()
  const responseMessageId = randomUUID()
  const sender = target.agent ? (target.agent.name ?? 'Agent') : target.endpoint
  progress.responseMessageId = responseMessageId
  progress.sender = sender

  const errorPayload = (message: string) =>
    is087
      ? { error: message }
      : {
          sender,
          messageId: responseMessageId,
          conversationId,
          parentMessageId: userMessageId,
          unfinished: false,
          error: true,
          final: true,
          text: message,
          isCreatedByUser: false,
        }

  const { provider } = target
  if (!provider) {
    sink.fail(errorPayload(`Config not found for the ${target.providerName} custom endpoint.`))
    return
  }
  if (!provider.models.includes(target.model)) {
    context.violations.push({ type: 'illegal_model_request', userId: user.id, ip: input.ip })
    sink.fail(errorPayload(`Illegal model request: ${target.model}`))
    return
  }

  const placeholderContext = {
    user: user.doc,
    body: {
      conversationId,
      parentMessageId: input.parentMessageId,
      ...(input.clientMessageId ? { messageId: input.clientMessageId } : {}),
    },
  }
  const sessions = await openMcpSessions(context.mcp, target, placeholderContext)
  let titlePromise: Promise<string | undefined> | undefined
  try {
    const history = await loadHistory(store, user.id, conversationId, input.parentMessageId)
    const now = new Date()
    const userMessage: MessageDoc = {
      messageId: userMessageId,
      parentMessageId: input.parentMessageId,
      conversationId,
      user: user.id,
      sender: 'User',
      text: input.text,
      isCreatedByUser: true,
      endpoint: target.endpoint,
      tokenCount: estimateTokens(input.text),
      unfinished: false,
      error: false,
      createdAt: now,
      updatedAt: now,
    }
    const requestMessage = messageView(userMessage)
    progress.userMessage = requestMessage
    sink.message({
      created: true,
      message: requestMessage,
      ...(is087 ? { streamId: conversationId } : {}),
    })
    await saveConversation(store, input, now)
    await store.messages.insertOne({ ...userMessage })

    const messages: ProviderMessage[] = [
      ...(target.agent?.instructions
        ? [{ role: 'system' as const, content: target.agent.instructions }]
        : []),
      ...history,
      { role: 'user', content: input.text },
    ]
    const baseRequest = {
      endpoint: provider,
      headers: resolveHeaders(provider.headers, placeholderContext),
      model: target.model,
      user: user.id,
      signal,
    }
    if (is087) {
      sink.message({
        event: 'on_context_usage',
        data: { conversationId, promptTokens: estimatePrompt(messages), maxContextTokens: 128000 },
      })
    }

    // v0.8.7 sends the title request just before the chat request; chat frames wait for it
    // briefly so the usual order (title before on_run_step) holds without stalling the chat.
    let heldFrames: unknown[] | undefined
    const emitChat = (data: unknown) => (heldFrames ? heldFrames.push(data) : sink.message(data))
    const releaseHeld = () => {
      const frames = heldFrames ?? []
      heldFrames = undefined
      for (const frame of frames) sink.message(frame)
    }
    const titleEligible =
      provider.titleConvo === true && input.isNewConvo && input.parentMessageId === NO_PARENT
    let titleOrGrace: Promise<unknown> = Promise.resolve()
    if (is087 && titleEligible) {
      heldFrames = []
      titlePromise = generateTitle(store, input, baseRequest)
      void titlePromise.then((title) => {
        if (title && !signal.aborted)
          sink.message({ event: 'title', data: { conversationId, title } })
        releaseHeld()
      })
      titleOrGrace = Promise.race([titlePromise, sleep(TITLE_GRACE_MS)])
      void titleOrGrace.then(releaseHeld)
    }

    const content: ContentPart[] = progress.aggregatedContent
    const runId = randomUUID()
    let stepIndex = 0
    let modelCalls = 0
    const usage = { input: 0, output: 0, reported: false }
    const tools = sessions.flatMap((session) => session.tools)
    let aborted = false
    try {
      for (let round = 0; round < MAX_TOOL_ROUNDS; round += 1) {
        let textPart: { type: 'text'; text: string } | undefined
        let stepId = ''
        const request: CompletionRequest = {
          ...baseRequest,
          ...(target.sampling ? { sampling: target.sampling } : {}),
          messages: [...messages],
          ...(tools.length > 0 ? { tools: tools.map(asProviderTool) } : {}),
        }
        const result = await streamChatCompletion(request, (piece) => {
          if (!textPart) {
            stepId = randomId('step')
            const step = {
              id: stepId,
              runId,
              index: stepIndex++,
              type: 'message_creation',
              stepDetails: {
                type: 'message_creation',
                message_creation: { message_id: randomId('msg') },
              },
              usage: null,
            }
            progress.runSteps.push(step)
            emitChat({ event: 'on_run_step', data: step })
            textPart = { type: 'text', text: '' }
            content.push(textPart)
          }
          textPart.text += piece
          emitChat({
            event: 'on_message_delta',
            data: { id: stepId, delta: { content: [{ type: 'text', text: piece }] } },
          })
        })
        modelCalls += 1
        if (result.usage) {
          usage.reported = true
          usage.input += result.usage.prompt_tokens
          usage.output += result.usage.completion_tokens
          if (is087) {
            emitChat({
              event: 'on_token_usage',
              data: {
                input_tokens: result.usage.prompt_tokens,
                output_tokens: result.usage.completion_tokens,
                total_tokens: result.usage.total_tokens,
                input_token_details: { cache_read: 0 },
                model: target.model,
                provider: 'openAI',
                usage_type: null,
                runId,
                seq: modelCalls,
              },
            })
          }
        }
        if (result.toolCalls.length === 0) break
        messages.push({
          role: 'assistant',
          content: result.text || null,
          tool_calls: result.toolCalls,
        })
        for (const call of result.toolCalls) {
          const toolStepId = randomId('step')
          const index = stepIndex++
          const step = {
            id: toolStepId,
            runId,
            index,
            type: 'tool_calls',
            stepDetails: {
              type: 'tool_calls',
              tool_calls: [{ id: call.id, name: call.function.name, args: '', type: 'tool_call' }],
            },
            usage: null,
          }
          progress.runSteps.push(step)
          emitChat({ event: 'on_run_step', data: step })
          const output = await callTool(
            sessions,
            tools,
            call.function.name,
            call.function.arguments,
          )
          const toolCall = {
            id: call.id,
            name: call.function.name,
            args: call.function.arguments,
            output,
            progress: 1,
          }
          content.push({ type: 'tool_call', tool_call: toolCall })
          emitChat({
            event: 'on_run_step_completed',
            data: { result: { id: toolStepId, index, type: 'tool_call', tool_call: toolCall } },
          })
          messages.push({ role: 'tool', tool_call_id: call.id, content: output })
        }
      }
    } catch (error) {
      if (!signal.aborted) {
        releaseHeld()
        const message = error instanceof Error ? error.message : String(error)
        await saveResponse(store, {
          ...responseBase(input, userMessageId, responseMessageId, sender),
          text: message,
          content: [...content],
          error: true,
          unfinished: false,
        })
        sink.fail(errorPayload(message))
        return
      }
      aborted = true
    }
    if (signal.aborted) aborted = true
    await titleOrGrace
    releaseHeld()

    const outputText = content
      .filter((part): part is { type: 'text'; text: string } => part.type === 'text')
      .map((part) => part.text)
      .join('')
    const tokenCount = usage.reported ? usage.output : estimateTokens(outputText)
    const usageRollup = { input: usage.input, output: usage.output, cacheWrite: 0, cacheRead: 0 }
    const responseMessage: MessageDoc = {
      ...responseBase(input, userMessageId, responseMessageId, sender),
      text: '',
      content: [...content],
      promptTokens: estimatePrompt(messages),
      unfinished: aborted,
      error: false,
      ...(aborted ? {} : { tokenCount }),
      ...(usage.reported && !aborted ? { metadata: { usage: usageRollup } } : {}),
    }
    await saveResponse(store, responseMessage)
    const conversation = await store.conversations.findOne(
      { conversationId, user: user.id },
      { projection: { _id: 0 } },
    )
    const sentResponse = messageView(responseMessage)
    // Before v0.8.7 LibreChat deleted tokenCount from the sent final (it stays in MongoDB).
    if (!is087) {
      delete sentResponse.tokenCount
      delete sentResponse.metadata
    }
    sink.complete(
      {
        final: true,
        conversation,
        title: conversation?.title ?? DEFAULT_TITLE,
        requestMessage,
        responseMessage: sentResponse,
        ...(aborted ? { aborted: true } : {}),
      },
      aborted,
    )
    if (!is087 && titleEligible && !aborted) {
      titlePromise = generateTitle(store, input, {
        ...baseRequest,
        signal: new AbortController().signal,
      })
    }
  } catch (error) {
    sink.fail(errorPayload(error instanceof Error ? error.message : String(error)))
  } finally {
    await titlePromise?.catch(() => undefined)
    await Promise.all(sessions.map((session) => session.close().catch(() => undefined)))
  }
}

function responseBase(
  input: TurnInput,
  userMessageId: string,
  responseMessageId: string,
  sender: string,
): Omit<MessageDoc, 'text' | 'unfinished' | 'error'> {
  const now = new Date()
  return {
    messageId: responseMessageId,
    parentMessageId: userMessageId,
    conversationId: input.conversationId,
    user: input.user.id,
    sender,
    isCreatedByUser: false,
    endpoint: input.target.endpoint,
    // For a saved agent LibreChat reports the agent id as the response's model.
    model: input.target.agent ? input.target.agent.id : input.target.model,
    ...(input.target.agent ? { agent_id: input.target.agent.id } : {}),
    createdAt: now,
    updatedAt: now,
  }
}

async function saveResponse(store: Store, message: MessageDoc): Promise<void> {
  await store.messages.insertOne({ ...message })
  await store.conversations.updateOne(
    { conversationId: message.conversationId, user: message.user },
    { $set: { updatedAt: new Date() } },
  )
}

async function saveConversation(store: Store, input: TurnInput, now: Date): Promise<void> {
  const { target } = input
  const fields: Partial<ConversationDoc> = {
    endpoint: target.endpoint,
    model: target.agent ? target.agent.model : target.model,
    updatedAt: now,
    ...(target.endpointType ? { endpointType: target.endpointType } : {}),
    ...(target.agent ? { agent_id: target.agent.id } : {}),
    ...(target.spec ? { spec: target.spec } : {}),
  }
  await store.conversations.updateOne(
    { conversationId: input.conversationId, user: input.user.id },
    { $set: fields, $setOnInsert: { title: DEFAULT_TITLE, isArchived: false, createdAt: now } },
    { upsert: true },
  )
}

/** The branch from `parentMessageId` up to the conversation's first message, oldest first. */
async function loadHistory(
  store: Store,
  userId: string,
  conversationId: string,
  parentMessageId: string,
): Promise<ProviderMessage[]> {
  if (parentMessageId === NO_PARENT) return []
  const docs = await store.messages.find({ conversationId, user: userId }).toArray()
  const byId = new Map(docs.map((doc) => [doc.messageId, doc]))
  const chain: MessageDoc[] = []
  for (
    let cursor = byId.get(parentMessageId);
    cursor && !chain.includes(cursor);
    cursor = byId.get(cursor.parentMessageId)
  ) {
    chain.unshift(cursor)
  }
  return chain
    .filter((doc) => !doc.error)
    .map((doc) => ({
      role: doc.isCreatedByUser ? ('user' as const) : ('assistant' as const),
      content: doc.isCreatedByUser || doc.text ? doc.text : textOf(doc.content ?? []),
    }))
}

const textOf = (content: ContentPart[]) =>
  content.map((part) => (part.type === 'text' ? part.text : '')).join('')

function estimatePrompt(messages: ProviderMessage[]): number {
  return messages.reduce((total, message) => total + 3 + estimateTokens(message.content ?? ''), 3)
}

async function generateTitle(
  store: Store,
  input: TurnInput,
  baseRequest: Omit<CompletionRequest, 'messages'>,
): Promise<string | undefined> {
  try {
    const { text } = await completeChat({
      ...baseRequest,
      messages: [
        {
          role: 'user',
          content: `Write a concise, 5-word-or-less title for the conversation below, in its language, without punctuation or quotes.\n\nUser: ${input.text}`,
        },
      ],
    })
    const title = text
      .split('\n')[0]
      ?.replace(/^["'\s]+|["'\s]+$/g, '')
      .slice(0, 100)
    if (!title) return undefined
    await store.conversations.updateOne(
      { conversationId: input.conversationId, user: input.user.id },
      { $set: { title } },
    )
    return title
  } catch {
    // A failed or aborted title leaves "New Chat", as in LibreChat.
    return undefined
  }
}

async function openMcpSessions(
  connector: McpConnector,
  target: TurnTarget,
  context: Parameters<McpConnector['open']>[1],
): Promise<McpSession[]> {
  const names = [...new Set(target.mcpServers)]
  const sessions = await Promise.all(
    names.map(async (name) => {
      const server = connector.configured(name)
      if (!server) return undefined
      // LibreChat logs a server it cannot reach and runs the turn without its tools.
      return connector.open(server, context).catch(() => undefined)
    }),
  )
  return sessions
    .filter((session): session is McpSession => session !== undefined)
    .map((session) => ({ ...session, tools: session.tools.filter(allowedBy(target)) }))
}

function allowedBy(target: TurnTarget): (tool: McpTool) => boolean {
  const keys = target.agentToolKeys
  if (!keys) return () => true
  return (tool) =>
    keys.includes(toolKey(tool)) ||
    keys.some((key) => {
      const parsed = parseToolKey(key)
      return parsed?.tool === MCP_ALL_TOOLS && parsed.server === tool.server
    })
}

async function callTool(
  sessions: McpSession[],
  tools: McpTool[],
  key: string,
  argumentsJson: string,
): Promise<string> {
  const tool = tools.find((candidate) => toolKey(candidate) === key)
  const session = sessions.find((candidate) => candidate.server.name === tool?.server)
  if (!tool || !session) return `Error: tool ${key} is not available`
  try {
    const args = argumentsJson ? (JSON.parse(argumentsJson) as Record<string, unknown>) : {}
    return await session.call(tool.name, args)
  } catch (error) {
    return `Error: ${error instanceof Error ? error.message : String(error)}`
  }
}

/** A message document as LibreChat sends it: no `_id`, dates as they serialize. */
export function messageView(message: MessageDoc): Record<string, unknown> {
  const { _id: _omitted, ...rest } = message as MessageDoc & { _id?: unknown }
  return rest
}
