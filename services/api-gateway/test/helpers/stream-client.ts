import { randomUUID } from 'node:crypto'
import { type ClientRequest, request as httpRequest, type IncomingMessage } from 'node:http'
import type { FakeProvider } from '@platform/fake-provider'
import { NO_PARENT } from '@platform/librechat-double'
import { onTestFinished } from 'vitest'
import { PROVIDER } from './chat-platform.js'
import { bearer } from './platform.js'
import { type SseFrame, sseFrames } from './sse.js'

/** A chat request LibreChat's web UI would send for the fake provider's small model. */
export function chatBody(overrides: Record<string, unknown> = {}) {
  return {
    text: 'Tell me something',
    endpoint: PROVIDER,
    endpointType: 'custom',
    model: 'fake-small',
    conversationId: 'new',
    parentMessageId: NO_PARENT,
    messageId: randomUUID(),
    sender: 'User',
    isCreatedByUser: true,
    ...overrides,
  }
}

/**
 * Aborts when the test ends (or when `signal` does): a client a failed test left reading would
 * otherwise hold its gateway connection open and keep the gateway from closing.
 */
function closedWithTest(signal?: AbortSignal): AbortSignal {
  const own = new AbortController()
  onTestFinished(() => own.abort())
  return signal ? AbortSignal.any([own.signal, signal]) : own.signal
}

/** `POST /api/agents/chat/<endpoint>` through the gateway, with the JSON body as sent. */
export function postChat(gatewayUrl: string, token: string, body: Record<string, unknown>) {
  return fetch(`${gatewayUrl}/api/agents/chat/${PROVIDER}`, {
    method: 'POST',
    headers: { ...bearer(token), 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: closedWithTest(),
  })
}

export interface StartedChat {
  streamId: string
  conversationId: string
  status: string
}

/** Starts a v0.8.7 generation through the gateway and returns LibreChat's start answer. */
export async function startChat(
  gatewayUrl: string,
  token: string,
  overrides: Record<string, unknown> = {},
): Promise<StartedChat> {
  const response = await postChat(gatewayUrl, token, chatBody(overrides))
  const text = await response.text()
  if (response.status !== 200) throw new Error(`chat POST answered ${response.status}: ${text}`)
  return JSON.parse(text) as StartedChat
}

/** The fields of LibreChat's chat frames these tests read. */
export interface ChatFrameData {
  created?: boolean
  final?: boolean
  sync?: boolean
  aborted?: boolean
  event?: string
  data?: { delta?: { content?: Array<{ type: string; text?: string }> } }
  message?: { conversationId?: string; messageId?: string }
  conversation?: { conversationId?: string }
  responseMessage?: {
    messageId?: string
    unfinished?: boolean
    content?: Array<{ type: string; text?: string }>
  }
  resumeState?: { aggregatedContent?: Array<{ type: string; text?: string }> }
  error?: string | boolean
  text?: string
}

export interface ChatFrame {
  event: string
  data: ChatFrameData
}

const chatFrame = (frame: SseFrame): ChatFrame => ({
  event: frame.event,
  data: JSON.parse(frame.data) as ChatFrameData,
})

/** `created`, `final`, `sync`, `error`, or the step event's name (`on_message_delta`, …). */
export function kindOf(frame: ChatFrame): string {
  if (frame.event === 'error') return 'error'
  if (frame.data.created) return 'created'
  if (frame.data.final) return 'final'
  if (frame.data.sync) return 'sync'
  return String(frame.data.event)
}

/** The text an `on_message_delta` frame adds ('' for any other frame). */
export const deltaText = (frame: ChatFrame): string =>
  kindOf(frame) === 'on_message_delta' ? (frame.data.data?.delta?.content?.[0]?.text ?? '') : ''

/** Every frame of a whole SSE body already read as text. */
export async function framesOf(text: string): Promise<ChatFrame[]> {
  const body = new Response(text).body
  if (body === null) return []
  const frames: ChatFrame[] = []
  for await (const frame of sseFrames(body)) frames.push(chatFrame(frame))
  return frames
}

/** Rejects when `promise` has not settled after `ms`, saying what did not happen. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Reads a fetch response's SSE body one frame at a time, as the bytes arrive, so a test can act
 * between frames. `next` gives undefined once the body has ended.
 */
export function frameReader(response: Response) {
  if (response.body === null) throw new Error('response has no body')
  const frames = sseFrames(response.body)
  return {
    async next(timeoutMs = 5000): Promise<ChatFrame | undefined> {
      const step = await within(timeoutMs, 'the next SSE frame', frames.next())
      return step.done ? undefined : chatFrame(step.value)
    },
    /** Reads frames up to and including the first one `match` accepts. */
    async until(match: (frame: ChatFrame) => boolean, timeoutMs = 5000): Promise<ChatFrame[]> {
      const read: ChatFrame[] = []
      for (;;) {
        const frame = await this.next(timeoutMs)
        if (frame === undefined)
          throw new Error(`the stream ended before the awaited frame: ${read.map(kindOf)}`)
        read.push(frame)
        if (match(frame)) return read
      }
    },
    async rest(timeoutMs = 5000): Promise<ChatFrame[]> {
      const read: ChatFrame[] = []
      for (let frame = await this.next(timeoutMs); frame; frame = await this.next(timeoutMs))
        read.push(frame)
      return read
    },
  }
}

/** `GET /api/agents/chat/stream/:streamId` through the gateway with fetch. */
export function fetchStream(
  gatewayUrl: string,
  token: string,
  streamId: string,
  options: { query?: string; signal?: AbortSignal } = {},
) {
  return fetch(
    `${gatewayUrl}/api/agents/chat/stream/${encodeURIComponent(streamId)}${options.query ?? ''}`,
    { headers: bearer(token), signal: closedWithTest(options.signal) },
  )
}

export interface RawStream {
  request: ClientRequest
  /** Not read until the test reads it: its socket fills and the sender meets backpressure. */
  response: IncomingMessage
}

/**
 * A GET over a connection of its own (no agent), resolved with the response as soon as its
 * headers are in and left paused: nothing of the body is read until the test asks. Destroyed
 * when the test ends.
 */
export function openRawStream(gatewayUrl: string, token: string, path: string): Promise<RawStream> {
  const url = new URL(path, gatewayUrl)
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { agent: false, headers: bearer(token) })
    onTestFinished(() => {
      request.destroy()
    })
    request.on('response', (response) => {
      response.pause()
      resolve({ request, response })
    })
    request.on('error', reject)
    request.end()
  })
}

/** The rest of a raw response's body as text, once it has ended. */
export function readToEnd(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => {
      text += chunk
    })
    response.on('end', () => resolve(text))
    response.on('error', reject)
    response.resume()
  })
}

/** A promise the test resolves by hand: a fake-provider gate. */
export function gate() {
  let open: () => void = () => undefined
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

/**
 * Makes the provider send its first chunk of `reply`, then wait until the returned gate opens
 * (at the latest when the test ends): a generation held open between frames.
 */
export function holdAfterFirstChunk(provider: FakeProvider, reply: string) {
  const hold = gate()
  onTestFinished(hold.open)
  provider.behave({
    reply,
    beforeChunk: (index) => (index === 1 ? hold.opened : Promise.resolve()),
  })
  return hold
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(10)
  }
}
