import type { CustomEndpointConfig } from './types.js'

export interface ProviderToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

export interface ProviderMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string | null
  tool_calls?: ProviderToolCall[]
  tool_call_id?: string
}

export interface ProviderTool {
  type: 'function'
  function: { name: string; description?: string; parameters: Record<string, unknown> }
}

export interface ProviderUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface CompletionRequest {
  endpoint: CustomEndpointConfig
  /** The endpoint's `headers` with placeholders already resolved. */
  headers: Record<string, string>
  model: string
  messages: ProviderMessage[]
  tools?: ProviderTool[]
  /** The LibreChat user id, sent as the body's `user`. */
  user: string
  /** `max_tokens`, `temperature`, `top_p` as the conversation or agent set them. */
  sampling?: Record<string, number>
  signal: AbortSignal
}

export interface StreamedCompletion {
  text: string
  toolCalls: ProviderToolCall[]
  usage?: ProviderUsage
}

/** The provider answered with an error status or broke the stream. */
export class ProviderError extends Error {}

/**
 * What LibreChat's LangChain OpenAI client sends besides the endpoint's own headers (verified on
 * v0.8.6/v0.8.7): the endpoint's API key as bearer, LangChain's User-Agent and the OpenAI SDK's
 * `x-stainless-*` headers.
 */
function requestHeaders(request: CompletionRequest): Record<string, string> {
  return {
    accept: 'application/json',
    'content-type': 'application/json',
    authorization: `Bearer ${request.endpoint.apiKey}`,
    'user-agent': 'langchainjs-openai/1.0.0',
    'x-stainless-lang': 'js',
    'x-stainless-package-version': '5.12.2',
    'x-stainless-os': 'Linux',
    'x-stainless-arch': process.arch,
    'x-stainless-runtime': 'node',
    'x-stainless-runtime-version': process.version,
    'x-stainless-retry-count': '0',
    ...request.headers,
  }
}

async function post(request: CompletionRequest, stream: boolean): Promise<Response> {
  // Custom endpoints get no `stream_options`; sampling parameters only when the conversation
  // or agent sets them.
  const body = {
    model: request.model,
    messages: request.messages,
    stream,
    ...request.sampling,
    ...(request.tools && request.tools.length > 0 ? { tools: request.tools } : {}),
    user: request.user,
  }
  const response = await fetch(`${request.endpoint.baseURL.replace(/\/+$/, '')}/chat/completions`, {
    method: 'POST',
    headers: requestHeaders(request),
    body: JSON.stringify(body),
    signal: request.signal,
  })
  if (!response.ok) {
    const text = await response.text().catch(() => '')
    throw new ProviderError(`${response.status} ${providerErrorMessage(text)}`)
  }
  return response
}

function providerErrorMessage(text: string): string {
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed && typeof parsed === 'object' && 'error' in parsed) {
      const { error } = parsed
      if (error && typeof error === 'object' && 'message' in error) return String(error.message)
    }
  } catch {
    // Not JSON: the raw text is the message.
  }
  return text || 'status code (no body)'
}

interface StreamChunk {
  choices?: Array<{
    delta?: {
      content?: string | null
      tool_calls?: Array<{
        index?: number
        id?: string
        function?: { name?: string; arguments?: string }
      }>
    }
  }>
  usage?: ProviderUsage | null
}

/** A streamed chat completion; `onText` gets every non-empty content delta as it arrives. */
export async function streamChatCompletion(
  request: CompletionRequest,
  onText: (text: string) => void,
): Promise<StreamedCompletion> {
  const response = await post(request, true)
  if (!response.body) throw new ProviderError('provider answered without a body')
  const toolCalls = new Map<number, ProviderToolCall>()
  let text = ''
  let usage: ProviderUsage | undefined
  const decoder = new TextDecoder()
  let buffer = ''

  const handleData = (data: string) => {
    if (data === '[DONE]') return
    const chunk = JSON.parse(data) as StreamChunk
    if (chunk.usage) usage = chunk.usage
    const delta = chunk.choices?.[0]?.delta
    if (typeof delta?.content === 'string' && delta.content !== '') {
      text += delta.content
      onText(delta.content)
    }
    for (const part of delta?.tool_calls ?? []) {
      const index = part.index ?? 0
      const call = toolCalls.get(index) ?? {
        id: '',
        type: 'function' as const,
        function: { name: '', arguments: '' },
      }
      if (part.id) call.id = part.id
      if (part.function?.name) call.function.name += part.function.name
      if (part.function?.arguments) call.function.arguments += part.function.arguments
      toolCalls.set(index, call)
    }
  }

  try {
    for await (const piece of response.body) {
      buffer += decoder.decode(piece, { stream: true }).replace(/\r\n/g, '\n')
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const frame = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const data = frame
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n')
        if (data !== '') handleData(data)
      }
    }
  } catch (error) {
    if (request.signal.aborted) throw error
    throw new ProviderError(`provider stream broke: ${(error as Error).message}`)
  }
  return { text, toolCalls: [...toolCalls.values()], ...(usage ? { usage } : {}) }
}

/** A non-streamed chat completion (titles). */
export async function completeChat(
  request: CompletionRequest,
): Promise<{ text: string; usage?: ProviderUsage }> {
  const response = await post(request, false)
  const body = (await response.json()) as {
    choices?: Array<{ message?: { content?: string | null } }>
    usage?: ProviderUsage
  }
  const text = body.choices?.[0]?.message?.content ?? ''
  return { text, ...(body.usage ? { usage: body.usage } : {}) }
}
