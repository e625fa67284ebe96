import { request as httpRequest, type IncomingMessage } from 'node:http'
import {
  type ChatMessage,
  countPromptTokens,
  DEFAULT_REPLY,
  splitIntoTokens,
} from '@platform/fake-provider'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  api,
  BROWSER_UA,
  chatBody,
  type Frame,
  frameReader,
  gate,
  kindOf,
  type MessageShape,
  PROVIDER_KEY,
  readStream,
  type Stack,
  startChat,
  startStack,
  waitForJobEnd,
  waitUntil,
} from './helpers.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack({}, { titleConvo: true })
})
afterAll(() => stack.close())
beforeEach(() => stack.provider.reset())

const chatCalls = () => stack.provider.calls.filter((call) => call.stream)
const titleCalls = () =>
  stack.provider.calls.filter((call) => call.path === '/v1/chat/completions' && !call.stream)
const text = (frames: Frame[]) =>
  frames
    .filter((frame) => kindOf(frame) === 'on_message_delta')
    .map((frame) => frame.data.data?.delta?.content[0]?.text ?? '')
    .join('')

describe('librechat-api.md §9: POST /api/agents/chat/:endpoint ⇒ {"streamId","conversationId","status":"started"}', () => {
  it('starts a new conversation with streamId equal to conversationId (null, missing and "new" alike)', async () => {
    const user = await stack.createUser()
    const ids = new Set<string>()
    for (const conversationId of [null, undefined, 'new']) {
      const started = await startChat(stack, user, { conversationId })
      expect(started).toEqual({
        streamId: started.conversationId,
        conversationId: started.conversationId,
        status: 'started',
      })
      expect(started.streamId).toMatch(/^[0-9a-f-]{36}$/)
      ids.add(started.streamId)
      await readStream(stack, user, started.streamId)
    }
    expect(ids.size).toBe(3)
  })

  it('lets body.endpoint decide, not the path segment', async () => {
    const user = await stack.createUser()
    const started = await startChat(stack, user, {}, '/api/agents/chat/openAI')
    const frames = await readStream(stack, user, started.streamId)
    expect(kindOf(frames.at(-1) as Frame)).toBe('final')
    expect(chatCalls()).toHaveLength(1)

    const plain = await startChat(stack, user, {}, '/api/agents/chat')
    expect(plain.status).toBe('started')
    await readStream(stack, user, plain.streamId)
  })

  it('refuses a non-browser User-Agent with an SSE-formatted 200 body and records a non_browser violation', async () => {
    const user = await stack.createUser()
    const before = stack.double.violations.length
    const response = await api(stack, user, '/api/agents/chat/fakellm', {
      method: 'POST',
      json: chatBody(),
      headers: {
        'user-agent': 'langchainjs-openai/1.0.0',
        'x-forwarded-for': '198.51.100.9, 203.0.113.5',
      },
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBeNull()
    expect(await response.text()).toBe('event: error\ndata: {"message":"Illegal request"}\n\n')
    expect(stack.double.violations.slice(before)).toEqual([
      { type: 'non_browser', userId: user.id, ip: '203.0.113.5' },
    ])
    expect(stack.provider.calls).toHaveLength(0)
  })

  it.each([
    ['curl', 'curl/8.5.0'],
    ['node fetch', 'node'],
    ['no User-Agent', ''],
    ['a Mozilla prefix without a browser', 'Mozilla/5.0 (compatible; SomeBot/1.0)'],
  ])('treats %s as non-browser on every browser-only router', async (_label, userAgent) => {
    const user = await stack.createUser()
    for (const path of ['/api/agents', '/api/files', '/api/assistants', '/api/permissions/agent']) {
      const response = await api(stack, user, path, { headers: { 'user-agent': userAgent } })
      expect(response.status).toBe(200)
      expect(await response.text()).toBe('event: error\ndata: {"message":"Illegal request"}\n\n')
    }
    const models = await api(stack, user, '/api/models', { headers: { 'user-agent': userAgent } })
    expect(models.status).toBe(200)
    expect(stack.double.violations.at(-1)).toEqual({
      type: 'non_browser',
      userId: user.id,
      ip: '127.0.0.1',
    })
  })

  it('answers 429 JSON to a third concurrent chat of the same user, but not to another user', async () => {
    const user = await stack.createUser()
    const other = await stack.createUser()
    const hold = gate()
    stack.provider.behave({ beforeChunk: () => hold.opened })
    const first = await startChat(stack, user)
    const second = await startChat(stack, user)
    const third = await api(stack, user, '/api/agents/chat/fakellm', {
      method: 'POST',
      json: chatBody(),
    })
    expect(third.status).toBe(429)
    expect(await third.json()).toEqual({ type: 'concurrent', limit: 2, pendingRequests: 3 })
    const unrelated = await startChat(stack, other)
    hold.open()
    await Promise.all([
      readStream(stack, user, first.streamId),
      readStream(stack, user, second.streamId),
      readStream(stack, other, unrelated.streamId),
    ])
    await waitUntil(() => stack.provider.calls.every((call) => call.outcome !== 'in-progress'))
    const again = await startChat(stack, user)
    expect(again.status).toBe('started')
    await readStream(stack, user, again.streamId)
  })

  it('refuses a custom endpoint without endpointType "custom", or an unknown endpoint, with an SSE error body', async () => {
    const user = await stack.createUser()
    for (const overrides of [
      { endpointType: undefined },
      { endpoint: 'nosuch', endpointType: undefined },
      { endpoint: undefined },
    ]) {
      const response = await api(stack, user, '/api/agents/chat/fakellm', {
        method: 'POST',
        json: chatBody(overrides),
      })
      expect(response.status).toBe(200)
      expect(await response.text()).toBe(
        'event: error\ndata: {"text":"Error parsing conversation"}\n\n',
      )
    }
    expect(stack.provider.calls).toHaveLength(0)
  })

  it('records an illegal_model_request violation for a model the endpoint does not list, and streams an error', async () => {
    const user = await stack.createUser()
    const before = stack.double.violations.length
    const started = await startChat(stack, user, { model: 'fake-unlisted' })
    const frames = await readStream(stack, user, started.streamId)
    expect(frames).toEqual([
      { event: 'error', data: { error: 'Illegal model request: fake-unlisted' } },
    ])
    expect(stack.double.violations.slice(before)).toEqual([
      { type: 'illegal_model_request', userId: user.id, ip: '127.0.0.1' },
    ])
    expect(stack.provider.calls).toHaveLength(0)
  })

  it('streams an error frame when the endpoint is not configured', async () => {
    const user = await stack.createUser()
    const started = await startChat(stack, user, { endpoint: 'elsewhere', endpointType: 'custom' })
    expect(await readStream(stack, user, started.streamId)).toEqual([
      { event: 'error', data: { error: 'Config not found for the elsewhere custom endpoint.' } },
    ])
  })

  it("refuses to continue another user's conversation", async () => {
    const owner = await stack.createUser()
    const intruder = await stack.createUser()
    const started = await startChat(stack, owner)
    await readStream(stack, owner, started.streamId)
    const calls = stack.provider.calls.length
    const response = await api(stack, intruder, '/api/agents/chat/fakellm', {
      method: 'POST',
      json: chatBody({ conversationId: started.conversationId }),
    })
    expect(response.status).toBe(200)
    const body = await response.text()
    expect(body.startsWith('event: error\ndata: ')).toBe(true)
    expect(JSON.parse(body.slice('event: error\ndata: '.length))).toMatchObject({
      error: true,
      final: true,
      text: '{"type":"convo_access"}',
    })
    expect(stack.provider.calls).toHaveLength(calls)
  })
})

describe('librechat-api.md §9: GET /api/agents/chat/stream/:id ⇒ event: message frames', () => {
  it('sends created, on_context_usage, title, on_run_step, a delta per provider chunk, on_token_usage, final (§10b order)', async () => {
    const user = await stack.createUser()
    stack.provider.behave({
      usage: 'always',
      reply: (request) => (request.stream ? 'Streaming answer in five' : 'Greeting Title'),
    })
    const started = await startChat(stack, user, { text: 'Hello there friend' })
    const response = await api(stack, user, `/api/agents/chat/stream/${started.streamId}`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    expect(response.headers.get('cache-control')).toBe('no-cache, no-transform')
    expect(response.headers.get('x-accel-buffering')).toBe('no')
    const frames = await frameReader(response).rest()
    expect(frames.every((frame) => frame.event === 'message')).toBe(true)
    expect(frames.map(kindOf)).toEqual([
      'created',
      'on_context_usage',
      'title',
      'on_run_step',
      'on_message_delta',
      'on_message_delta',
      'on_message_delta',
      'on_message_delta',
      'on_token_usage',
      'final',
    ])
    const [created, , title, runStep] = frames as [Frame, Frame, Frame, Frame]
    expect(created.data).toMatchObject({
      created: true,
      streamId: started.streamId,
      message: {
        parentMessageId: '00000000-0000-0000-0000-000000000000',
        conversationId: started.conversationId,
        sender: 'User',
        text: 'Hello there friend',
        isCreatedByUser: true,
      },
    })
    expect(title.data).toEqual({
      event: 'title',
      data: { conversationId: started.conversationId, title: 'Greeting Title' },
    })
    expect(runStep.data.data).toMatchObject({
      type: 'message_creation',
      stepDetails: { type: 'message_creation' },
    })
    expect(text(frames)).toBe('Streaming answer in five')
    const deltas = frames.filter((frame) => kindOf(frame) === 'on_message_delta')
    expect(deltas.map((frame) => frame.data.data?.delta?.content[0]?.text)).toEqual(
      splitIntoTokens('Streaming answer in five'),
    )
    expect(deltas.every((frame) => frame.data.data?.id === runStep.data.data?.id)).toBe(true)

    const chatCall = chatCalls()[0]
    expect(frames[8]?.data.data).toMatchObject({
      input_tokens: chatCall?.promptTokens,
      output_tokens: 4,
      total_tokens: (chatCall?.promptTokens ?? 0) + 4,
      model: 'fake-small',
      provider: 'openAI',
      seq: 1,
    })
    const final = frames.at(-1)?.data
    expect(final).toMatchObject({
      final: true,
      title: 'Greeting Title',
      conversation: {
        conversationId: started.conversationId,
        title: 'Greeting Title',
        endpoint: 'fakellm',
        model: 'fake-small',
      },
      requestMessage: { messageId: created.data.message?.messageId, text: 'Hello there friend' },
      responseMessage: {
        parentMessageId: created.data.message?.messageId,
        conversationId: started.conversationId,
        isCreatedByUser: false,
        endpoint: 'fakellm',
        model: 'fake-small',
        text: '',
        content: [{ type: 'text', text: 'Streaming answer in five' }],
        tokenCount: 4,
        unfinished: false,
        error: false,
        metadata: {
          usage: { input: chatCall?.promptTokens, output: 4, cacheWrite: 0, cacheRead: 0 },
        },
      },
    })
    expect(final).not.toHaveProperty('aborted')
  })

  it('gives responseMessage.tokenCount as an estimate and no on_token_usage when the provider reports no usage', async () => {
    const user = await stack.createUser()
    stack.provider.behave({ reply: 'twelve characters!' })
    const started = await startChat(stack, user)
    const frames = await readStream(stack, user, started.streamId)
    expect(frames.map(kindOf)).not.toContain('on_token_usage')
    const response = frames.at(-1)?.data.responseMessage as MessageShape
    expect(response.tokenCount).toBe(Math.ceil('twelve characters!'.length / 4))
    expect(response).not.toHaveProperty('metadata')
  })

  it('buffers the frames emitted before the first subscriber and replays them to it', async () => {
    const user = await stack.createUser()
    const hold = gate()
    stack.provider.behave({
      reply: 'held back answer',
      beforeChunk: (index) => (index === 2 ? hold.opened : Promise.resolve()),
    })
    const started = await startChat(stack, user)
    await waitUntil(() => chatCalls()[0]?.chunksSent === 2)
    const response = await api(stack, user, `/api/agents/chat/stream/${started.streamId}`)
    const reader = frameReader(response)
    const early: string[] = []
    for (let index = 0; index < 6; index += 1) early.push(kindOf((await reader.next()) as Frame))
    expect(early).toEqual([
      'created',
      'on_context_usage',
      'title',
      'on_run_step',
      'on_message_delta',
      'on_message_delta',
    ])
    hold.open()
    const rest = await reader.rest()
    expect(rest.map(kindOf)).toEqual(['on_message_delta', 'final'])
    expect(text(rest)).toBe(' answer')
  })

  it('drops a finished stream at once once it was watched (§10: subscribe at once), else after firstSubscriberGraceMs', async () => {
    const user = await stack.createUser()
    const watched = await startChat(stack, user)
    await readStream(stack, user, watched.streamId)
    await waitForJobEnd(stack, user, watched.conversationId)
    const again = await api(stack, user, `/api/agents/chat/stream/${watched.streamId}`)
    expect(again.status).toBe(404)
    expect(await again.json()).toEqual({ error: 'Stream not found' })

    const quick = await startStack({ firstSubscriberGraceMs: 150 })
    try {
      const owner = await quick.createUser()
      const unwatched = await startChat(quick, owner)
      await waitForJobEnd(quick, owner, unwatched.conversationId)
      const replayed = await readStream(quick, owner, unwatched.streamId)
      expect(replayed.map(kindOf)).toEqual([
        'created',
        'on_context_usage',
        'on_run_step',
        ...splitIntoTokens(DEFAULT_REPLY).map(() => 'on_message_delta'),
        'final',
      ])
      const late = await startChat(quick, owner)
      await waitForJobEnd(quick, owner, late.conversationId)
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect((await api(quick, owner, `/api/agents/chat/stream/${late.streamId}`)).status).toBe(404)
    } finally {
      await quick.close()
    }
  })

  it('answers 404 for an unknown stream and 403 for another user’s stream', async () => {
    const owner = await stack.createUser()
    const other = await stack.createUser()
    const hold = gate()
    stack.provider.behave({ beforeChunk: () => hold.opened })
    const started = await startChat(stack, owner)
    const foreign = await api(stack, other, `/api/agents/chat/stream/${started.streamId}`)
    expect(foreign.status).toBe(403)
    expect(await foreign.json()).toEqual({ error: 'Unauthorized' })
    const unknown = await api(
      stack,
      owner,
      '/api/agents/chat/stream/00000000-1111-2222-3333-444444444444',
    )
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toEqual({ error: 'Stream not found' })
    hold.open()
    await readStream(stack, owner, started.streamId)
  })

  it('adds a sync frame with the resume state on ?resume=true', async () => {
    const user = await stack.createUser()
    const hold = gate()
    stack.provider.behave({
      reply: 'one two three',
      beforeChunk: (index) => (index === 1 ? hold.opened : Promise.resolve()),
    })
    const started = await startChat(stack, user)
    const first = frameReader(await api(stack, user, `/api/agents/chat/stream/${started.streamId}`))
    for (let index = 0; index < 5; index += 1) await first.next()
    await first.cancel()
    const resumed = frameReader(
      await api(stack, user, `/api/agents/chat/stream/${started.streamId}?resume=true`),
    )
    const sync = (await resumed.next()) as Frame
    expect(sync.data).toMatchObject({
      sync: true,
      resumeState: {
        conversationId: started.conversationId,
        aggregatedContent: [{ type: 'text', text: 'one' }],
      },
      pendingEvents: [],
    })
    expect(sync.data.resumeState?.userMessage.text).toBe('Hello there')
    hold.open()
    const rest = await resumed.rest()
    expect(rest.map(kindOf)).toEqual(['on_message_delta', 'on_message_delta', 'final'])
  })

  it('keeps a finished stream subscribable for keepCompletedStreamsMs, then drops it', async () => {
    const keeping = await startStack({ keepCompletedStreamsMs: 300, firstSubscriberGraceMs: 0 })
    try {
      const user = await keeping.createUser()
      const started = await startChat(keeping, user)
      const live = await readStream(keeping, user, started.streamId)
      const afterwards = await readStream(keeping, user, started.streamId)
      expect(afterwards).toEqual([live.at(-1)])
      await new Promise((resolve) => setTimeout(resolve, 350))
      const gone = await api(keeping, user, `/api/agents/chat/stream/${started.streamId}`)
      expect(gone.status).toBe(404)
    } finally {
      await keeping.close()
    }
  })

  it('streams an error frame when the provider fails', async () => {
    const user = await stack.createUser()
    stack.provider.behave({ failWith: { status: 500, message: 'upstream exploded' } })
    const started = await startChat(stack, user)
    const frames = await readStream(stack, user, started.streamId)
    expect(frames.map(kindOf)).toEqual(['created', 'on_context_usage', 'error'])
    expect(frames.at(-1)?.data).toEqual({ error: '500 upstream exploded' })
  })

  it('stops writing to a subscriber whose socket is full and resumes on drain (backpressure)', async () => {
    const user = await stack.createUser()
    const word = 'x'.repeat(32 * 1024)
    const words = 300
    stack.provider.behave({
      reply: (request) =>
        request.stream ? Array.from({ length: words }, () => word).join(' ') : 'Big',
    })
    const started = await startChat(stack, user)
    const url = new URL(`${stack.double.url}/api/agents/chat/stream/${started.streamId}`)
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = httpRequest(url, {
        headers: { authorization: `Bearer ${user.token}`, 'user-agent': BROWSER_UA },
      })
      request.on('response', resolve).on('error', reject).end()
    })
    expect(response.statusCode).toBe(200)
    response.pause()
    await waitUntil(
      () => stack.double.streamStats(started.streamId)?.waitingForDrain === true,
      5000,
    )
    const stalled = stack.double.streamStats(started.streamId)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(stack.double.streamStats(started.streamId)?.framesWritten).toBe(stalled?.framesWritten)
    expect(stalled?.subscribers).toBe(1)
    expect(stalled?.framesWritten).toBeLessThan(words)

    let received = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => {
      received += chunk
    })
    response.resume()
    await new Promise((resolve) => response.on('end', resolve))
    const done = stack.double.streamStats(started.streamId)
    expect(done?.drainWaits).toBeGreaterThanOrEqual(1)
    expect(done?.waitingForDrain).toBe(false)
    expect(done?.subscribers).toBe(0)
    expect(done?.bytesWritten).toBe(Buffer.byteLength(received))
    const frames = received.split('\n\n').filter((frame) => frame !== '')
    expect(done?.framesWritten).toBe(frames.length)
    expect(frames.filter((frame) => frame.includes('"on_message_delta"'))).toHaveLength(words)
  })
})

describe('librechat-api.md §9: POST /api/agents/chat/abort ⇒ {"success":true,"aborted":id} and a final frame with aborted:true', () => {
  it('aborts by streamId: the provider connection closes and the stream ends with an unfinished final (§10b)', async () => {
    const user = await stack.createUser()
    const hold = gate()
    stack.provider.behave({
      usage: 'always',
      reply: 'a b c d',
      beforeChunk: (index) => (index === 2 ? hold.opened : Promise.resolve()),
    })
    const started = await startChat(stack, user)
    const reader = frameReader(
      await api(stack, user, `/api/agents/chat/stream/${started.streamId}`),
    )
    await waitUntil(() => chatCalls()[0]?.chunksSent === 2)
    const abort = await api(stack, user, '/api/agents/chat/abort', {
      method: 'POST',
      json: { streamId: started.streamId, conversationId: started.conversationId },
    })
    expect(abort.status).toBe(200)
    expect(await abort.json()).toEqual({ success: true, aborted: started.streamId })
    const frames = await reader.rest()
    expect(frames.map(kindOf)).not.toContain('on_token_usage')
    const final = frames.at(-1)?.data
    expect(final).toMatchObject({
      final: true,
      aborted: true,
      responseMessage: { unfinished: true, content: [{ type: 'text', text: 'a b' }] },
    })
    expect(final?.responseMessage).not.toHaveProperty('tokenCount')
    await waitUntil(() => chatCalls()[0]?.outcome === 'client-closed')
    expect(chatCalls()[0]?.chunksSent).toBe(2)
    expect(stack.double.aborts.at(-1)).toEqual({
      userId: user.id,
      streamId: started.streamId,
      conversationId: started.conversationId,
    })
    hold.open()
    const saved = (await (
      await api(stack, user, `/api/messages/${started.conversationId}`)
    ).json()) as MessageShape[]
    expect(saved.map((message) => message.unfinished)).toEqual([false, true])
  })

  it("aborts the user's latest active job when no id matches — never another user's", async () => {
    const user = await stack.createUser()
    const other = await stack.createUser()
    const hold = gate()
    stack.provider.behave({ beforeChunk: () => hold.opened })
    const theirs = await startChat(stack, other)
    const older = await startChat(stack, user)
    await new Promise((resolve) => setTimeout(resolve, 5))
    const newer = await startChat(stack, user)
    const abort = await api(stack, user, '/api/agents/chat/abort', {
      method: 'POST',
      json: { streamId: theirs.streamId },
    })
    expect(await abort.json()).toEqual({ success: true, aborted: newer.streamId })
    const active = await api(stack, user, '/api/agents/chat/active')
    expect(await active.json()).toEqual({ activeJobIds: [older.streamId] })
    const status = await api(stack, user, `/api/agents/chat/status/${older.conversationId}`)
    expect(await status.json()).toMatchObject({
      active: true,
      streamId: older.streamId,
      status: 'running',
    })
    const foreignStatus = await api(stack, user, `/api/agents/chat/status/${theirs.conversationId}`)
    expect(foreignStatus.status).toBe(403)
    hold.open()
    await Promise.all([
      readStream(stack, other, theirs.streamId),
      readStream(stack, user, older.streamId),
    ])
    expect(
      await (await api(stack, user, `/api/agents/chat/status/${older.conversationId}`)).json(),
    ).toEqual({ active: false })
  })

  it('answers 404 {"error":"Job not found"} when nothing is active, with or without a body', async () => {
    const user = await stack.createUser()
    const response = await api(stack, user, '/api/agents/chat/abort', {
      method: 'POST',
      json: { streamId: 'nope' },
    })
    expect(response.status).toBe(404)
    expect(await response.json()).toEqual({ error: 'Job not found' })
    const bodiless = await api(stack, user, '/api/agents/chat/abort', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    })
    expect(bodiless.status).toBe(404)
    expect(stack.double.aborts.at(-1)).toEqual({ userId: user.id })
  })

  it('keeps generating when the subscriber closes without an abort (§10b)', async () => {
    const user = await stack.createUser()
    stack.provider.behave({ reply: 'a b c d e', chunkDelayMs: 15 })
    const started = await startChat(stack, user)
    const reader = frameReader(
      await api(stack, user, `/api/agents/chat/stream/${started.streamId}`),
    )
    await reader.next()
    await reader.cancel()
    await waitForJobEnd(stack, user, started.conversationId)
    expect(chatCalls()[0]).toMatchObject({ outcome: 'completed', chunksSent: 5 })
    expect(stack.double.aborts.some((record) => record.userId === user.id)).toBe(false)
    const messages = (await (
      await api(stack, user, `/api/messages/${started.conversationId}`)
    ).json()) as MessageShape[]
    expect(messages.map((message) => message.content ?? message.text)).toEqual([
      'Hello there',
      [{ type: 'text', text: 'a b c d e' }],
    ])
    expect(messages[1]).toMatchObject({ unfinished: false, error: false })
  })
})

describe('librechat-api.md §10: what reaches the custom endpoint (the provider)', () => {
  it('sends resolved headers, the endpoint key, LangChain’s User-Agent, user = LibreChat id, stream:true and no stream_options', async () => {
    const user = await stack.createUser()
    const started = await startChat(stack, user)
    await readStream(stack, user, started.streamId)
    const call = chatCalls()[0]
    expect(call?.headers).toMatchObject({
      authorization: `Bearer ${PROVIDER_KEY}`,
      'user-agent': 'langchainjs-openai/1.0.0',
      'x-lc-user': user.id,
      'x-lc-email': user.email,
      'x-lc-convo': started.conversationId,
      'x-stainless-lang': 'js',
    })
    expect(call?.body).toEqual({
      model: 'fake-small',
      messages: [{ role: 'user', content: 'Hello there' }],
      stream: true,
      user: user.id,
    })
    expect(call?.includeUsage).toBe(false)
  })

  it('sends a non-streaming title request just before the chat request on a first turn only', async () => {
    const user = await stack.createUser()
    const started = await startChat(stack, user, { text: 'Plan a trip' })
    const firstTurn = await readStream(stack, user, started.streamId)
    const titles = titleCalls()
    expect(titles).toHaveLength(1)
    expect(stack.provider.calls.indexOf(titles[0] as (typeof titles)[0])).toBe(0)
    expect(titles[0]?.headers['x-lc-user']).toBe(user.id)
    expect(titles[0]?.body).toMatchObject({ model: 'fake-small', stream: false, user: user.id })
    expect(JSON.stringify(titles[0]?.body)).toContain('Plan a trip')

    const response = firstTurn.at(-1)?.data.responseMessage as MessageShape
    const followUp = await startChat(stack, user, {
      text: 'And the budget?',
      conversationId: started.conversationId,
      parentMessageId: response.messageId,
    })
    await readStream(stack, user, followUp.streamId)
    expect(titleCalls()).toHaveLength(1)
  })

  it('sends the full history on follow-up turns', async () => {
    const user = await stack.createUser()
    stack.provider.behave({ reply: (request) => `Answer ${request.messages.length}` })
    const first = await startChat(stack, user, { text: 'First question' })
    const firstFrames = await readStream(stack, user, first.streamId)
    const firstResponse = firstFrames.at(-1)?.data.responseMessage as MessageShape
    const second = await startChat(stack, user, {
      text: 'Second question',
      conversationId: first.conversationId,
      parentMessageId: firstResponse.messageId,
    })
    expect(second.streamId).toBe(first.streamId)
    await readStream(stack, user, second.streamId)
    const messages = [
      { role: 'user', content: 'First question' },
      { role: 'assistant', content: 'Answer 1' },
      { role: 'user', content: 'Second question' },
    ]
    expect(chatCalls()[1]?.body).toMatchObject({ messages })
    expect(chatCalls()[1]?.promptTokens).toBe(countPromptTokens(messages as ChatMessage[]))
  })
})
