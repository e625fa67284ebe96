import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FakeProviderCall } from '@platform/fake-provider'
import { describe, expect, it, onTestFinished } from 'vitest'
import {
  type ChatPlatform,
  libreChatUserHeaders,
  PROVIDER,
  PROVIDER_API_KEY,
  startChatPlatform,
} from '../helpers/chat-platform.js'
import {
  bridgedMember,
  chatCalls,
  egressHeaders,
  type LedgerRow,
  ledgerOf,
  ledgerRows,
  startMcpUpstream,
} from '../helpers/egress.js'
import { bearer } from '../helpers/platform.js'
import {
  type ChatFrame,
  chatBody,
  deltaText,
  fetchStream,
  frameReader,
  gate,
  kindOf,
  postChat,
  type StartedChat,
  startChat,
  waitFor,
} from '../helpers/stream-client.js'

const REPLY = 'Both hops let this through.'

/** Workspace A: the small model, and only `echo` of `alpha`. */
const POLICY_A = {
  models: { allow: [`${PROVIDER}:fake-small`] },
  mcp: { servers: ['alpha'], tools: { alpha: ['echo'] } },
}
/** Workspace B: the large model, and every tool of `beta`. */
const POLICY_B = {
  models: { allow: [`${PROVIDER}:fake-large`] },
  mcp: { servers: ['beta'], tools: {} },
}
/** What A allowed before it narrowed to {@link POLICY_A}. */
const WIDER_POLICY_A = {
  models: { allow: [`${PROVIDER}:fake-small`, `${PROVIDER}:fake-large`] },
  mcp: { servers: ['alpha'], tools: { alpha: ['echo', 'shout'] } },
}

/** What the egress answered one request, as seen on its own HTTP server. */
interface EgressAnswer {
  method: string
  path: string
  libreChatUserId: string | undefined
  status: number
}

/**
 * Every answer of the egress from now on: a second listener on its HTTP server, beside
 * Fastify's, reads each response's status once it is done (or its connection closed).
 */
function recordEgressAnswers(platform: ChatPlatform): EgressAnswer[] {
  const egress = platform.gateway.egress
  if (egress === undefined) throw new Error('the gateway built no egress')
  const answers: EgressAnswer[] = []
  const record = (request: IncomingMessage, response: ServerResponse) => {
    response.once('close', () => {
      const user = request.headers['x-librechat-user-id']
      answers.push({
        method: request.method ?? '',
        path: (request.url ?? '').split('?')[0] ?? '',
        libreChatUserId: typeof user === 'string' ? user : undefined,
        status: response.statusCode,
      })
    })
  }
  egress.server.on('request', record)
  onTestFinished(() => {
    egress.server.off('request', record)
  })
  return answers
}

/** A's and B's tenants, each with one member bridged to LibreChat, and both MCP servers. */
async function startTwoWorkspaces() {
  const alpha = await startMcpUpstream(['echo', 'shout'])
  const beta = await startMcpUpstream(['lookup'])
  const platform = await startChatPlatform({
    egress: true,
    egressMcpServers: [
      { name: 'alpha', url: alpha.url },
      { name: 'beta', url: beta.url },
    ],
  })
  const a = await namedMember(platform, 'alice', POLICY_A)
  const b = await namedMember(platform, 'bob', POLICY_B)
  return { platform, alpha, beta, a, b, egressAnswers: recordEgressAnswers(platform) }
}

/** A member bridged to LibreChat with `policy` (see {@link bridgedMember}), and its workspace's name. */
async function namedMember(platform: ChatPlatform, label: string, policy: object) {
  const member = await bridgedMember(platform, label, policy)
  const read = await platform.workspace.inject({
    method: 'GET',
    url: `/v1/workspaces/${member.workspaceId}`,
    headers: bearer(member.user.token),
  })
  return { ...member, workspaceName: read.json<{ name: string }>().name }
}

type Member = Awaited<ReturnType<typeof namedMember>>

const modelOf = (call: FakeProviderCall) => (call.body as { model?: string }).model

const offeredTools = (call: FakeProviderCall) =>
  ((call.body as { tools?: { function: { name: string } }[] }).tools ?? []).map(
    (tool) => tool.function.name,
  )

/** The chat POSTs LibreChat received: each one could have started a generation. */
const chatPostsOf = (platform: ChatPlatform) =>
  platform.libreChat.requests.filter(
    (request) => request.method === 'POST' && request.url.startsWith('/api/agents/chat'),
  )

/** A chat through the gateway, read to its last frame. */
async function chatThroughGateway(
  platform: ChatPlatform,
  member: Member,
  overrides: Record<string, unknown>,
) {
  const started = await startChat(platform.gatewayUrl, member.token, overrides)
  const response = await fetchStream(platform.gatewayUrl, member.token, started.streamId)
  expect(response.status).toBe(200)
  return frameReader(response).rest(10_000)
}

/**
 * A chat sent straight to LibreChat as the member's LibreChat user, bypassing the gateway's door:
 * the reader of its stream, subscribed before the turn can end.
 */
async function chatStraightToLibreChat(
  platform: ChatPlatform,
  member: Member,
  body: Record<string, unknown>,
) {
  const ended = new AbortController()
  onTestFinished(() => ended.abort())
  const headers = await libreChatUserHeaders(member.libreChatUserId)
  const started = await fetch(
    `${platform.libreChat.url}/api/agents/chat/${String(body.endpoint)}`,
    {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: ended.signal,
    },
  )
  const text = await started.text()
  expect(started.status, text).toBe(200)
  const { streamId } = JSON.parse(text) as StartedChat
  const stream = await fetch(
    `${platform.libreChat.url}/api/agents/chat/stream/${encodeURIComponent(streamId)}`,
    { headers, signal: ended.signal },
  )
  expect(stream.status).toBe(200)
  return frameReader(stream)
}

/** A GET of LibreChat's API straight from it, as the member's LibreChat user. */
async function getStraightFromLibreChat<T>(platform: ChatPlatform, member: Member, path: string) {
  const response = await fetch(`${platform.libreChat.url}${path}`, {
    headers: await libreChatUserHeaders(member.libreChatUserId),
  })
  expect(response.status, path).toBe(200)
  return (await response.json()) as T
}

/** The models the egress lists to the member's LibreChat user: its workspace's policy as the egress holds it. */
async function egressModelsOf(platform: ChatPlatform, member: Member) {
  const answer = await fetch(`${platform.egressUrl}/llm/${PROVIDER}/v1/models`, {
    headers: egressHeaders(member.libreChatUserId),
  })
  expect(answer.status).toBe(200)
  return ((await answer.json()) as { data: { id: string }[] }).data.map((model) => model.id)
}

/** Writes a policy and waits until the egress answers with it. */
async function changePolicy(
  platform: ChatPlatform,
  member: Member,
  policy: typeof POLICY_A,
  expectedModels: string[],
) {
  await platform.setPolicy(member.user, member.workspaceId, policy)
  await waitFor(
    'the egress holding the new policy',
    async () => (await egressModelsOf(platform, member)).join() === expectedModels.join(),
    10_000,
  )
}

const lastFrame = (frames: ChatFrame[]) => {
  const last = frames.at(-1)
  if (last === undefined) throw new Error('the stream had no frames')
  return last
}

const modelCallsOf = (answers: EgressAnswer[], member: Member) =>
  answers.filter(
    (answer) =>
      answer.path === `/llm/${PROVIDER}/v1/chat/completions` &&
      answer.libreChatUserId === member.libreChatUserId,
  )

async function jsonError(response: Response) {
  return (await response.json()) as { statusCode: number; code: string; message: string }
}

describe('the whole loop: models', () => {
  it('runs A’s allowed model through the door and the egress, and refuses it to B at the door', async () => {
    const { platform, a, b, egressAnswers } = await startTwoWorkspaces()
    platform.provider.behave({ reply: REPLY })
    const frames = await chatThroughGateway(platform, a, { model: 'fake-small' })
    expect(kindOf(lastFrame(frames))).toBe('final')
    expect(frames.map(deltaText).join('')).toBe(REPLY)

    // The chat and its title both went through the egress, which holds the provider's key.
    await waitFor('the title call', () => chatCalls(platform).length === 2, 10_000)
    for (const call of chatCalls(platform)) {
      expect(modelOf(call)).toBe('fake-small')
      expect(call.headers.authorization).toBe(`Bearer ${PROVIDER_API_KEY}`)
    }
    expect(modelCallsOf(egressAnswers, a).map((answer) => answer.status)).toEqual([200, 200])
    const rows = await ledgerRows(platform, a.workspaceId, 2)
    for (const row of rows)
      expect(row).toMatchObject({ kind: 'model', model: 'fake-small', status: 'completed' })

    const chatPosts = chatPostsOf(platform).length
    const refused = await postChat(platform.gatewayUrl, b.token, chatBody({ model: 'fake-small' }))
    expect(refused.status).toBe(403)
    expect(await jsonError(refused)).toMatchObject({
      code: 'GW_MODEL_NOT_ALLOWED',
      message: `Model ${PROVIDER}:fake-small is not allowed in workspace ${b.workspaceName}`,
    })
    expect(chatPostsOf(platform)).toHaveLength(chatPosts)
    expect(chatCalls(platform)).toHaveLength(2)
    expect(modelCallsOf(egressAnswers, b)).toEqual([])
    expect(await ledgerOf(platform, b.workspaceId)).toEqual([])
  })

  it('refuses at the egress a model LibreChat is asked for directly, past the door', async () => {
    const { platform, a, egressAnswers } = await startTwoWorkspaces()
    platform.provider.behave({ reply: REPLY })
    const reader = await chatStraightToLibreChat(platform, a, chatBody({ model: 'fake-large' }))
    const frames = await reader.rest(10_000)
    const last = lastFrame(frames)
    expect(kindOf(last)).toBe('error')
    // LibreChat read the message out of an OpenAI-shaped error body.
    expect(last.data.error).toBe(
      `403 Model ${PROVIDER}:fake-large is not allowed in workspace ${a.workspaceName}`,
    )
    // LibreChat itself has the model configured: the refusal is the egress's alone.
    expect(platform.libreChat.violations).toEqual([])

    // The chat call and the title call, both refused.
    await waitFor(
      'the egress answering both model calls',
      () => modelCallsOf(egressAnswers, a).length === 2,
      10_000,
    )
    expect(modelCallsOf(egressAnswers, a).map((answer) => answer.status)).toEqual([403, 403])
    expect(chatCalls(platform)).toEqual([])
    expect(await ledgerOf(platform, a.workspaceId)).toEqual([])
  })
})

describe('the whole loop: MCP tools', () => {
  it('calls A’s allowed tool through the egress with A’s identity, and ledgers it', async () => {
    const { platform, alpha, beta, a } = await startTwoWorkspaces()
    platform.provider.behave({
      reply: 'Echoed.',
      toolCall: { name: 'echo_mcp_alpha', arguments: { text: 'hello' } },
    })
    const frames = await chatThroughGateway(platform, a, {
      model: 'fake-small',
      ephemeralAgent: { mcp: ['alpha'] },
    })
    const last = lastFrame(frames)
    expect(kindOf(last)).toBe('final')
    expect(last.data.responseMessage?.content).toEqual([
      {
        type: 'tool_call',
        tool_call: expect.objectContaining({ name: 'echo_mcp_alpha', output: 'echo: hello' }),
      },
      { type: 'text', text: 'Echoed.' },
    ])

    // LibreChat offered the model only what the egress listed for A.
    const streamed = chatCalls(platform).filter((call) => call.stream)
    expect(streamed.map(offeredTools)).toEqual([['echo_mcp_alpha'], ['echo_mcp_alpha']])
    const [echo] = alpha.toolCalls('echo')
    expect(alpha.calls).toHaveLength(1)
    expect(echo?.args).toEqual({ text: 'hello' })
    expect(echo?.headers).toMatchObject({
      'x-platform-tenant-id': a.tenantId,
      'x-platform-workspace-id': a.workspaceId,
      'x-platform-user-id': a.user.id,
    })
    expect(echo?.meta).toMatchObject({ 'platform/workspaceId': a.workspaceId })
    for (const request of alpha.requests) expect(request.headers.authorization).toBeUndefined()
    expect(beta.requests).toEqual([])

    let mcpRows: LedgerRow[] = []
    await waitFor(
      'the tool call in A’s ledger',
      async () => {
        mcpRows = (await ledgerOf(platform, a.workspaceId)).filter((row) => row.kind === 'mcp')
        return mcpRows.length === 1
      },
      10_000,
    )
    expect(mcpRows[0]).toMatchObject({
      server: 'alpha',
      tool: 'echo',
      tenantId: a.tenantId,
      userId: a.user.id,
      status: 'completed',
    })
  })

  it('refuses at the egress a tool A no longer allows when LibreChat calls it, unseen by the upstream', async () => {
    const { platform, alpha, a } = await startTwoWorkspaces()
    await changePolicy(platform, a, WIDER_POLICY_A, ['fake-small', 'fake-large'])
    // The model's tool call is held until A's policy has narrowed: LibreChat listed `shout`
    // when the turn began and calls it after the policy no longer allows it.
    const toolCallHeld = gate()
    onTestFinished(toolCallHeld.open)
    platform.provider.behave({
      reply: 'Shouted.',
      toolCall: { name: 'shout_mcp_alpha', arguments: { text: 'hello' } },
      beforeChunk: (index) => (index === 0 ? toolCallHeld.opened : Promise.resolve()),
    })
    const reader = await chatStraightToLibreChat(
      platform,
      a,
      chatBody({ model: 'fake-small', ephemeralAgent: { mcp: ['alpha'] } }),
    )
    await waitFor(
      'the model answering with a tool call',
      () =>
        chatCalls(platform).some(
          (call) => call.stream && offeredTools(call).includes('shout_mcp_alpha'),
        ),
      10_000,
    )
    await changePolicy(platform, a, POLICY_A, ['fake-small'])
    toolCallHeld.open()

    const last = lastFrame(await reader.rest(10_000))
    expect(kindOf(last)).toBe('final')
    const [toolPart] = last.data.responseMessage?.content ?? []
    expect(toolPart).toMatchObject({ type: 'tool_call', tool_call: { name: 'shout_mcp_alpha' } })
    const output = String((toolPart as { tool_call?: { output?: string } }).tool_call?.output)
    expect(output).toMatch(/^GW_MCP_NOT_ALLOWED: /)
    expect(output).toContain('shout')
    expect(alpha.toolCalls('shout')).toEqual([])

    let refusedRows: LedgerRow[] = []
    await waitFor(
      'the refused call in A’s ledger',
      async () => {
        refusedRows = (await ledgerOf(platform, a.workspaceId)).filter(
          (row) => row.tool === 'shout',
        )
        return refusedRows.length === 1
      },
      10_000,
    )
    expect(refusedRows[0]).toMatchObject({ kind: 'mcp', server: 'alpha', status: 'failed' })
  })

  it('keeps B away from A’s server at the door and at the egress', async () => {
    const { platform, alpha, beta, b, egressAnswers } = await startTwoWorkspaces()
    const chatPosts = chatPostsOf(platform).length
    const refused = await postChat(
      platform.gatewayUrl,
      b.token,
      chatBody({ model: 'fake-large', ephemeralAgent: { mcp: ['alpha'] } }),
    )
    expect(refused.status).toBe(403)
    expect(await jsonError(refused)).toMatchObject({
      code: 'GW_MCP_NOT_ALLOWED',
      message: `MCP server alpha is not allowed in workspace ${b.workspaceName}`,
    })
    expect(chatPostsOf(platform)).toHaveLength(chatPosts)

    // Straight to LibreChat: its connection to alpha for B is refused, and the chat runs without.
    platform.provider.behave({
      reply: REPLY,
      toolCall: { name: 'echo_mcp_alpha', arguments: { text: 'from B' } },
    })
    const reader = await chatStraightToLibreChat(
      platform,
      b,
      chatBody({ model: 'fake-large', ephemeralAgent: { mcp: ['alpha'] } }),
    )
    const frames = await reader.rest(10_000)
    expect(kindOf(lastFrame(frames))).toBe('final')
    expect(frames.map(deltaText).join('')).toBe(REPLY)
    const streamed = chatCalls(platform).filter((call) => call.stream)
    expect(streamed.map(offeredTools)).toEqual([[]])

    type Tools = { servers: Record<string, { tools: { name: string }[] }> }
    const listed = await getStraightFromLibreChat<Tools>(platform, b, '/api/mcp/tools')
    expect(listed.servers.alpha?.tools).toEqual([])
    expect(listed.servers.beta?.tools.map((tool) => tool.name)).toEqual(['lookup'])
    const status = await getStraightFromLibreChat<{ connectionStatus: string }>(
      platform,
      b,
      '/api/mcp/connection/status/alpha',
    )
    expect(status.connectionStatus).toBe('error')

    const toAlpha = egressAnswers.filter(
      (answer) => answer.path === '/mcp/alpha' && answer.libreChatUserId === b.libreChatUserId,
    )
    expect(toAlpha.length).toBeGreaterThanOrEqual(2)
    for (const answer of toAlpha) expect(answer.status).toBe(404)
    expect(alpha.requestsFor(b.workspaceId)).toEqual([])
    expect(alpha.calls).toEqual([])
    expect(beta.requestsFor(b.workspaceId).length).toBeGreaterThan(0)
  })
})

describe('the whole loop: a saved agent the policy has moved away from', () => {
  it('refuses the agent at the door, and its model and tool at the egress when LibreChat is asked directly', async () => {
    const { platform, alpha, a, egressAnswers } = await startTwoWorkspaces()
    await changePolicy(platform, a, WIDER_POLICY_A, ['fake-small', 'fake-large'])
    const createAgent = async (name: string, model: string) => {
      const created = await fetch(`${platform.gatewayUrl}/api/agents`, {
        method: 'POST',
        headers: { ...bearer(a.token), 'content-type': 'application/json' },
        body: JSON.stringify({ name, provider: PROVIDER, model, tools: ['shout_mcp_alpha'] }),
      })
      const text = await created.text()
      expect(created.status, text).toBe(201)
      return (JSON.parse(text) as { id: string }).id
    }
    const largeAgent = await createAgent('Large shouter', 'fake-large')
    const smallAgent = await createAgent('Small shouter', 'fake-small')

    await changePolicy(platform, a, POLICY_A, ['fake-small'])
    await waitFor('the door holding the new policy', async () => {
      const listed = await fetch(`${platform.gatewayUrl}/api/models`, { headers: bearer(a.token) })
      return ((await listed.json()) as Record<string, string[]>)[PROVIDER]?.join() === 'fake-small'
    })
    platform.provider.behave({
      reply: REPLY,
      toolCall: { name: 'shout_mcp_alpha', arguments: { text: 'loud' } },
    })
    const agentChat = (agentId: string) =>
      chatBody({ endpoint: 'agents', endpointType: undefined, model: undefined, agent_id: agentId })

    const chatPosts = chatPostsOf(platform).length
    const atTheDoor = async (agentId: string) => {
      const response = await fetch(`${platform.gatewayUrl}/api/agents/chat/agents`, {
        method: 'POST',
        headers: { ...bearer(a.token), 'content-type': 'application/json' },
        body: JSON.stringify(agentChat(agentId)),
      })
      expect(response.status).toBe(403)
      return jsonError(response)
    }
    expect(await atTheDoor(largeAgent)).toMatchObject({
      code: 'GW_MODEL_NOT_ALLOWED',
      message: `Model ${PROVIDER}:fake-large is not allowed in workspace ${a.workspaceName}`,
    })
    expect(await atTheDoor(smallAgent)).toMatchObject({ code: 'GW_MCP_NOT_ALLOWED' })
    expect(chatPostsOf(platform)).toHaveLength(chatPosts)

    // The large agent straight to LibreChat: its model calls are refused at the egress.
    const large = await chatStraightToLibreChat(platform, a, agentChat(largeAgent))
    const largeLast = lastFrame(await large.rest(10_000))
    expect(kindOf(largeLast)).toBe('error')
    expect(largeLast.data.error).toBe(
      `403 Model ${PROVIDER}:fake-large is not allowed in workspace ${a.workspaceName}`,
    )
    await waitFor(
      'the egress answering both model calls',
      () => modelCallsOf(egressAnswers, a).length === 2,
      10_000,
    )
    expect(modelCallsOf(egressAnswers, a).map((answer) => answer.status)).toEqual([403, 403])
    expect(chatCalls(platform)).toEqual([])

    // The small agent straight to LibreChat: the egress lists it no `shout`, so the model is
    // offered no tool and the upstream never hears of one.
    const small = await chatStraightToLibreChat(platform, a, agentChat(smallAgent))
    const smallFrames = await small.rest(10_000)
    expect(kindOf(lastFrame(smallFrames))).toBe('final')
    expect(smallFrames.map(deltaText).join('')).toBe(REPLY)
    const streamed = chatCalls(platform).filter((call) => call.stream)
    expect(streamed.map(offeredTools)).toEqual([[]])

    expect(chatCalls(platform).filter((call) => modelOf(call) === 'fake-large')).toEqual([])
    expect(alpha.toolCalls('shout')).toEqual([])
    const rows = await ledgerOf(platform, a.workspaceId)
    expect(rows.filter((row) => row.model === 'fake-large')).toEqual([])
  })
})
