import { DEFAULT_REPLY, splitIntoTokens } from '@platform/fake-provider'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  api,
  chatBody,
  type Frame,
  frameReader,
  gate,
  kindOf,
  type MessageShape,
  type Stack,
  startStack,
  type TestUser,
  waitUntil,
} from './helpers.js'

let stack: Stack
beforeAll(async () => {
  stack = await startStack(
    { version: '0.8.1', mcpServers: [{ name: 'docs', url: 'http://127.0.0.1:9/mcp' }] },
    { titleConvo: true },
  )
})
afterAll(() => stack.close())
beforeEach(() => stack.provider.reset())

const postChat = (
  user: TestUser,
  overrides: Record<string, unknown> = {},
  init: RequestInit = {},
) =>
  api(stack, user, '/api/agents/chat/fakellm', {
    method: 'POST',
    json: chatBody(overrides),
    ...init,
  })

describe('librechat-api.md §9 optional v0.8.1 mode: SSE on the POST, no abort route, final without tokenCount', () => {
  it('streams on the POST itself: created (no streamId), on_run_step, deltas, final without tokenCount', async () => {
    const user = await stack.createUser()
    stack.provider.behave({ usage: 'always' })
    const response = await postChat(user)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    expect(response.headers.get('cache-control')).toBe('no-cache, no-transform')
    expect(response.headers.get('x-accel-buffering')).toBe('no')
    expect(response.headers.get('access-control-allow-origin')).toBe('*')
    const frames = await frameReader(response).rest()
    expect(frames.map(kindOf)).toEqual([
      'created',
      'on_run_step',
      ...splitIntoTokens(DEFAULT_REPLY).map(() => 'on_message_delta'),
      'final',
    ])
    expect(frames[0]?.data).not.toHaveProperty('streamId')
    const final = frames.at(-1)?.data
    expect(final?.responseMessage).toMatchObject({
      text: '',
      content: [{ type: 'text', text: DEFAULT_REPLY }],
      unfinished: false,
    })
    expect(final?.responseMessage).not.toHaveProperty('tokenCount')
    const conversationId = final?.conversation?.conversationId ?? ''

    // The title is a non-streaming call after the answer, saved on the conversation.
    await waitUntil(() => stack.provider.calls.length === 2)
    expect(stack.provider.calls.map((call) => call.stream)).toEqual([true, false])
    await waitUntil(() => stack.provider.calls[1]?.outcome === 'completed')
    const saved = (await (
      await api(stack, user, `/api/messages/${conversationId}`)
    ).json()) as MessageShape[]
    expect(saved[1]?.tokenCount).toBe(splitIntoTokens(DEFAULT_REPLY).length)
  })

  it('aborts the generation when the client closes the POST', async () => {
    const user = await stack.createUser()
    const hold = gate()
    stack.provider.behave({
      reply: 'a b c d',
      beforeChunk: (index) => (index === 2 ? hold.opened : Promise.resolve()),
    })
    const controller = new AbortController()
    const reader = frameReader(await postChat(user, {}, { signal: controller.signal }))
    const created = (await reader.next()) as Frame
    await waitUntil(() => stack.provider.calls[0]?.chunksSent === 2)
    controller.abort()
    await waitUntil(() => stack.provider.calls[0]?.outcome === 'client-closed')
    hold.open()
    const conversationId = created.data.message?.conversationId ?? ''
    let saved: MessageShape[] = []
    for (let attempt = 0; attempt < 100 && saved.length < 2; attempt += 1) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 10))
      const response = await api(stack, user, `/api/messages/${conversationId}`)
      saved = (await response.json()) as MessageShape[]
    }
    expect(saved[1]).toMatchObject({ unfinished: true, content: [{ type: 'text', text: 'a b' }] })
    expect(stack.provider.calls.filter((call) => !call.stream)).toHaveLength(0)
  })

  it('has no abort or stream routes: POST …/chat/abort is parsed as a chat and refused', async () => {
    const user = await stack.createUser()
    const abort = await api(stack, user, '/api/agents/chat/abort', {
      method: 'POST',
      json: { streamId: 'x', conversationId: 'x' },
    })
    expect(abort.status).toBe(200)
    expect(await abort.text()).toBe('event: error\ndata: {"text":"Error parsing conversation"}\n\n')
    expect(stack.double.aborts).toEqual([])
    expect((await api(stack, user, '/api/agents/chat/stream/x')).status).toBe(404)
    expect((await api(stack, user, '/api/agents/chat/active')).status).toBe(404)
  })

  it('sends error frames as the error message object', async () => {
    const user = await stack.createUser()
    const frames = await frameReader(await postChat(user, { model: 'fake-unlisted' })).rest()
    expect(frames).toHaveLength(1)
    expect(frames[0]).toMatchObject({
      event: 'error',
      data: {
        sender: 'fakellm',
        unfinished: false,
        error: true,
        final: true,
        text: 'Illegal model request: fake-unlisted',
        isCreatedByUser: false,
      },
    })
    expect(stack.double.violations.at(-1)).toMatchObject({
      type: 'illegal_model_request',
      userId: user.id,
    })
  })

  it('uses conversationId "new" literally, as v0.8.1 does', async () => {
    const user = await stack.createUser()
    const frames = await frameReader(await postChat(user, { conversationId: 'new' })).rest()
    expect(frames.at(-1)?.data.conversation?.conversationId).toBe('new')
    expect(stack.provider.calls.filter((call) => !call.stream)).toHaveLength(0)
  })

  it('serves /api/endpoints without a token and /api/config in full, MCP servers included, to everyone', async () => {
    expect((await api(stack, undefined, '/api/endpoints')).status).toBe(200)
    const config = (await (await api(stack, undefined, '/api/config')).json()) as Record<
      string,
      unknown
    >
    expect(config).toMatchObject({
      registrationEnabled: true,
      interface: { agents: true },
      mcpServers: { docs: { startup: true, chatMenu: true, isOAuth: false, customUserVars: {} } },
    })
  })

  it('counts what it wrote to the POST stream under the conversation id', async () => {
    const user = await stack.createUser()
    const frames = await frameReader(await postChat(user)).rest()
    const conversationId = frames.at(-1)?.data.conversation?.conversationId ?? ''
    const stats = stack.double.streamStats(conversationId)
    expect(stats).toMatchObject({
      subscribers: 0,
      framesWritten: frames.length,
      waitingForDrain: false,
    })
  })
})
