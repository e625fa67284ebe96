import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  countPromptTokens,
  DEFAULT_REPLY,
  type FakeProvider,
  splitIntoTokens,
  startFakeProvider,
} from '../src/index.js'
import { sseData, waitUntil } from './sse.js'

const API_KEY = 'sk-fake-test'
let provider: FakeProvider

beforeAll(async () => {
  provider = await startFakeProvider({ apiKey: API_KEY, models: ['fake-small', 'fake-large'] })
})
afterAll(() => provider.close())
beforeEach(() => provider.reset())

const userMessage = (content: string) => ({ role: 'user', content })

function chat(body: Record<string, unknown>, init: RequestInit = {}) {
  return fetch(`${provider.url}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fake-small', messages: [userMessage('Hi there')], ...body }),
    ...init,
  })
}

interface Chunk {
  id: string
  object: string
  model: string
  choices: Array<{
    index: number
    delta: {
      role?: string
      content?: string | null
      tool_calls?: Array<{ id?: string; function: { name?: string; arguments: string } }>
    }
    finish_reason: string | null
  }>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null
}

interface Completion {
  object: string
  model: string
  choices: Array<{
    index: number
    message: { role: string; content: string | null }
    finish_reason: string
  }>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number }
}
interface OpenAiError {
  error: { message: string; type: string; code: string | null }
}
const completion = async (response: Response) => (await response.json()) as Completion
const openAiError = async (response: Response) => (await response.json()) as OpenAiError

const parseChunks = (frames: string[]) =>
  frames.filter((frame) => frame !== '[DONE]').map((frame) => JSON.parse(frame) as Chunk)

describe('tokenization', () => {
  it('splits text into word pieces that keep their leading whitespace and join back exactly', () => {
    expect(splitIntoTokens('Hello there,  friend ')).toEqual(['Hello', ' there,', '  friend', ' '])
    expect(splitIntoTokens('')).toEqual([])
    expect(splitIntoTokens(DEFAULT_REPLY).join('')).toBe(DEFAULT_REPLY)
  })

  it('counts prompt tokens as one per message plus its text, text parts and tool calls', () => {
    expect(
      countPromptTokens([
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Two words' }, { type: 'image_url' }] },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'search', arguments: '{"q":"a b"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'result' },
      ]),
    ).toBe(1 + 2 + (1 + 2) + (1 + 1 + 2) + (1 + 1))
  })
})

describe('POST /v1/chat/completions, streamed', () => {
  it('streams one token per chunk, then a stop chunk and [DONE], without usage unless asked', async () => {
    provider.behave({ reply: 'One two three' })
    const response = await chat({ stream: true })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const frames = await sseData(response).rest()
    expect(frames.at(-1)).toBe('[DONE]')
    const chunks = parseChunks(frames)
    expect(chunks.map((chunk) => chunk.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: 'One' },
      { content: ' two' },
      { content: ' three' },
      {},
    ])
    expect(chunks.map((chunk) => chunk.choices[0]?.finish_reason)).toEqual([
      null,
      null,
      null,
      'stop',
    ])
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk')).toBe(true)
    expect(chunks.every((chunk) => chunk.model === 'fake-small')).toBe(true)
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
    expect(chunks.some((chunk) => 'usage' in chunk)).toBe(false)

    expect(provider.calls).toHaveLength(1)
    expect(provider.calls[0]?.id).toMatch(/^call-\d+$/)
    expect(provider.calls[0]).toMatchObject({
      method: 'POST',
      path: '/v1/chat/completions',
      stream: true,
      includeUsage: false,
      promptTokens: 1 + 2,
      chunksSent: 3,
      completionTokens: 3,
      outcome: 'completed',
    })
    expect(provider.calls[0]?.headers.authorization).toBe(`Bearer ${API_KEY}`)
    expect(provider.calls[0]?.endedAt).toBeGreaterThanOrEqual(provider.calls[0]?.startedAt ?? 0)
  })

  it('ends with a usage chunk when stream_options.include_usage is true', async () => {
    provider.behave({ reply: 'A B' })
    const response = await chat({ stream: true, stream_options: { include_usage: true } })
    const chunks = parseChunks(await sseData(response).rest())
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true)
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    })
    expect(provider.calls[0]?.includeUsage).toBe(true)
  })

  it("sends usage unasked with usage 'always' and never with usage 'never'", async () => {
    provider.behave({ reply: 'A B', usage: 'always' })
    const always = parseChunks(await sseData(await chat({ stream: true })).rest())
    expect(always.at(-1)?.usage).toEqual({
      prompt_tokens: 3,
      completion_tokens: 2,
      total_tokens: 5,
    })

    provider.behave({ usage: 'never' })
    const never = parseChunks(
      await sseData(await chat({ stream: true, stream_options: { include_usage: true } })).rest(),
    )
    expect(never.some((chunk) => chunk.usage)).toBe(false)
  })

  it('answers from a reply function given the request body', async () => {
    provider.behave({ reply: (request) => `You said ${request.messages.length} message(s)` })
    const chunks = parseChunks(await sseData(await chat({ stream: true })).rest())
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('')
    expect(text).toBe('You said 1 message(s)')
  })

  it('holds a chunk behind a beforeChunk gate until the test releases it', async () => {
    let release = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const seen: number[] = []
    provider.behave({
      reply: 'a b c d',
      beforeChunk: async (index) => {
        seen.push(index)
        if (index === 2) await gate
      },
    })
    const reader = sseData(await chat({ stream: true }))
    expect(await reader.next()).toContain('"content":"a"')
    expect(await reader.next()).toContain('"content":" b"')
    await waitUntil(() => seen.includes(2))
    expect(provider.calls[0]).toMatchObject({ chunksSent: 2, outcome: 'in-progress' })
    release()
    const rest = await reader.rest()
    expect(rest.at(-1)).toBe('[DONE]')
    expect(seen).toEqual([0, 1, 2, 3])
    expect(provider.calls[0]).toMatchObject({ chunksSent: 4, outcome: 'completed' })
  })

  it('stalls after N chunks with the connection open, and records when the client leaves', async () => {
    provider.behave({ reply: 'a b c d', stallAfterChunks: 2 })
    const controller = new AbortController()
    const reader = sseData(await chat({ stream: true }, { signal: controller.signal }))
    await reader.next()
    await reader.next()
    await waitUntil(() => provider.calls[0]?.outcome === 'stalled')
    const pending = reader.next()
    const winner = await Promise.race([
      pending.then(() => 'frame'),
      new Promise((resolve) => setTimeout(() => resolve('silence'), 150)),
    ])
    expect(winner).toBe('silence')
    expect(provider.calls[0]).toMatchObject({ chunksSent: 2, completionTokens: 4 })
    expect(provider.calls[0]?.endedAt).toBeUndefined()
    controller.abort()
    await pending.catch(() => undefined)
    await waitUntil(() => provider.calls[0]?.endedAt !== undefined)
    expect(provider.calls[0]?.outcome).toBe('stalled')
  })

  it('cuts the socket after N chunks: the client sees a broken stream', async () => {
    provider.behave({ reply: 'a b c d', cutAfterChunks: 1, chunkDelayMs: 30 })
    const reader = sseData(await chat({ stream: true }))
    expect(await reader.next()).toContain('"content":"a"')
    await expect(reader.rest()).rejects.toThrow()
    expect(provider.calls[0]).toMatchObject({ outcome: 'cut', chunksSent: 1, completionTokens: 4 })
  })

  it('records a client that disconnects mid-stream as client-closed with the chunks sent so far', async () => {
    provider.behave({ reply: 'a b c d e f', chunkDelayMs: 40 })
    const controller = new AbortController()
    const reader = sseData(await chat({ stream: true }, { signal: controller.signal }))
    await reader.next()
    await reader.next()
    controller.abort()
    await waitUntil(() => provider.calls[0]?.outcome === 'client-closed')
    const sent = provider.calls[0]?.chunksSent ?? 0
    expect(sent).toBeGreaterThanOrEqual(2)
    expect(sent).toBeLessThan(6)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(provider.calls[0]?.chunksSent).toBe(sent)
  })

  it('waits firstByteDelayMs before answering and chunkDelayMs between chunks', async () => {
    provider.behave({ reply: 'a b c', firstByteDelayMs: 120, chunkDelayMs: 40 })
    const started = Date.now()
    const response = await chat({ stream: true })
    expect(Date.now() - started).toBeGreaterThanOrEqual(110)
    const reader = sseData(response)
    await reader.next()
    const afterFirst = Date.now()
    await reader.rest()
    expect(Date.now() - afterFirst).toBeGreaterThanOrEqual(70)
  })
})

describe('tool calls', () => {
  const tools = [
    {
      type: 'function',
      function: { name: 'search_mcp_docs', description: 'Search', parameters: { type: 'object' } },
    },
  ]

  it('answers a tool call first, then the reply once the request carries the tool result', async () => {
    provider.behave({
      reply: 'Found it',
      toolCall: { name: 'search_mcp_docs', arguments: { query: 'hello world' } },
    })
    const chunks = parseChunks(await sseData(await chat({ stream: true, tools })).rest())
    const head = chunks[0]?.choices[0]?.delta.tool_calls?.[0]
    expect(head).toMatchObject({ function: { name: 'search_mcp_docs', arguments: '' } })
    const argumentsJson = chunks
      .flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? [])
      .map((toolCall) => toolCall.function.arguments)
      .join('')
    expect(JSON.parse(argumentsJson)).toEqual({ query: 'hello world' })
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls')
    expect(provider.calls[0]?.completionTokens).toBe(1 + splitIntoTokens(argumentsJson).length)

    const followUp = await chat({
      stream: false,
      tools,
      messages: [
        userMessage('Search please'),
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: head?.id,
              type: 'function',
              function: { name: 'search_mcp_docs', arguments: argumentsJson },
            },
          ],
        },
        { role: 'tool', tool_call_id: head?.id, content: 'result text' },
      ],
    })
    const answer = await completion(followUp)
    expect(answer.choices[0]).toMatchObject({
      message: { role: 'assistant', content: 'Found it' },
      finish_reason: 'stop',
    })
  })

  it('answers the reply to a request that does not offer the tool, such as a title request', async () => {
    provider.behave({ reply: 'A Title', toolCall: { name: 'search_mcp_docs', arguments: {} } })
    const answer = await completion(await chat({ stream: false }))
    expect(answer.choices[0]?.message.content).toBe('A Title')
  })
})

describe('POST /v1/chat/completions, not streamed', () => {
  it('answers a chat.completion with usage', async () => {
    provider.behave({ reply: 'Short title' })
    const response = await chat({ stream: false })
    expect(response.status).toBe(200)
    const body = await completion(response)
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: 'fake-small',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Short title' },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    })
    expect(provider.calls[0]).toMatchObject({ stream: false, outcome: 'completed' })
  })

  it("leaves usage out with usage 'never'", async () => {
    provider.behave({ usage: 'never' })
    const body = await completion(await chat({}))
    expect(body.usage).toBeUndefined()
  })
})

describe('failures and hostile requests', () => {
  it('fails with the configured status in the OpenAI error shape', async () => {
    provider.behave({ failWith: { status: 429, message: 'Slow down' } })
    const response = await chat({ stream: true })
    expect(response.status).toBe(429)
    expect(await response.json()).toEqual({
      error: { message: 'Slow down', type: 'rate_limit_error', code: 'rate_limit_exceeded' },
    })
    expect(provider.calls[0]).toMatchObject({ outcome: 'failed', stream: true })
  })

  it.each([
    ['missing', undefined, "You didn't provide an API key."],
    ['wrong', 'Bearer sk-other', 'Incorrect API key provided.'],
    ['non-bearer', API_KEY, 'Incorrect API key provided.'],
  ])('refuses a %s bearer with 401', async (_label, authorization, message) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (authorization) headers.authorization = authorization
    const response = await fetch(`${provider.url}/models`, { headers })
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({
      error: { message, type: 'invalid_request_error', code: 'invalid_api_key' },
    })
    expect(provider.calls[0]?.outcome).toBe('failed')
  })

  it('refuses a malformed body with 400 and an unknown model with 404', async () => {
    const malformed = await fetch(`${provider.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
      body: '{not json',
    })
    expect(malformed.status).toBe(400)
    expect((await openAiError(malformed)).error.type).toBe('invalid_request_error')
    expect(provider.calls[0]?.body).toBe('{not json')

    const noMessages = await chat({ messages: [] })
    expect(noMessages.status).toBe(400)

    const unknownModel = await chat({ model: 'gpt-4o' })
    expect(unknownModel.status).toBe(404)
    expect(await unknownModel.json()).toEqual({
      error: {
        message: 'The model `gpt-4o` does not exist or you do not have access to it.',
        type: 'invalid_request_error',
        code: 'model_not_found',
      },
    })
  })

  it('answers unknown paths with 404 in the OpenAI error shape', async () => {
    const response = await fetch(`${provider.url}/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
    })
    expect(response.status).toBe(404)
    expect((await openAiError(response)).error.code).toBe('unknown_url')
  })
})

describe('GET /v1/models and housekeeping', () => {
  it('lists the configured models', async () => {
    const response = await fetch(`${provider.url}/models?user=abc`, {
      headers: { authorization: `Bearer ${API_KEY}` },
    })
    expect(await response.json()).toEqual({
      object: 'list',
      data: [
        { id: 'fake-small', object: 'model', created: 1_700_000_000, owned_by: 'fake-provider' },
        { id: 'fake-large', object: 'model', created: 1_700_000_000, owned_by: 'fake-provider' },
      ],
    })
    expect(provider.calls[0]).toMatchObject({
      method: 'GET',
      path: '/v1/models',
      url: '/v1/models?user=abc',
      outcome: 'completed',
    })
  })

  it('reset restores the default behaviour and empties the same calls array', async () => {
    const calls = provider.calls
    provider.behave({ reply: 'changed', failWith: { status: 500, message: 'down' } })
    await chat({})
    expect(calls).toHaveLength(1)
    const firstId = calls[0]?.id
    provider.reset()
    expect(calls).toHaveLength(0)
    const body = await completion(await chat({}))
    expect(body.choices[0]?.message.content).toBe(DEFAULT_REPLY)
    expect(provider.calls).toBe(calls)
    expect(calls[0]?.id).not.toBe(firstId)
  })

  it('works without an API key and closes while a call is stalled', async () => {
    const open = await startFakeProvider()
    open.behave({ reply: 'a b', stallAfterChunks: 1 })
    const response = await fetch(`${open.url}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'fake-small', messages: [userMessage('x')], stream: true }),
    })
    const reader = sseData(response)
    await reader.next()
    await open.close()
    await expect(reader.rest()).rejects.toThrow()
  })
})
