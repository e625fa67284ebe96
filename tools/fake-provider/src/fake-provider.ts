import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { countPromptTokens, splitIntoTokens } from './tokens.js'
import {
  type ChatCompletionRequestBody,
  ChatCompletionRequestBodySchema,
  type FakeBehaviour,
  type FakeProvider,
  type FakeProviderCall,
  type FakeProviderOptions,
} from './types.js'

const DEFAULT_MODELS = ['fake-small', 'fake-large']
export const DEFAULT_REPLY = 'Hello from the fake provider.'
/** `created` of every listed model: fixed, so answers compare equal across runs. */
const MODELS_CREATED = 1_700_000_000
const MAX_BODY_BYTES = 8 * 1024 * 1024

const defaultBehaviour = (): FakeBehaviour => ({
  reply: DEFAULT_REPLY,
  usage: 'on-request',
  firstByteDelayMs: 0,
  chunkDelayMs: 0,
})

type Answer =
  | { kind: 'text'; text: string; tokens: string[] }
  | { kind: 'tool'; callId: string; name: string; arguments: string; argumentTokens: string[] }

interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

/** Starts the fake on a free loopback port. */
export async function startFakeProvider(options: FakeProviderOptions = {}): Promise<FakeProvider> {
  const models = options.models ?? DEFAULT_MODELS
  const calls: FakeProviderCall[] = []
  let behaviour = defaultBehaviour()
  let callNumber = 0

  const server = createServer((request, response) => {
    callNumber += 1
    const call: FakeProviderCall = {
      id: `call-${callNumber}`,
      method: request.method ?? 'GET',
      path: new URL(request.url ?? '/', 'http://fake.invalid').pathname,
      url: request.url ?? '/',
      headers: { ...request.headers },
      body: undefined,
      stream: false,
      includeUsage: false,
      promptTokens: 0,
      chunksSent: 0,
      completionTokens: 0,
      outcome: 'in-progress',
      startedAt: Date.now(),
    }
    calls.push(call)
    // A call keeps the behaviour it arrived under, so `behave` mid-stream changes only later calls.
    handleCall(request, response, call, behaviour, options.apiKey, models).catch(() => {
      if (call.outcome === 'in-progress') call.outcome = 'failed'
      response.destroy()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}/v1`,
    calls,
    behave(next) {
      behaviour = { ...behaviour, ...next }
    },
    reset() {
      behaviour = defaultBehaviour()
      calls.length = 0
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function handleCall(
  request: IncomingMessage,
  response: ServerResponse,
  call: FakeProviderCall,
  behaviour: FakeBehaviour,
  apiKey: string | undefined,
  models: readonly string[],
): Promise<void> {
  const closed = new AbortController()
  response.on('close', () => {
    call.endedAt ??= Date.now()
    if (call.outcome === 'in-progress') call.outcome = 'client-closed'
    closed.abort()
  })

  const rawBody = await readBody(request)
  call.body = parseBody(rawBody)

  if (apiKey !== undefined && request.headers.authorization !== `Bearer ${apiKey}`) {
    const message =
      request.headers.authorization === undefined
        ? "You didn't provide an API key."
        : 'Incorrect API key provided.'
    return sendError(response, call, 401, message, 'invalid_request_error', 'invalid_api_key')
  }

  if (call.method === 'GET' && call.path === '/v1/models') {
    return sendJson(response, call, 200, {
      object: 'list',
      data: models.map((id) => ({
        id,
        object: 'model',
        created: MODELS_CREATED,
        owned_by: 'fake-provider',
      })),
    })
  }
  if (call.method === 'POST' && call.path === '/v1/chat/completions') {
    return chatCompletion(response, call, behaviour, models, closed.signal)
  }
  return sendError(
    response,
    call,
    404,
    `Unknown request URL: ${call.method} ${call.path}.`,
    'invalid_request_error',
    'unknown_url',
  )
}

async function chatCompletion(
  response: ServerResponse,
  call: FakeProviderCall,
  behaviour: FakeBehaviour,
  models: readonly string[],
  closed: AbortSignal,
): Promise<void> {
  const parsed = ChatCompletionRequestBodySchema.safeParse(call.body)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue?.path.join('.') || 'body'
    return sendError(
      response,
      call,
      400,
      `Invalid request: ${where}: ${issue?.message ?? 'malformed'}`,
      'invalid_request_error',
      'invalid_request',
    )
  }
  const body = parsed.data
  call.stream = body.stream === true
  call.includeUsage = body.stream === true && body.stream_options?.include_usage === true
  call.promptTokens = countPromptTokens(body.messages)

  if (!models.includes(body.model)) {
    return sendError(
      response,
      call,
      404,
      `The model \`${body.model}\` does not exist or you do not have access to it.`,
      'invalid_request_error',
      'model_not_found',
    )
  }

  await pause(behaviour.firstByteDelayMs, closed)
  if (closed.aborted) return

  if (behaviour.failWith) {
    const { status, message, type, code } = behaviour.failWith
    return sendError(
      response,
      call,
      status,
      message,
      type ?? errorTypeFor(status),
      code === undefined ? errorCodeFor(status) : code,
    )
  }

  const answer = planAnswer(body, behaviour)
  call.completionTokens =
    answer.kind === 'text' ? answer.tokens.length : 1 + answer.argumentTokens.length
  const usage: Usage = {
    prompt_tokens: call.promptTokens,
    completion_tokens: call.completionTokens,
    total_tokens: call.promptTokens + call.completionTokens,
  }
  const completionId = `chatcmpl-${randomBytes(8).toString('hex')}`
  const created = Math.floor(call.startedAt / 1000)

  if (!call.stream) {
    if (behaviour.stallAfterChunks !== undefined) {
      call.outcome = 'stalled'
      return
    }
    if (behaviour.cutAfterChunks !== undefined) {
      call.outcome = 'cut'
      response.destroy()
      return
    }
    const message =
      answer.kind === 'text'
        ? { role: 'assistant', content: answer.text, refusal: null }
        : {
            role: 'assistant',
            content: null,
            refusal: null,
            tool_calls: [
              {
                id: answer.callId,
                type: 'function',
                function: { name: answer.name, arguments: answer.arguments },
              },
            ],
          }
    return sendJson(response, call, 200, {
      id: completionId,
      object: 'chat.completion',
      created,
      model: body.model,
      choices: [
        {
          index: 0,
          message,
          logprobs: null,
          finish_reason: answer.kind === 'text' ? 'stop' : 'tool_calls',
        },
      ],
      ...(behaviour.usage === 'never' ? {} : { usage }),
    })
  }

  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  })
  response.flushHeaders()

  const chunk = (delta: Record<string, unknown>, finishReason: string | null) =>
    `data: ${JSON.stringify({
      id: completionId,
      object: 'chat.completion.chunk',
      created,
      model: body.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(call.includeUsage ? { usage: null } : {}),
    })}\n\n`

  for (let index = 0; index <= call.completionTokens; index += 1) {
    if (index > 0) await pause(behaviour.chunkDelayMs, closed)
    if (closed.aborted) return
    if (behaviour.stallAfterChunks === index) {
      call.outcome = 'stalled'
      return
    }
    if (behaviour.cutAfterChunks === index) {
      call.outcome = 'cut'
      response.destroy()
      return
    }
    if (index === call.completionTokens) break
    if (behaviour.beforeChunk) {
      await Promise.race([behaviour.beforeChunk(index, call), whenAborted(closed)])
      if (closed.aborted) return
    }
    if (!(await send(response, chunk(answerDelta(answer, index), null), closed))) return
    call.chunksSent += 1
  }

  const finishDelta = call.completionTokens === 0 ? { role: 'assistant', content: '' } : {}
  const finishReason = answer.kind === 'text' ? 'stop' : 'tool_calls'
  if (!(await send(response, chunk(finishDelta, finishReason), closed))) return
  const sendUsage =
    behaviour.usage === 'always' || (behaviour.usage === 'on-request' && call.includeUsage)
  if (sendUsage) {
    const usageChunk = {
      id: completionId,
      object: 'chat.completion.chunk',
      created,
      model: body.model,
      choices: [],
      usage,
    }
    if (!(await send(response, `data: ${JSON.stringify(usageChunk)}\n\n`, closed))) return
  }
  if (!(await send(response, 'data: [DONE]\n\n', closed))) return
  call.outcome = 'completed'
  call.endedAt = Date.now()
  response.end()
}

function planAnswer(body: ChatCompletionRequestBody, behaviour: FakeBehaviour): Answer {
  const { toolCall } = behaviour
  const lastMessage = body.messages.at(-1)
  const offersTool = body.tools?.some((tool) => tool.function.name === toolCall?.name) === true
  if (toolCall && offersTool && lastMessage?.role !== 'tool') {
    const argumentsJson = JSON.stringify(toolCall.arguments)
    return {
      kind: 'tool',
      callId: `call_${randomBytes(6).toString('hex')}`,
      name: toolCall.name,
      arguments: argumentsJson,
      argumentTokens: splitIntoTokens(argumentsJson),
    }
  }
  const text = typeof behaviour.reply === 'function' ? behaviour.reply(body) : behaviour.reply
  return { kind: 'text', text, tokens: splitIntoTokens(text) }
}

/** Chunk `index` of an answer: one token of text, or the tool call's head and then its argument pieces. */
function answerDelta(answer: Answer, index: number): Record<string, unknown> {
  if (answer.kind === 'text') {
    const content = answer.tokens[index] ?? ''
    return index === 0 ? { role: 'assistant', content } : { content }
  }
  if (index === 0) {
    return {
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          index: 0,
          id: answer.callId,
          type: 'function',
          function: { name: answer.name, arguments: '' },
        },
      ],
    }
  }
  return {
    tool_calls: [{ index: 0, function: { arguments: answer.argumentTokens[index - 1] ?? '' } }],
  }
}

function errorTypeFor(status: number): string {
  if (status === 401) return 'invalid_request_error'
  if (status === 403) return 'permission_error'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

function errorCodeFor(status: number): string | null {
  if (status === 401) return 'invalid_api_key'
  if (status === 429) return 'rate_limit_exceeded'
  if (status >= 500) return 'server_error'
  return null
}

function sendJson(
  response: ServerResponse,
  call: FakeProviderCall,
  status: number,
  body: unknown,
): void {
  call.outcome = status < 400 ? 'completed' : 'failed'
  call.endedAt = Date.now()
  const text = JSON.stringify(body)
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  })
  response.end(text)
}

/** OpenAI's error shape: `{ error: { message, type, code } }`. */
function sendError(
  response: ServerResponse,
  call: FakeProviderCall,
  status: number,
  message: string,
  type: string,
  code: string | null,
): void {
  sendJson(response, call, status, { error: { message, type, code } })
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const piece of request) {
    const buffer = piece as Buffer
    size += buffer.length
    if (size > MAX_BODY_BYTES) throw new Error('request body too large')
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function parseBody(raw: string): unknown {
  if (raw === '') return undefined
  try {
    return JSON.parse(raw)
  } catch {
    return raw
  }
}

async function pause(ms: number, closed: AbortSignal): Promise<void> {
  if (ms <= 0 || closed.aborted) return
  await sleep(ms, undefined, { signal: closed }).catch(() => undefined)
}

function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
}

/** Writes and, when the socket is full, waits for it to drain; false once the client is gone. */
async function send(response: ServerResponse, text: string, closed: AbortSignal): Promise<boolean> {
  if (closed.aborted) return false
  if (response.write(text)) return true
  await once(response, 'drain', { signal: closed }).catch(() => undefined)
  return !closed.aborted
}
