import type { Socket } from 'node:net'
import { splitIntoTokens } from '@platform/fake-provider'
import { describe, expect, it, onTestFinished } from 'vitest'
import {
  type ChatPlatform,
  type ChatPlatformOptions,
  libreChatUserHeaders,
  startChatPlatform,
} from '../helpers/chat-platform.js'
import { bearer } from '../helpers/platform.js'
import {
  type ChatFrame,
  chatBody,
  deltaText,
  fetchStream,
  frameReader,
  framesOf,
  gate,
  holdAfterFirstChunk,
  kindOf,
  openRawStream,
  postChat,
  type RawStream,
  readToEnd,
  sleep,
  startChat,
  waitFor,
  within,
} from '../helpers/stream-client.js'

/** Short, so abandonment is observable in a test; long enough for a reconnect to beat it. */
const GRACE_MS = 500

const REPLY = 'Streams pass through the gateway one frame at a time, in order.'

/** The whole chat path with a member allowed the fake provider's models. */
async function chatPlatform(options: ChatPlatformOptions = {}) {
  const chat = await startChatPlatform({
    ...options,
    gatewayEnv: { STREAM_ABANDON_GRACE_MS: String(GRACE_MS), ...options.gatewayEnv },
  })
  const { token } = await chat.member('streamer')
  return { chat, token }
}

/** The member's LibreChat user id, as LibreChat itself reports it. */
async function libreChatUserId(chat: ChatPlatform, token: string) {
  const response = await fetch(`${chat.gatewayUrl}/api/user`, { headers: bearer(token) })
  return ((await response.json()) as { id: string }).id
}

/** A chat whose model holds after its first token, read through the gateway up to that token. */
async function chatHeldAtFirstToken(chat: ChatPlatform, token: string, signal?: AbortSignal) {
  const hold = holdAfterFirstChunk(chat.provider, REPLY)
  const started = await startChat(chat.gatewayUrl, token)
  const reader = frameReader(
    await fetchStream(chat.gatewayUrl, token, started.streamId, signal ? { signal } : {}),
  )
  const before = await reader.until((frame) => kindOf(frame) === 'on_message_delta')
  return { hold, started, reader, before }
}

const UPSTREAM_UNAVAILABLE = {
  statusCode: 503,
  code: 'GW_UPSTREAM_UNAVAILABLE',
  error: 'Service Unavailable',
  message: expect.any(String),
}

const textOf = (frames: ChatFrame[]) => frames.map(deltaText).join('')
const streamingCalls = (chat: ChatPlatform) => chat.provider.calls.filter((call) => call.stream)
/** What the gateway asked LibreChat about a stream it took for abandoned: its status, an abort. */
const watchRequests = (chat: ChatPlatform, streamId: string) =>
  chat.libreChat.requests.filter(
    (request) =>
      request.url === '/api/agents/chat/abort' ||
      request.url === `/api/agents/chat/status/${streamId}`,
  )

describe('LibreChat chat streams through the gateway', () => {
  it('passes every frame of a chat through in order, the final frame last, from one provider call', async () => {
    const { chat, token } = await chatPlatform()
    chat.provider.behave({ reply: REPLY })
    const started = await startChat(chat.gatewayUrl, token, { text: 'Say it' })
    expect(started).toEqual({
      streamId: started.conversationId,
      conversationId: started.conversationId,
      status: 'started',
    })

    const response = await fetchStream(chat.gatewayUrl, token, started.streamId)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const body = await within(10_000, 'the whole stream', response.text())
    const frames = await framesOf(body)

    const tokens = splitIntoTokens(REPLY)
    expect(frames.map(kindOf)).toEqual([
      'created',
      'on_context_usage',
      'on_run_step',
      ...tokens.map(() => 'on_message_delta'),
      'final',
    ])
    expect(frames.filter((frame) => kindOf(frame) === 'on_message_delta').map(deltaText)).toEqual(
      tokens,
    )
    expect(body.endsWith('\n\n')).toBe(true)
    const final = frames.at(-1)?.data
    expect(final?.responseMessage).toMatchObject({
      unfinished: false,
      content: [{ type: 'text', text: REPLY }],
    })
    expect(final?.aborted).toBeUndefined()
    // Byte for byte what LibreChat wrote: nothing added, nothing held back, nothing after the final.
    const stats = chat.libreChat.streamStats(started.streamId)
    expect(stats?.framesWritten).toBe(frames.length)
    expect(stats?.bytesWritten).toBe(Buffer.byteLength(body))

    expect(streamingCalls(chat)).toHaveLength(1)
    expect(streamingCalls(chat)[0]).toMatchObject({
      outcome: 'completed',
      chunksSent: tokens.length,
    })
    expect(chat.provider.calls).toHaveLength(1)
  })

  it('flushes each frame at once: the provider sends chunk n+1 only after the client read chunk n', async () => {
    const { chat, token } = await chatPlatform()
    const tokens = splitIntoTokens(REPLY)
    const received = tokens.map(() => gate())
    chat.provider.behave({
      reply: REPLY,
      beforeChunk: (index) => received[index - 1]?.opened ?? Promise.resolve(),
    })
    const started = await startChat(chat.gatewayUrl, token)
    const reader = frameReader(await fetchStream(chat.gatewayUrl, token, started.streamId))

    const sentWhenReceived: number[] = []
    for (const [index, expected] of tokens.entries()) {
      // Chunk index+1 cannot exist before this frame is read, so a gateway that buffered would
      // never deliver it: the read times out instead.
      const [delta] = (
        await reader.until((frame) => kindOf(frame) === 'on_message_delta', 3000)
      ).slice(-1)
      expect(delta && deltaText(delta)).toBe(expected)
      sentWhenReceived.push(streamingCalls(chat)[0]?.chunksSent ?? -1)
      received[index]?.open()
    }
    // When the client held chunk n, the provider had sent exactly n+1 chunks: nothing more existed.
    expect(sentWhenReceived).toEqual(tokens.map((_token, index) => index + 1))
    const rest = await reader.rest()
    expect(rest.map(kindOf)).toEqual(['final'])
  })

  it('stops reading LibreChat while its client does not read, then delivers everything intact', async () => {
    const { chat, token } = await chatPlatform()
    // ~15 MB of deltas: more than the buffers between LibreChat and the client hold (9–11 MB
    // here, kernel socket buffers of both hops mostly), less than the 16 MB MongoDB document
    // LibreChat saves the answer in.
    const word = 'x'.repeat(32 * 1024)
    const words = 450
    const reply = Array.from({ length: words }, () => word).join(' ')
    chat.provider.behave({ reply })
    const started = await startChat(chat.gatewayUrl, token)
    const accepted: Socket[] = []
    const collect = (socket: Socket) => accepted.push(socket)
    chat.gateway.server.on('connection', collect)
    const { request, response } = await openRawStream(
      chat.gatewayUrl,
      token,
      `/api/agents/chat/stream/${started.streamId}`,
    )
    chat.gateway.server.off('connection', collect)
    expect(response.statusCode).toBe(200)
    const gatewaySide = accepted.find((socket) => socket.remotePort === request.socket?.localPort)
    expect(gatewaySide).toBeDefined()

    // LibreChat waiting for a drain means its socket to the gateway is full: the gateway has
    // stopped reading it. Kernel buffers keep growing for a while after the first full write,
    // so wait until LibreChat waits and writes nothing more.
    const stats = () => chat.libreChat.streamStats(started.streamId)
    await waitFor(
      'LibreChat waiting on a full pipe',
      async () => {
        const before = stats()?.framesWritten
        await sleep(200)
        return stats()?.waitingForDrain === true && stats()?.framesWritten === before
      },
      20_000,
    )
    const stalled = stats()
    await sleep(500)
    expect(stats()?.framesWritten).toBe(stalled?.framesWritten)
    expect(stats()?.waitingForDrain).toBe(true)
    expect(stalled?.subscribers).toBe(1)
    expect(stalled?.bytesWritten ?? Number.POSITIVE_INFINITY).toBeLessThan(reply.length)
    // Nor does the gateway pile the reply up in front of its client: what waits in its own
    // write buffer is a stream's high-water mark, not the reply.
    expect(gatewaySide?.writableLength ?? Number.POSITIVE_INFINITY).toBeLessThan(1024 * 1024)

    const body = await within(30_000, 'the rest of the stream', readToEnd(response))
    const frames = await framesOf(body)
    expect(frames.map(kindOf).at(-1)).toBe('final')
    expect(textOf(frames)).toBe(reply)
    const done = stats()
    expect(done?.drainWaits).toBeGreaterThanOrEqual(1)
    expect(done?.bytesWritten).toBe(Buffer.byteLength(body))
    expect(done?.framesWritten).toBe(frames.length)
  })

  it('keeps the generation when its client reconnects within the grace period', async () => {
    const { chat, token } = await chatPlatform()
    const tokens = splitIntoTokens(REPLY)
    const first = new AbortController()
    const { hold, started, before } = await chatHeldAtFirstToken(chat, token, first.signal)
    expect(textOf(before)).toBe(tokens[0])
    first.abort()
    await waitFor(
      'the gateway releasing its LibreChat stream',
      () => chat.libreChat.streamStats(started.streamId)?.subscribers === 0,
    )

    const again = await fetchStream(chat.gatewayUrl, token, started.streamId, {
      query: '?resume=true',
    })
    expect(again.status).toBe(200)
    const reader = frameReader(again)
    const [sync] = await reader.until((frame) => kindOf(frame) === 'sync')
    expect(sync?.data.resumeState?.aggregatedContent).toEqual([{ type: 'text', text: tokens[0] }])
    // The first subscription's grace runs out while the second is open: no abort may come of it.
    await sleep(GRACE_MS + 300)
    expect(chat.libreChat.aborts).toEqual([])
    expect(streamingCalls(chat)[0]).toMatchObject({ outcome: 'in-progress', chunksSent: 1 })

    hold.open()
    const rest = await reader.rest()
    expect(rest.map(kindOf).at(-1)).toBe('final')
    expect(textOf(rest)).toBe(tokens.slice(1).join(''))
    const final = rest.at(-1)?.data
    expect(final?.aborted).toBeUndefined()
    expect(final?.responseMessage).toMatchObject({
      unfinished: false,
      content: [{ type: 'text', text: REPLY }],
    })
    expect(streamingCalls(chat)[0]?.outcome).toBe('completed')
    await sleep(GRACE_MS)
    expect(chat.libreChat.aborts).toEqual([])
  })

  it('aborts an abandoned generation by its stream id once the grace period has passed', async () => {
    const { chat, token } = await chatPlatform()
    const userId = await libreChatUserId(chat, token)
    const client = new AbortController()
    const { started } = await chatHeldAtFirstToken(chat, token, client.signal)
    client.abort()
    const leftAt = Date.now()

    await sleep(GRACE_MS / 2)
    expect(chat.libreChat.aborts).toEqual([])
    await waitFor('an abort of the abandoned generation', () => chat.libreChat.aborts.length > 0)
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(GRACE_MS)
    expect(chat.libreChat.aborts).toHaveLength(1)
    expect(chat.libreChat.aborts[0]).toMatchObject({ userId, streamId: started.streamId })

    await waitFor(
      'the provider call ending',
      () => streamingCalls(chat)[0]?.outcome === 'client-closed',
    )
    expect(streamingCalls(chat)[0]?.chunksSent).toBe(1)
    // LibreChat's own word that the generation is over, once it has saved what it had.
    await waitFor('the generation ending', async () => {
      const status = await fetch(
        `${chat.gatewayUrl}/api/agents/chat/status/${started.conversationId}`,
        { headers: bearer(token) },
      )
      return ((await status.json()) as { active: boolean }).active === false
    })
    await sleep(GRACE_MS)
    expect(chat.libreChat.aborts).toHaveLength(1)
  })

  it('never takes a reader that got the final frame and left for an abandoned one', async () => {
    const { chat, token } = await chatPlatform()
    chat.provider.behave({ reply: REPLY })
    const started = await startChat(chat.gatewayUrl, token)
    const client = new AbortController()
    const reader = frameReader(
      await fetchStream(chat.gatewayUrl, token, started.streamId, { signal: client.signal }),
    )
    const frames = await reader.until((frame) => kindOf(frame) === 'final')
    // Leaves at once, maybe before LibreChat has ended the body.
    client.abort()
    expect(textOf(frames)).toBe(REPLY)

    await sleep(GRACE_MS + 400)
    expect(chat.libreChat.aborts).toEqual([])
    // Not even looked into: a stream left before its final frame has its status checked before
    // any abort (ARCHITECTURE §6); this one was finished, so the gateway asks nothing about it.
    expect(watchRequests(chat, started.streamId)).toEqual([])
  })

  it('aborts a started generation that nobody subscribes to within the grace period', async () => {
    const { chat, token } = await chatPlatform()
    const hold = gate()
    onTestFinished(hold.open)
    chat.provider.behave({ reply: REPLY, beforeChunk: () => hold.opened })
    const startedAt = Date.now()
    const started = await startChat(chat.gatewayUrl, token)

    await waitFor('an abort of the unread generation', () => chat.libreChat.aborts.length > 0)
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(GRACE_MS)
    expect(chat.libreChat.aborts).toEqual([expect.objectContaining({ streamId: started.streamId })])
    await waitFor(
      'the provider call ending',
      () => streamingCalls(chat)[0]?.outcome === 'client-closed',
    )
  })

  // The check after a chat starts stands down when the stream's subscriber count exists in Redis
  // (stream-watch.ts, `settle(…, afterStart)`: `count !== null`). The stream id is the
  // conversation id, and the count a first turn's reader left behind lives for an hour: so no
  // later turn of that conversation is ever aborted for want of a reader.
  it('aborts a later turn of a conversation that nobody subscribes to, as it does a first one', async () => {
    const { chat, token } = await chatPlatform()
    chat.provider.behave({ reply: REPLY })
    const first = await startChat(chat.gatewayUrl, token)
    const frames = await frameReader(
      await fetchStream(chat.gatewayUrl, token, first.streamId),
    ).rest()
    const responseMessageId = frames.at(-1)?.data.responseMessage?.messageId
    expect(responseMessageId).toEqual(expect.any(String))

    const hold = gate()
    onTestFinished(hold.open)
    chat.provider.behave({ beforeChunk: () => hold.opened })
    const next = await startChat(chat.gatewayUrl, token, {
      conversationId: first.conversationId,
      parentMessageId: responseMessageId,
    })
    expect(next.streamId).toBe(first.streamId)
    await waitFor(
      'an abort of the unread second turn',
      () => chat.libreChat.aborts.length > 0,
      GRACE_MS + 1500,
    )
    expect(chat.libreChat.aborts).toEqual([expect.objectContaining({ streamId: next.streamId })])
  })

  it('passes v0.8.1’s SSE answer to the chat POST through as it streams', async () => {
    const { chat, token } = await chatPlatform({ version: '0.8.1' })
    const tokens = splitIntoTokens(REPLY)
    const firstRead = gate()
    chat.provider.behave({
      reply: REPLY,
      beforeChunk: (index) => (index === 1 ? firstRead.opened : Promise.resolve()),
    })
    const response = await postChat(
      chat.gatewayUrl,
      token,
      chatBody({ conversationId: null, text: 'Old style' }),
    )
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const reader = frameReader(response)
    // Chunk 2 is sent only after chunk 1 reached the client: the POST's answer is not buffered.
    const head = await reader.until((frame) => kindOf(frame) === 'on_message_delta')
    firstRead.open()
    const frames = [...head, ...(await reader.rest())]

    expect(frames.map(kindOf)).toEqual([
      'created',
      'on_run_step',
      ...tokens.map(() => 'on_message_delta'),
      'final',
    ])
    expect(frames.filter((frame) => kindOf(frame) === 'on_message_delta').map(deltaText)).toEqual(
      tokens,
    )
    const conversationId = frames[0]?.data.message?.conversationId ?? ''
    expect(frames.at(-1)?.data.conversation?.conversationId).toBe(conversationId)
    expect(chat.libreChat.streamStats(conversationId)?.framesWritten).toBe(frames.length)
    expect(streamingCalls(chat)).toHaveLength(1)
    expect(streamingCalls(chat)[0]?.outcome).toBe('completed')
  })

  it('passes LibreChat’s odd answers to proxied calls through untouched and keeps serving', async () => {
    const { chat, token } = await chatPlatform()
    const started = await startChat(chat.gatewayUrl, token)
    await waitFor('the first generation finishing', () =>
      streamingCalls(chat).some((call) => call.outcome === 'completed'),
    )
    const callsBefore = chat.provider.calls.length

    // A chat into another user's conversation: LibreChat denies it with a 200 whose body is an
    // SSE error frame, without an SSE content type.
    const { token: otherToken } = await chat.member('intruder')
    const denied = await postChat(
      chat.gatewayUrl,
      otherToken,
      chatBody({ conversationId: started.conversationId }),
    )
    expect(denied.status).toBe(200)
    expect(denied.headers.get('content-type') ?? '').not.toMatch(/json|event-stream/)
    const deniedText = await denied.text()
    expect(deniedText).toMatch(/^event: error\ndata: \{.*\}\n\n$/)
    expect(JSON.parse(deniedText.slice('event: error\ndata: '.length))).toMatchObject({
      error: true,
      final: true,
      conversationId: started.conversationId,
      text: JSON.stringify({ type: 'convo_access' }),
    })
    expect(chat.provider.calls).toHaveLength(callsBefore)

    // An HTML 404 for an unknown API route, and a plain-text answer of the web UI's server.
    const unknownRoute = await fetch(`${chat.gatewayUrl}/api/no-such-route`, {
      headers: bearer(token),
    })
    expect(unknownRoute.status).toBe(404)
    expect(unknownRoute.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await unknownRoute.text()).toBe('Cannot GET /api/no-such-route')
    const health = await fetch(`${chat.gatewayUrl}/health`)
    expect(health.status).toBe(200)
    expect(health.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await health.text()).toBe('OK')

    expect((await fetch(`${chat.gatewayUrl}/healthz`)).status).toBe(200)
    const convos = await fetch(`${chat.gatewayUrl}/api/convos`, { headers: bearer(otherToken) })
    expect(convos.status).toBe(200)
    const next = await startChat(chat.gatewayUrl, otherToken)
    expect(next.status).toBe('started')
  })

  it('passes a stream that ends on an error frame, and LibreChat’s JSON 404, through; aborts nothing', async () => {
    const { chat, token } = await chatPlatform()
    chat.provider.behave({ failWith: { status: 500, message: 'provider exploded' } })
    const failing = await startChat(chat.gatewayUrl, token)
    const response = await fetchStream(chat.gatewayUrl, token, failing.streamId)
    expect(response.status).toBe(200)
    const failed = await frameReader(response).rest()
    expect(failed.map(kindOf)).toEqual(['created', 'on_context_usage', 'error'])
    expect(failed.at(-1)?.data).toEqual({ error: '500 provider exploded' })

    const unknownStream = await fetchStream(chat.gatewayUrl, token, 'no-such-stream')
    expect(unknownStream.status).toBe(404)
    expect(await unknownStream.json()).toEqual({ error: 'Stream not found' })

    // The failed generation ended by itself: past the grace there is nothing to abort.
    await sleep(GRACE_MS + 300)
    expect(chat.libreChat.aborts).toEqual([])

    chat.provider.behave({ failWith: undefined, reply: REPLY })
    const after = await startChat(chat.gatewayUrl, token)
    const frames = await frameReader(
      await fetchStream(chat.gatewayUrl, token, after.streamId),
    ).rest()
    expect(frames.map(kindOf).at(-1)).toBe('final')
    expect(textOf(frames)).toBe(REPLY)
  })

  it('answers 503 in the platform’s error shape when LibreChat is down', async () => {
    const { chat, token } = await chatPlatform()
    // A first call leaves a pooled connection behind, which the shutdown then breaks.
    const before = await fetch(`${chat.gatewayUrl}/api/convos`, { headers: bearer(token) })
    expect(before.status).toBe(200)
    await chat.libreChat.close()

    const convos = await fetch(`${chat.gatewayUrl}/api/convos`, { headers: bearer(token) })
    expect(convos.status).toBe(503)
    expect(await convos.json()).toEqual(UPSTREAM_UNAVAILABLE)
    const post = await postChat(chat.gatewayUrl, token, chatBody())
    expect([502, 503]).toContain(post.status)
    const body = (await post.json()) as { statusCode: number; code: string; message: string }
    expect(body).toMatchObject({ statusCode: post.status, code: expect.stringMatching(/^GW_/) })
    expect(body.message).toEqual(expect.any(String))
    expect((await fetch(`${chat.gatewayUrl}/healthz`)).status).toBe(200)
  })

  it('answers 503 in the platform’s error shape to a stream when LibreChat is down', async () => {
    const { chat, token } = await chatPlatform()
    await chat.libreChat.close()
    const stream = await fetchStream(chat.gatewayUrl, token, 'any-stream')
    expect(stream.status).toBe(503)
    expect(await stream.json()).toEqual(UPSTREAM_UNAVAILABLE)
  })

  it('ends its open streams when it closes, and leaves their generations for a reconnect', async () => {
    const { chat, token } = await chatPlatform()
    const { hold, started, reader } = await chatHeldAtFirstToken(chat, token)
    const asLibreChatUser = await libreChatUserHeaders(await libreChatUserId(chat, token))

    // The generation is held open: a close that waited for it would never end.
    await chat.gateway.close()
    await expect(reader.rest()).rejects.toThrow()
    await sleep(GRACE_MS + 300)
    expect(chat.libreChat.aborts).toEqual([])

    // The reconnect another replica would relay: the generation resumes and runs to its end.
    const resumed = await fetch(
      `${chat.libreChat.url}/api/agents/chat/stream/${started.streamId}?resume=true`,
      { headers: asLibreChatUser },
    )
    expect(resumed.status).toBe(200)
    const rest = frameReader(resumed)
    hold.open()
    const frames = await rest.rest()
    expect(frames.map(kindOf).at(-1)).toBe('final')
    expect(frames.at(-1)?.data.responseMessage).toMatchObject({
      unfinished: false,
      content: [{ type: 'text', text: REPLY }],
    })
  })

  it('stays responsive with 200 streams open and unread, and releases them when their clients go', async () => {
    // The abandonment watch is not under test here: a long grace keeps 200 aborts out of it.
    const { chat, token } = await chatPlatform({
      gatewayEnv: { STREAM_ABANDON_GRACE_MS: '60000' },
    })
    holdAfterFirstChunk(chat.provider, REPLY)
    // LibreChat runs two generations at a time per user: 100 readers on each. They resume, as a
    // reloaded page does, so each gets a sync frame at once (see the header test below).
    const generations = [
      await startChat(chat.gatewayUrl, token),
      await startChat(chat.gatewayUrl, token),
    ]
    const perGeneration = 100
    const streams: RawStream[] = await within(
      20_000,
      'opening 200 streams',
      Promise.all(
        generations.flatMap((generation) =>
          Array.from({ length: perGeneration }, () =>
            openRawStream(
              chat.gatewayUrl,
              token,
              `/api/agents/chat/stream/${generation.streamId}?resume=true`,
            ),
          ),
        ),
      ),
    )
    expect(streams.map(({ response }) => response.statusCode)).toEqual(
      Array(streams.length).fill(200),
    )
    const subscribers = () =>
      generations.map(
        (generation) => chat.libreChat.streamStats(generation.streamId)?.subscribers ?? -1,
      )
    await waitFor('every stream subscribed at LibreChat', () =>
      subscribers().every((count) => count === perGeneration),
    )

    const askedAt = Date.now()
    const health = await fetch(`${chat.gatewayUrl}/healthz`)
    const healthMs = Date.now() - askedAt
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: 'ok' })
    expect(healthMs).toBeLessThan(1000)
    const convos = await fetch(`${chat.gatewayUrl}/api/convos`, { headers: bearer(token) })
    expect(convos.status).toBe(200)

    for (const { request } of streams) request.destroy()
    await waitFor(
      'LibreChat seeing every subscriber leave',
      () => subscribers().every((count) => count === 0),
      10_000,
    )
    expect(chat.libreChat.aborts).toEqual([])
    expect((await fetch(`${chat.gatewayUrl}/healthz`)).status).toBe(200)
  })

  // Fastify's reply.send(stream) writes the status line and headers with the first body chunk,
  // so a subscriber of a generation that is between frames (a second tab, a reconnect without
  // ?resume=true) waits for headers until the next frame, although LibreChat flushed its own at
  // once (ARCHITECTURE §6: each upstream write reaches the client when it is written).
  it('sends a stream’s headers as soon as LibreChat does, before its next frame', async () => {
    const { chat, token } = await chatPlatform()
    const { hold, started } = await chatHeldAtFirstToken(chat, token)

    const second = await within(
      2000,
      'the second subscriber’s response headers',
      fetchStream(chat.gatewayUrl, token, started.streamId),
    )
    expect(second.status).toBe(200)
    expect(second.headers.get('content-type')).toBe('text/event-stream')
    hold.open()
    const rest = await frameReader(second).rest()
    expect(textOf(rest)).toBe(splitIntoTokens(REPLY).slice(1).join(''))
  })
})
