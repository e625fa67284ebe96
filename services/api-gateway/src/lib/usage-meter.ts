import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { O200K_TOKEN_SPLIT_REGEX } from 'gpt-tokenizer/encodingParams/constants'
import { z } from 'zod'
import { isJsonObject } from './allowlist.js'
import { parseJson } from './json.js'

/** Tokens of one model call, as the provider reports them or as the gateway counts them. */
export interface TokenUsage {
  inputTokens: number
  outputTokens: number
}

export interface StreamMeterOptions {
  /** Whether the caller asked for usage (`stream_options.include_usage`) and so gets it. */
  forwardUsage: boolean
}

/** Reads a chat-completions SSE stream on its way to the caller; see `createStreamMeter`. */
export interface StreamMeter {
  /** Feeds provider bytes as they arrive (any split) and returns the bytes to send on now. */
  push(chunk: Buffer): Buffer
  /** Returns an incomplete trailing event unchanged; it is not read, as a client drops it too. */
  end(): Buffer
  /** The provider's own count, from its usage chunk, or null when it sent none. */
  readonly reportedUsage: TokenUsage | null
  /** Content, reasoning, refusal and tool-call name/argument deltas, in arrival order. */
  readonly deliveredText: string
  /** `countTextTokens(deliveredText)`, computed when asked. */
  deliveredOutputTokens(): number
  /** Whether `data: [DONE]` arrived: the provider finished the stream. */
  readonly sawDone: boolean
  /** The last non-null `finish_reason`. */
  readonly finishReason: string | null
  /** The `model` the chunks name. */
  readonly model: string | null
}

// Text spelling a special token (`<|endoftext|>`) is counted as the plain text it is: that is
// how a provider reads a message's text, and the tokenizer would otherwise throw on it.
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() }

/**
 * Longest tokenizer piece counted whole. Byte-pair merging costs quadratic time in a piece's
 * length (40,000 letters without a break take seconds), and pieces that long only come from
 * degenerate text (`aaaa…`, `AAAA…` in base64 of zeros), so those are counted in slices of this
 * size: linear time, off by about a token per slice. Text without such a piece counts exactly.
 */
const MAX_PIECE_CHARS = 64

/** Exact o200k_base token count of `text` (see `MAX_PIECE_CHARS` for degenerate text). */
export function countTextTokens(text: string): number {
  if (text.length <= MAX_PIECE_CHARS) return countTokens(text, PLAIN_TEXT)
  let total = 0
  let countedUpTo = 0
  for (const match of text.matchAll(O200K_TOKEN_SPLIT_REGEX)) {
    const piece = match[0]
    if (piece.length <= MAX_PIECE_CHARS) continue
    total += countTokens(text.slice(countedUpTo, match.index), PLAIN_TEXT)
    total += countInSlices(piece)
    countedUpTo = match.index + piece.length
  }
  return total + countTokens(text.slice(countedUpTo), PLAIN_TEXT)
}

function countInSlices(piece: string): number {
  let total = 0
  for (let start = 0; start < piece.length; ) {
    let end = Math.min(start + MAX_PIECE_CHARS, piece.length)
    if (end < piece.length && isHighSurrogate(piece.charCodeAt(end - 1))) end -= 1
    total += countTokens(piece.slice(start, end), PLAIN_TEXT)
    start = end
  }
  return total
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff

/**
 * OpenAI's chat overhead for its current models (cookbook "How to count tokens with tiktoken"):
 * every message costs 3 tokens besides its values, a `name` 1 more, and the reply is primed
 * with 3.
 */
const TOKENS_PER_MESSAGE = 3
const TOKENS_PER_NAME = 1
const TOKENS_OF_REPLY_PRIMING = 3

/**
 * An image part's cost without decoding the image: OpenAI's vision pricing for a 1024×1024
 * picture at `high` (and `auto`) detail is 85 + 4 tiles × 170 = 765 tokens; `low` detail is a
 * flat 85. Larger pictures cost up to about twice as much, smaller ones less.
 */
const IMAGE_PART_TOKENS = 765
const LOW_DETAIL_IMAGE_PART_TOKENS = 85

/**
 * Prompt tokens of an OpenAI chat-completions request, counted before it is forwarded: each
 * message's role, text content, name, tool-call id and tool calls, a fixed estimate per image
 * part, the JSON of every tool (and legacy function) definition, and OpenAI's per-message
 * overhead. Odd input counts as what can be read of it (no messages: 0); it never throws.
 */
export function estimatePromptTokens(body: unknown): number {
  if (!isJsonObject(body)) return 0
  let total = 0
  const { messages } = body
  if (Array.isArray(messages) && messages.length > 0) {
    for (const message of messages) total += messageTokens(message)
    total += TOKENS_OF_REPLY_PRIMING
  }
  total += definitionTokens(body.tools) + definitionTokens(body.functions)
  return total
}

function messageTokens(message: unknown): number {
  let total = TOKENS_PER_MESSAGE
  if (!isJsonObject(message)) return total
  total += stringTokens(message.role) + stringTokens(message.tool_call_id)
  if (typeof message.name === 'string') total += countTextTokens(message.name) + TOKENS_PER_NAME
  const { content } = message
  if (typeof content === 'string') total += countTextTokens(content)
  else if (Array.isArray(content)) for (const part of content) total += partTokens(part)
  if (Array.isArray(message.tool_calls)) {
    for (const toolCall of message.tool_calls) {
      if (isJsonObject(toolCall)) total += functionCallTokens(toolCall.function)
    }
  }
  return total + functionCallTokens(message.function_call)
}

function partTokens(part: unknown): number {
  if (!isJsonObject(part)) return 0
  if (typeof part.text === 'string') return countTextTokens(part.text)
  if (typeof part.refusal === 'string') return countTextTokens(part.refusal)
  if (part.type === 'image_url' || part.type === 'input_image') {
    const image = part.image_url
    const detail = isJsonObject(image) ? image.detail : part.detail
    return detail === 'low' ? LOW_DETAIL_IMAGE_PART_TOKENS : IMAGE_PART_TOKENS
  }
  return 0
}

function functionCallTokens(call: unknown): number {
  if (!isJsonObject(call)) return 0
  // Some clients send `arguments` as an object instead of the JSON text OpenAI specifies.
  const args = typeof call.arguments === 'string' ? call.arguments : jsonText(call.arguments)
  return stringTokens(call.name) + countTextTokens(args)
}

function definitionTokens(definitions: unknown): number {
  if (!Array.isArray(definitions)) return 0
  let total = 0
  for (const definition of definitions) total += countTextTokens(jsonText(definition))
  return total
}

const stringTokens = (value: unknown) => (typeof value === 'string' ? countTextTokens(value) : 0)

/** JSON of a value from an unknown body; '' for what JSON cannot hold (cycles, BigInt). */
function jsonText(value: unknown): string {
  if (value === undefined) return ''
  try {
    return JSON.stringify(value) ?? ''
  } catch {
    return ''
  }
}

const ReportedUsageSchema = z.object({
  prompt_tokens: z.int().min(0),
  completion_tokens: z.int().min(0),
})

function reportedUsageOf(usage: unknown): TokenUsage | null {
  const parsed = ReportedUsageSchema.safeParse(usage)
  if (!parsed.success) return null
  return { inputTokens: parsed.data.prompt_tokens, outputTokens: parsed.data.completion_tokens }
}

/** The provider's count in a non-streamed completion, or null when it gave no usable one. */
export function usageOfCompletion(body: unknown): TokenUsage | null {
  return isJsonObject(body) ? reportedUsageOf(body.usage) : null
}

/** What a non-streamed completion delivered, to count when the provider reports no usage. */
export function deliveredTextOfCompletion(body: unknown): string {
  if (!isJsonObject(body) || !Array.isArray(body.choices)) return ''
  let text = ''
  for (const choice of body.choices) {
    if (isJsonObject(choice)) text += outputTextOf(choice.message)
  }
  return text
}

/**
 * The generated text in a completion's `message` or a chunk's `delta`: reasoning, content,
 * refusal, and tool-call names and arguments. `reasoning` is the newer name some servers use
 * for `reasoning_content`; one of them is taken, as servers in transition send both.
 */
function outputTextOf(message: unknown): string {
  if (!isJsonObject(message)) return ''
  let text = ''
  if (typeof message.reasoning_content === 'string') text += message.reasoning_content
  else if (typeof message.reasoning === 'string') text += message.reasoning
  const { content } = message
  if (typeof content === 'string') text += content
  else if (Array.isArray(content)) {
    for (const part of content) {
      if (isJsonObject(part) && typeof part.text === 'string') text += part.text
    }
  }
  if (typeof message.refusal === 'string') text += message.refusal
  if (Array.isArray(message.tool_calls)) {
    for (const toolCall of message.tool_calls) {
      if (isJsonObject(toolCall)) text += functionCallText(toolCall.function)
    }
  }
  return text + functionCallText(message.function_call)
}

function functionCallText(call: unknown): string {
  if (!isJsonObject(call)) return ''
  const name = typeof call.name === 'string' ? call.name : ''
  const args = typeof call.arguments === 'string' ? call.arguments : ''
  return name + args
}

/**
 * One event larger than this is passed on as raw bytes once it crosses the limit and is never
 * read, so a stream without event separators cannot grow the gateway's memory.
 */
const MAX_EVENT_BYTES = 1024 * 1024

const LF = 0x0a
const CR = 0x0d
const NOTHING = Buffer.alloc(0)

/**
 * Meters a chat-completions SSE stream (https://html.spec.whatwg.org/multipage/server-sent-events.html)
 * while relaying it. Events end at a blank line; lines end in `\n` or `\r\n` (a lone `\r` is
 * not a line end here: no chat-completions server sends one). Every event goes on unchanged,
 * except that without `forwardUsage` a usage-only chunk (`choices` empty, `usage` an object) is
 * dropped and a chunk with choices has its `usage` object removed, as the caller did not ask for
 * usage; `usage: null`, which OpenAI adds to every chunk once usage is asked for, stays, as
 * clients ignore it. Work per push is proportional to the pushed bytes plus the event they end.
 */
export function createStreamMeter(options: StreamMeterOptions): StreamMeter {
  let pending: Buffer[] = []
  let pendingBytes = 0
  /** Bytes of the current event so far, including those already passed on raw. */
  let eventBytes = 0
  /** The current event crossed `MAX_EVENT_BYTES` and is being passed on as it arrives. */
  let passingThrough = false
  /** The current line has a byte other than `\r`, so its `\n` does not end the event. */
  let lineHasContent = false

  let reportedUsage: TokenUsage | null = null
  let deliveredText = ''
  let countedLength = -1
  let countedTokens = 0
  let sawDone = false
  let finishReason: string | null = null
  let model: string | null = null

  function keep(bytes: Buffer, out: Buffer[]) {
    eventBytes += bytes.length
    if (passingThrough) {
      out.push(bytes)
      return
    }
    // A copy, so a partial event holds neither the caller's buffer nor the rest of its chunk.
    pending.push(Buffer.from(bytes))
    pendingBytes += bytes.length
    if (pendingBytes > MAX_EVENT_BYTES) {
      out.push(...pending)
      pending = []
      pendingBytes = 0
      passingThrough = true
    }
  }

  function finishEvent(tail: Buffer, out: Buffer[]) {
    const total = eventBytes + tail.length
    const wasPassingThrough = passingThrough
    const event =
      pending.length === 0 ? tail : Buffer.concat([...pending, tail], pendingBytes + tail.length)
    pending = []
    pendingBytes = 0
    eventBytes = 0
    passingThrough = false
    if (wasPassingThrough) out.push(tail)
    // Decided by the event's whole size, so it does not depend on how the bytes were split.
    else if (total > MAX_EVENT_BYTES) out.push(event)
    else out.push(readEvent(event))
  }

  function readEvent(event: Buffer): Buffer {
    const lines = event.toString('utf8').split('\n')
    const data: string[] = []
    for (const line of lines) {
      const field = fieldOf(line)
      if (field?.name === 'data') data.push(field.value)
    }
    if (data.length === 0) return event
    const text = data.join('\n')
    if (text.trim() === '[DONE]') {
      sawDone = true
      return event
    }
    const chunk = parseJson(text)
    if (!isJsonObject(chunk)) return event
    readChunk(chunk)
    if (options.forwardUsage || !isJsonObject(chunk.usage)) return event
    if (!Array.isArray(chunk.choices) || chunk.choices.length === 0) return NOTHING
    const { usage: _hidden, ...withoutUsage } = chunk
    return Buffer.from(replaceData(lines, JSON.stringify(withoutUsage)))
  }

  function readChunk(chunk: Record<string, unknown>) {
    if (typeof chunk.model === 'string' && chunk.model !== '') model = chunk.model
    const usage = reportedUsageOf(chunk.usage)
    if (usage !== null) reportedUsage = usage
    if (!Array.isArray(chunk.choices)) return
    for (const choice of chunk.choices) {
      if (!isJsonObject(choice)) continue
      if (typeof choice.finish_reason === 'string') finishReason = choice.finish_reason
      deliveredText += outputTextOf(choice.delta)
    }
  }

  return {
    push(chunk) {
      const out: Buffer[] = []
      let eventStart = 0
      let lineStart = 0
      while (lineStart < chunk.length) {
        const lineEnd = chunk.indexOf(LF, lineStart)
        if (lineEnd === -1) {
          if (hasContent(chunk, lineStart, chunk.length)) lineHasContent = true
          break
        }
        const blank = !lineHasContent && !hasContent(chunk, lineStart, lineEnd)
        lineHasContent = false
        lineStart = lineEnd + 1
        if (blank) {
          finishEvent(chunk.subarray(eventStart, lineStart), out)
          eventStart = lineStart
        }
      }
      if (eventStart < chunk.length) keep(chunk.subarray(eventStart), out)
      if (out.length === 0) return NOTHING
      return out.length === 1 && out[0] !== undefined ? out[0] : Buffer.concat(out)
    },
    end() {
      const rest = pending.length === 0 ? NOTHING : Buffer.concat(pending, pendingBytes)
      pending = []
      pendingBytes = 0
      eventBytes = 0
      passingThrough = false
      lineHasContent = false
      return rest
    },
    get reportedUsage() {
      return reportedUsage
    },
    get deliveredText() {
      return deliveredText
    },
    deliveredOutputTokens() {
      // The text only grows, so an unchanged length means an unchanged text.
      if (countedLength !== deliveredText.length) {
        countedTokens = countTextTokens(deliveredText)
        countedLength = deliveredText.length
      }
      return countedTokens
    },
    get sawDone() {
      return sawDone
    },
    get finishReason() {
      return finishReason
    },
    get model() {
      return model
    },
  }
}

/** Whether bytes `[from, to)` hold anything but `\r`: a line of only `\r` is blank. */
function hasContent(bytes: Buffer, from: number, to: number): boolean {
  for (let index = from; index < to; index += 1) {
    if (bytes[index] !== CR) return true
  }
  return false
}

/** The field of one event line (`\r` end dropped), or null for a blank line or a comment. */
function fieldOf(rawLine: string): { name: string; value: string } | null {
  const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine
  if (line === '' || line.startsWith(':')) return null
  const colon = line.indexOf(':')
  if (colon === -1) return { name: line, value: '' }
  const value = line.slice(colon + 1)
  return { name: line.slice(0, colon), value: value.startsWith(' ') ? value.slice(1) : value }
}

/**
 * The event's lines with its data replaced by `data`: one `data:` line where the first one was,
 * every other line (comments, `id:`, `event:`, the blank end) kept with its own line ending.
 */
function replaceData(lines: readonly string[], data: string): string {
  const kept: string[] = []
  let replaced = false
  for (const line of lines) {
    if (fieldOf(line)?.name !== 'data') kept.push(line)
    else if (!replaced) {
      kept.push(`data: ${data}${line.endsWith('\r') ? '\r' : ''}`)
      replaced = true
    }
  }
  return kept.join('\n')
}
