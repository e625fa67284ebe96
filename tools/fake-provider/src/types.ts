import { z } from 'zod'

const ToolCallSchema = z.looseObject({
  id: z.string(),
  type: z.literal('function'),
  function: z.looseObject({ name: z.string(), arguments: z.string() }),
})

const ChatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z
    .union([z.string(), z.array(z.looseObject({ type: z.string(), text: z.string().optional() }))])
    .nullable()
    .optional(),
  name: z.string().optional(),
  tool_calls: z.array(ToolCallSchema).optional(),
  tool_call_id: z.string().optional(),
})

const ToolSchema = z.looseObject({
  type: z.literal('function'),
  function: z.looseObject({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
})

/** What the fake accepts on `POST /v1/chat/completions`; other OpenAI fields pass through. */
export const ChatCompletionRequestBodySchema = z.looseObject({
  model: z.string().min(1),
  messages: z.array(ChatMessageSchema).min(1),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
  user: z.string().optional(),
  tools: z.array(ToolSchema).optional(),
})

export type ChatMessage = z.infer<typeof ChatMessageSchema>
export type ChatCompletionRequestBody = z.infer<typeof ChatCompletionRequestBodySchema>

export interface FakeBehaviour {
  /** The answer text, streamed one token (see `splitIntoTokens`) per chunk. */
  reply: string | ((request: ChatCompletionRequestBody) => string)
  /**
   * `on-request` (default): a streamed answer ends with a usage chunk only when
   * `stream_options.include_usage` is true. `always`: every streamed answer ends with one (as some
   * OpenAI-compatible servers do). `never`: no usage anywhere, not even in non-streamed answers.
   */
  usage: 'on-request' | 'always' | 'never'
  /** Wait before the status line and first byte of an answer. */
  firstByteDelayMs: number
  /** Wait before every answer chunk after the first. */
  chunkDelayMs: number
  /** Awaited before answer chunk `index` (0-based) is written: a gate a test releases. */
  beforeChunk?: (index: number, call: FakeProviderCall) => Promise<void>
  /** Stop after this many answer chunks and keep the connection open (non-streamed: never answer). */
  stallAfterChunks?: number
  /** Destroy the socket after this many answer chunks (non-streamed: before answering). */
  cutAfterChunks?: number
  /** Answer chat completions with this HTTP status and an OpenAI error body. */
  failWith?: { status: number; message: string; type?: string; code?: string | null }
  /**
   * Answer with this tool call when the request offers a tool of that name and its last message
   * is not a tool result; the follow-up request carrying the result gets `reply`. Requests that
   * do not offer the tool (a title request, say) get `reply` too.
   */
  toolCall?: { name: string; arguments: Record<string, unknown> }
}

export type FakeCallOutcome =
  | 'in-progress'
  | 'completed'
  | 'client-closed'
  | 'stalled'
  | 'cut'
  | 'failed'

export interface FakeProviderCall {
  /** `call-1`, `call-2`, … in arrival order. */
  id: string
  method: string
  /** The path without the query string, e.g. `/v1/chat/completions`. */
  path: string
  /** The path with the query string as received. */
  url: string
  headers: Record<string, string | string[] | undefined>
  /** The parsed JSON body (`undefined` without one, the raw text when it is not JSON). */
  body: unknown
  stream: boolean
  includeUsage: boolean
  promptTokens: number
  /** Answer chunks written so far (one per token); the closing finish and usage chunks are not counted. */
  chunksSent: number
  /** Tokens of the whole planned answer, as its usage reports them. */
  completionTokens: number
  /** `stalled` stays `stalled` when the client later goes away; `endedAt` tells when it did. */
  outcome: FakeCallOutcome
  /** Epoch milliseconds. */
  startedAt: number
  endedAt?: number
}

export interface FakeProvider {
  /** Base URL ending in `/v1`, e.g. `http://127.0.0.1:PORT/v1`. */
  url: string
  /** Every call, in arrival order, updated while it runs. */
  calls: FakeProviderCall[]
  /** Merges `next` into the behaviour for calls that arrive from now on. */
  behave(next: Partial<FakeBehaviour>): void
  /** Back to the default behaviour; `calls` emptied in place. */
  reset(): void
  /** Closes the port and every open connection (stalled ones included). */
  close(): Promise<void>
}

export interface FakeProviderOptions {
  /** When set, every request needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string
  /** The models `GET /v1/models` lists and chat completions accept (default `fake-small`, `fake-large`). */
  models?: string[]
}
