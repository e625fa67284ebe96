import { randomBytes } from 'node:crypto'
import { type FakeProvider, startFakeProvider } from '@platform/fake-provider'
import { testMongoUrl, uniqueTestName } from '@platform/local-infra/vitest'
import { SignJWT } from 'jose'
import mongoose, { mongo } from 'mongoose'
import {
  type LibreChatDouble,
  type LibreChatDoubleOptions,
  NO_PARENT,
  startLibreChatDouble,
} from '../src/index.js'

export const JWT_SECRET = 'double-test-jwt-secret'
export const PROVIDER_KEY = 'sk-provider-for-librechat'
export const BROWSER_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'

export interface TestUser {
  id: string
  email: string
  token: string
}

export interface Stack {
  provider: FakeProvider
  double: LibreChatDouble
  db: mongo.Db
  createUser(fields?: Record<string, unknown>): Promise<TestUser>
  close(): Promise<void>
}

/** A fake provider behind a LibreChat double with one custom endpoint `fakellm`, and their database. */
export async function startStack(
  overrides: Partial<LibreChatDoubleOptions> = {},
  endpointOverrides: Partial<LibreChatDoubleOptions['endpoints'][number]> = {},
): Promise<Stack> {
  const provider = await startFakeProvider({
    apiKey: PROVIDER_KEY,
    models: ['fake-small', 'fake-large', 'fake-unlisted'],
  })
  const dbName = uniqueTestName('librechat_double')
  const double = await startLibreChatDouble({
    mongoUrl: testMongoUrl(),
    dbName,
    jwtSecret: JWT_SECRET,
    endpoints: [
      {
        name: 'fakellm',
        baseURL: provider.url,
        apiKey: PROVIDER_KEY,
        models: ['fake-small', 'fake-large'],
        headers: {
          'X-LC-User': '{{LIBRECHAT_USER_ID}}',
          'X-LC-Email': '{{LIBRECHAT_USER_EMAIL}}',
          'X-LC-Convo': '{{LIBRECHAT_BODY_CONVERSATIONID}}',
        },
        ...endpointOverrides,
      },
    ],
    ...overrides,
  })
  const connection = await mongoose.createConnection(testMongoUrl(), { dbName }).asPromise()
  const db = connection.db
  if (!db) throw new Error('no database')
  return {
    provider,
    double,
    db,
    async createUser(fields = {}) {
      const _id = new mongo.ObjectId()
      const email = `u-${_id.toHexString().slice(-8)}@gw.invalid`
      const now = new Date()
      await db.collection('users').insertOne({
        _id,
        email,
        emailVerified: true,
        provider: 'local',
        role: 'USER',
        username: `u-${_id.toHexString().slice(-8)}`,
        name: 'Workspace user',
        createdAt: now,
        updatedAt: now,
        ...fields,
      })
      return { id: _id.toHexString(), email, token: await mintToken(_id.toHexString()) }
    },
    async close() {
      await double.close()
      await provider.close()
      await connection.close()
    },
  }
}

export function mintToken(
  id: string,
  options: { secret?: string; expiresAt?: number; payload?: Record<string, unknown> } = {},
): Promise<string> {
  return new SignJWT({ id, ...options.payload })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime(options.expiresAt ?? Math.floor(Date.now() / 1000) + 300)
    .sign(new TextEncoder().encode(options.secret ?? JWT_SECRET))
}

/** A call to the double as the gateway makes it: the user's bearer and a browser User-Agent. */
export function api(
  stack: Stack,
  user: TestUser | undefined,
  path: string,
  init: RequestInit & { json?: unknown } = {},
): Promise<Response> {
  const headers = new Headers(init.headers)
  if (user && !headers.has('authorization')) headers.set('authorization', `Bearer ${user.token}`)
  if (!headers.has('user-agent')) headers.set('user-agent', BROWSER_UA)
  const { json, ...rest } = init
  if (json !== undefined) headers.set('content-type', 'application/json')
  return fetch(`${stack.double.url}${path}`, {
    ...rest,
    headers,
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
  })
}

export const chatBody = (overrides: Record<string, unknown> = {}) => ({
  text: 'Hello there',
  endpoint: 'fakellm',
  endpointType: 'custom',
  model: 'fake-small',
  conversationId: null,
  parentMessageId: NO_PARENT,
  messageId: randomBytes(8).toString('hex'),
  sender: 'User',
  isCreatedByUser: true,
  ...overrides,
})

export interface StartedChat {
  streamId: string
  conversationId: string
  status: string
}

/** `POST /api/agents/chat/fakellm` (v0.8.7), expecting the JSON start answer. */
export async function startChat(
  stack: Stack,
  user: TestUser,
  overrides: Record<string, unknown> = {},
  path = '/api/agents/chat/fakellm',
): Promise<StartedChat> {
  const response = await api(stack, user, path, { method: 'POST', json: chatBody(overrides) })
  if (response.status !== 200) throw new Error(`chat POST answered ${response.status}`)
  return (await response.json()) as StartedChat
}

export interface MessageShape {
  messageId: string
  parentMessageId: string
  conversationId: string
  sender: string
  text: string
  isCreatedByUser: boolean
  content?: Array<{
    type: string
    text?: string
    tool_call?: { id: string; name: string; args: string; output: string }
  }>
  endpoint?: string
  model?: string
  tokenCount?: number
  promptTokens?: number
  unfinished?: boolean
  error?: boolean
  metadata?: { usage: Record<string, number> }
}

export interface StepData {
  id?: string
  type?: string
  index?: number
  stepDetails?: { type: string; tool_calls?: Array<{ id: string; name: string }> }
  delta?: { content: Array<{ type: string; text: string }> }
  result?: { id: string; tool_call: { id: string; name: string; args: string; output: string } }
  conversationId?: string
  title?: string
  input_tokens?: number
  output_tokens?: number
  total_tokens?: number
  model?: string
  provider?: string
  seq?: number
}

/** The data of any frame the double sends; tests read the fields the frame kind has. */
export interface FrameData {
  created?: boolean
  final?: boolean
  sync?: boolean
  aborted?: boolean
  streamId?: string
  event?: string
  data?: StepData
  message?: MessageShape
  title?: string
  conversation?: {
    conversationId: string
    title: string
    endpoint: string
    model: string
    agent_id?: string
  }
  requestMessage?: MessageShape
  responseMessage?: MessageShape
  resumeState?: {
    aggregatedContent: unknown[]
    responseMessageId: string
    conversationId: string
    userMessage: MessageShape
  }
  /** v0.8.7 error frames: the message; v0.8.1 error message objects: true. */
  error?: string | boolean
  text?: string
}

export interface Frame {
  event: string
  data: FrameData
}

/** Reads `event:`/`data:` frames of an SSE response one at a time. */
export function frameReader(response: Response) {
  if (!response.body) throw new Error('response has no body')
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  return {
    async next(): Promise<Frame | undefined> {
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end >= 0) {
          const raw = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          return parseFrame(raw)
        }
        const { done, value } = await reader.read()
        if (done) return undefined
        buffer += decoder.decode(value, { stream: true })
      }
    },
    async rest(): Promise<Frame[]> {
      const frames: Frame[] = []
      for (let frame = await this.next(); frame !== undefined; frame = await this.next()) {
        frames.push(frame)
      }
      return frames
    },
    cancel: () => reader.cancel(),
  }
}

export function parseFrame(raw: string): Frame {
  let event = 'message'
  const data: string[] = []
  for (const line of raw.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7)
    if (line.startsWith('data: ')) data.push(line.slice(6))
  }
  return { event, data: JSON.parse(data.join('\n')) as FrameData }
}

/** Subscribes to a stream and reads it to the end. */
export async function readStream(
  stack: Stack,
  user: TestUser,
  streamId: string,
  query = '',
): Promise<Frame[]> {
  const response = await api(stack, user, `/api/agents/chat/stream/${streamId}${query}`)
  if (response.status !== 200) throw new Error(`stream answered ${response.status}`)
  return frameReader(response).rest()
}

/** The frame's kind: `created`, `final`, `sync`, `error`, or the step event's name. */
export const kindOf = (frame: Frame): string => {
  if (frame.event === 'error') return 'error'
  if (frame.data.created) return 'created'
  if (frame.data.final) return 'final'
  if (frame.data.sync) return 'sync'
  return String(frame.data.event)
}

/** A promise the test resolves by hand, for fake-provider gates. */
export function gate() {
  let open = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

export async function waitUntil(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Polls v0.8.7's status route until the conversation's job is no longer running. */
export async function waitForJobEnd(
  stack: Stack,
  user: TestUser,
  conversationId: string,
): Promise<void> {
  const deadline = Date.now() + 5000
  for (;;) {
    const response = await api(stack, user, `/api/agents/chat/status/${conversationId}`)
    const status = (await response.json()) as { active: boolean }
    if (!status.active) return
    if (Date.now() > deadline) throw new Error('job still running')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
