import { once } from 'node:events'
import { createServer, request as httpRequest, STATUS_CODES } from 'node:http'
import type { ModelSpecConfig } from '@platform/librechat-double'
import { findFreePort } from '@platform/local-infra'
import type { WorkspacePolicy } from '@platform/shared-types'
import { describe, expect, it, onTestFinished } from 'vitest'
import { type ChatPlatform, PROVIDER, startChatPlatform } from '../helpers/chat-platform.js'
import { bearer, type TestUser } from '../helpers/platform.js'
import {
  chatBody,
  deltaText,
  fetchStream,
  frameReader,
  framesOf,
  holdAfterFirstChunk,
  kindOf,
  postChat,
  sleep,
  startChat,
  waitFor,
  within,
} from '../helpers/stream-client.js'
import { appendModelUsage } from '../helpers/usage.js'

const REPLY = 'Policy let this one through.'

/** A request LibreChat received, with its body as sent (the double records no bodies). */
interface ForwardedRequest {
  method: string
  url: string
  body: string
}

/**
 * A real HTTP hop between the gateway and the LibreChat double that keeps every request body,
 * so a test reads exactly what the gateway sent LibreChat after its checks and caps.
 */
async function startBodyRecorder(target: string) {
  const received: ForwardedRequest[] = []
  const server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = []
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
    incoming.on('end', () => {
      const body = Buffer.concat(chunks)
      received.push({
        method: incoming.method ?? '',
        url: incoming.url ?? '',
        body: body.toString('utf8'),
      })
      const forwarded = httpRequest(
        new URL(incoming.url ?? '/', target),
        { method: incoming.method, headers: incoming.headers },
        (answer) => {
          outgoing.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(outgoing)
        },
      )
      forwarded.on('error', () => outgoing.destroy())
      // A client that leaves mid-stream takes the LibreChat connection with it.
      outgoing.on('close', () => {
        if (!outgoing.writableFinished) forwarded.destroy()
      })
      forwarded.end(body)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('recorder not on TCP')
  return { url: `http://127.0.0.1:${address.port}`, received }
}

/** MCP servers LibreChat knows in these tests; nothing listens at their URLs. */
const ALLOWED_SERVER = 'allowed-server'
const OTHER_SERVER = 'other-server'

const MODEL_SPECS: ModelSpecConfig[] = [
  { name: 'small-spec', label: 'Small', preset: { endpoint: PROVIDER, model: 'fake-small' } },
  { name: 'large-spec', label: 'Large', preset: { endpoint: PROVIDER, model: 'fake-large' } },
  {
    name: 'allowed-tools-spec',
    label: 'Large with allowed tools',
    preset: { endpoint: PROVIDER, model: 'fake-large' },
    mcpServers: [ALLOWED_SERVER],
  },
  {
    name: 'other-tools-spec',
    label: 'Large with other tools',
    preset: { endpoint: PROVIDER, model: 'fake-large' },
    mcpServers: [OTHER_SERVER],
  },
]

/**
 * {@link startChatPlatform} with a LibreChat that also has MCP servers and model specs, and a
 * {@link startBodyRecorder} hop in front of it.
 */
async function startPolicyPlatform(): Promise<
  ChatPlatform & { libreChatBodies: ForwardedRequest[] }
> {
  const mcpPort = await findFreePort()
  let bodies: ForwardedRequest[] = []
  const platform = await startChatPlatform({
    libreChat: {
      mcpServers: [ALLOWED_SERVER, OTHER_SERVER].map((name) => ({
        name,
        url: `http://127.0.0.1:${mcpPort}/${name}`,
      })),
      modelSpecs: MODEL_SPECS,
    },
    interpose: async (libreChatUrl) => {
      const recorder = await startBodyRecorder(libreChatUrl)
      bodies = recorder.received
      return recorder.url
    },
    memberPolicy: {
      models: { allow: [`${PROVIDER}:*`] },
      mcp: { servers: [ALLOWED_SERVER], tools: {} },
    },
  })
  return { ...platform, libreChatBodies: bodies }
}

/** A request through the gateway with a JSON body (when given) and the token (when given). */
function call(
  chat: { gatewayUrl: string },
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
) {
  return fetch(`${chat.gatewayUrl}${path}`, {
    method,
    headers: {
      ...(token === null ? {} : bearer(token)),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
}

async function jsonOf<T = Record<string, unknown>>(response: Response): Promise<T> {
  return (await response.json()) as T
}

interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
  limitName?: string
  scope?: string
  limit?: number
  used?: number
  resetAt?: string
}

/** The API.md §1 error body of `response`, which must have `statusCode` and `code`. */
async function expectError(response: Response, statusCode: number, code: string) {
  const body = await jsonOf<ErrorBody>(response)
  expect(response.status, JSON.stringify(body)).toBe(statusCode)
  expect(body).toMatchObject({
    statusCode,
    code,
    error: STATUS_CODES[statusCode],
    message: expect.any(String),
  })
  return body
}

/** What LibreChat was sent from request number `mark` on, as `METHOD url`. */
const libreChatSince = (chat: ChatPlatform, mark: number) =>
  chat.libreChat.requests.slice(mark).map((request) => `${request.method} ${request.url}`)

/** The chat POSTs LibreChat received: each one could have started a generation. */
const chatPostsOf = (chat: ChatPlatform) =>
  chat.libreChat.requests.filter(
    (request) => request.method === 'POST' && request.url.startsWith('/api/agents/chat'),
  )

/** A chat started and read to its last frame, as the web UI does. */
async function chatToEnd(
  chat: ChatPlatform,
  token: string,
  overrides: Record<string, unknown> = {},
) {
  const started = await startChat(chat.gatewayUrl, token, overrides)
  const response = await fetchStream(chat.gatewayUrl, token, started.streamId)
  expect(response.status).toBe(200)
  const frames = await framesOf(await within(10_000, 'the whole stream', response.text()))
  return { started, frames }
}

/** Another workspace in the user's tenant and a token scoped to it. */
async function secondWorkspace(chat: ChatPlatform, user: TestUser, name: string) {
  const created = await chat.workspace.inject({
    method: 'POST',
    url: '/v1/workspaces',
    headers: bearer(user.token),
    payload: { name },
  })
  expect(created.statusCode, created.body).toBe(201)
  const workspaceId = created.json<{ id: string }>().id
  return { workspaceId, token: await chat.scopedToken(user, workspaceId) }
}

async function workspaceName(chat: ChatPlatform, user: TestUser, workspaceId: string) {
  const read = await chat.workspace.inject({
    method: 'GET',
    url: `/v1/workspaces/${workspaceId}`,
    headers: bearer(user.token),
  })
  expect(read.statusCode, read.body).toBe(200)
  return read.json<{ name: string }>().name
}

/** Changes some quota fields of a workspace's policy, as its admin. */
async function setQuota(
  chat: ChatPlatform,
  admin: TestUser,
  workspaceId: string,
  change: Partial<WorkspacePolicy['quota']>,
) {
  const read = await chat.workspace.inject({
    method: 'GET',
    url: `/v1/workspaces/${workspaceId}/policy`,
    headers: bearer(admin.token),
  })
  const { quota } = read.json<WorkspacePolicy>()
  await chat.setPolicy(admin, workspaceId, { quota: { ...quota, ...change } })
}

/** The `oai` models the gateway lists to a token's workspace. */
async function listedModels(chat: ChatPlatform, token: string) {
  const response = await call(chat, token, 'GET', '/api/models')
  expect(response.status).toBe(200)
  return (await jsonOf<Record<string, string[] | undefined>>(response))[PROVIDER]
}

describe('the policy at the door: one user, two workspaces', () => {
  it('chats in two workspaces of one user, each with its own model, every frame in order, refuses what one does not allow unseen by LibreChat, and keeps their histories apart', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId: workspaceA, token: tokenA } = await chat.member('twofold')
    const { workspaceId: workspaceB, token: tokenB } = await secondWorkspace(chat, user, 'Beta')
    await chat.setPolicy(user, workspaceB, { models: { allow: [`${PROVIDER}:fake-large`] } })
    expect(workspaceB).not.toBe(workspaceA)

    chat.provider.behave({ reply: REPLY })
    const body = chatBody({ model: 'fake-small', text: 'Only for A' })
    const { started, frames } = await chatToEnd(chat, tokenA, body)
    expect(frames.map(kindOf).at(-1)).toBe('final')
    expect(frames.at(-1)?.data.responseMessage?.content).toEqual([{ type: 'text', text: REPLY }])
    expect(frames.map(deltaText).join('')).toBe(REPLY)
    expect(chat.provider.calls).toHaveLength(1)
    expect(chat.provider.calls[0]?.body).toMatchObject({ model: 'fake-small' })

    const chatPosts = chatPostsOf(chat).length
    const refused = await postChat(chat.gatewayUrl, tokenB, { ...body, messageId: 'retry' })
    expect(await expectError(refused, 403, 'GW_MODEL_NOT_ALLOWED')).toEqual({
      statusCode: 403,
      code: 'GW_MODEL_NOT_ALLOWED',
      error: 'Forbidden',
      message: 'Model oai:fake-small is not allowed in workspace Beta',
    })
    expect(chatPostsOf(chat)).toHaveLength(chatPosts)
    expect(chat.provider.calls).toHaveLength(1)

    // The model B allows runs there, every frame in order to the final one.
    const otherReply = 'Beta has its own model.'
    chat.provider.behave({ reply: otherReply })
    const inB = await chatToEnd(chat, tokenB, chatBody({ model: 'fake-large', text: 'Only for B' }))
    expect(inB.frames.map(kindOf).at(-1)).toBe('final')
    expect(inB.frames.filter((frame) => kindOf(frame) === 'final')).toHaveLength(1)
    expect(inB.frames.map(deltaText).join('')).toBe(otherReply)
    expect(chat.provider.calls).toHaveLength(2)
    expect(chat.provider.calls[1]?.body).toMatchObject({ model: 'fake-large' })
    expect(inB.started.conversationId).not.toBe(started.conversationId)

    // Each workspace is a LibreChat user of its own: neither sees the other's history.
    const userIdOf = async (token: string) =>
      (await jsonOf<{ id: string }>(await call(chat, token, 'GET', '/api/user'))).id
    expect(await userIdOf(tokenB)).not.toBe(await userIdOf(tokenA))
    const convosOf = async (token: string) => {
      const response = await call(chat, token, 'GET', '/api/convos')
      expect(response.status).toBe(200)
      const listed = await jsonOf<{ conversations: { conversationId: string }[] }>(response)
      return listed.conversations.map((convo) => convo.conversationId)
    }
    expect(await convosOf(tokenA)).toEqual([started.conversationId])
    expect(await convosOf(tokenB)).toEqual([inB.started.conversationId])
    const convoPath = `/api/convos/${started.conversationId}`
    expect((await call(chat, tokenA, 'GET', convoPath)).status).toBe(200)
    const convoOfB = await call(chat, tokenB, 'GET', convoPath)
    expect(convoOfB.status).toBe(404)
    expect(await convoOfB.text()).toBe('')
    const messagesPath = `/api/messages/${started.conversationId}`
    const messagesOfA = await jsonOf<unknown[]>(await call(chat, tokenA, 'GET', messagesPath))
    expect(messagesOfA).toHaveLength(2)
    const messagesOfB = await call(chat, tokenB, 'GET', messagesPath)
    expect(messagesOfB.status).toBe(200)
    expect(await messagesOfB.json()).toEqual([])
  })

  it('filters every listing to the workspace’s policy and marks it uncacheable', async () => {
    const chat = await startPolicyPlatform()
    const { user, token: tokenA } = await chat.member('lister')
    const { workspaceId: workspaceB, token: tokenB } = await secondWorkspace(chat, user, 'Beta')
    await chat.setPolicy(user, workspaceB, { models: { allow: [`${PROVIDER}:fake-large`] } })
    // A new workspace allows no model at all.
    const { token: tokenC } = await secondWorkspace(chat, user, 'Gamma')

    const filtered = async (token: string | null, path: string) => {
      const mark = chat.libreChat.requests.length
      const response = await fetch(`${chat.gatewayUrl}${path}`, {
        headers: {
          ...(token === null ? {} : bearer(token)),
          'if-none-match': '"cached-elsewhere"',
        },
      })
      expect(response.status, path).toBe(200)
      expect(response.headers.get('cache-control'), path).toBe('private, no-store')
      expect(response.headers.get('etag'), path).toBeNull()
      // Asked for a whole, uncompressed body it can read, never for a 304 of another filtering.
      const seen = chat.libreChat.requests.slice(mark).find((request) => request.url === path)
      expect(seen?.headers['accept-encoding'], path).toBe('identity')
      expect(seen?.headers['if-none-match'], path).toBeUndefined()
      return jsonOf(response)
    }

    const modelsA = await filtered(tokenA, '/api/models')
    expect(modelsA).toEqual({ [PROVIDER]: ['fake-small', 'fake-large'], agents: [] })
    expect(await filtered(tokenB, '/api/models')).toEqual({
      [PROVIDER]: ['fake-large'],
      agents: [],
    })
    expect(await filtered(tokenC, '/api/models')).toEqual({ [PROVIDER]: [], agents: [] })

    expect(Object.keys(await filtered(tokenA, '/api/endpoints')).sort()).toEqual([
      'agents',
      PROVIDER,
    ])
    expect(Object.keys(await filtered(tokenC, '/api/endpoints'))).toEqual(['agents'])

    type StartupConfig = Record<string, unknown> & { modelSpecs?: { list: { name: string }[] } }
    const specNames = (config: StartupConfig) =>
      config.modelSpecs?.list.map((spec) => spec.name) ?? []
    const platformAccounts = {
      registrationEnabled: false,
      socialLoginEnabled: false,
      socialLogins: [],
      emailLoginEnabled: true,
      passwordResetEnabled: false,
      allowAccountDeletion: false,
      githubLoginEnabled: false,
      googleLoginEnabled: false,
      openidLoginEnabled: false,
      samlLoginEnabled: false,
    }
    const configA = (await filtered(tokenA, '/api/config')) as StartupConfig
    expect(configA).toMatchObject(platformAccounts)
    expect(specNames(configA)).toEqual(['small-spec', 'large-spec', 'allowed-tools-spec'])
    const configB = (await filtered(tokenB, '/api/config')) as StartupConfig
    expect(configB).toMatchObject(platformAccounts)
    expect(specNames(configB)).toEqual(['large-spec'])
    const mark = chat.libreChat.requests.length
    const signedOut = (await filtered(null, '/api/config')) as StartupConfig
    expect(signedOut).toMatchObject(platformAccounts)
    expect(signedOut.modelSpecs).toBeUndefined()
    expect(signedOut.interface).toBeUndefined()
    expect(chat.libreChat.requests[mark]?.headers.authorization).toBeUndefined()

    // Agents: each workspace's LibreChat user lists its own.
    const created = await call(chat, tokenA, 'POST', '/api/agents', {
      name: 'Helper',
      provider: PROVIDER,
      model: 'fake-small',
    })
    expect(created.status).toBe(201)
    const agent = await jsonOf<{ id: string }>(created)
    type AgentList = { data: { id: string; platformPolicy?: unknown }[] }
    const agentsA = (await filtered(tokenA, '/api/agents')) as AgentList
    expect(agentsA.data.map((listed) => listed.id)).toEqual([agent.id])
    expect(agentsA.data[0]?.platformPolicy).toBeUndefined()
    expect(((await filtered(tokenB, '/api/agents')) as AgentList).data).toEqual([])

    type McpTools = { servers: Record<string, unknown> }
    expect(Object.keys(((await filtered(tokenA, '/api/mcp/tools')) as McpTools).servers)).toEqual([
      ALLOWED_SERVER,
    ])
    expect(((await filtered(tokenB, '/api/mcp/tools')) as McpTools).servers).toEqual({})
    type McpStatus = { connectionStatus: Record<string, unknown> }
    const statusA = (await filtered(tokenA, '/api/mcp/connection/status')) as McpStatus
    expect(Object.keys(statusA.connectionStatus)).toEqual([ALLOWED_SERVER])
    const statusB = (await filtered(tokenB, '/api/mcp/connection/status')) as McpStatus
    expect(statusB.connectionStatus).toEqual({})
  })

  it('caps output tokens and temperature in the body LibreChat receives', async () => {
    const chat = await startPolicyPlatform()
    const { user, workspaceId, token } = await chat.member('capped')
    await chat.setPolicy(user, workspaceId, {
      params: { maxOutputTokens: 7, temperature: { max: 0.5 } },
    })
    chat.provider.behave({ reply: REPLY })
    const sentToLibreChat = (messageId: string) => {
      const forwarded = chat.libreChatBodies.find(
        (request) =>
          request.method === 'POST' &&
          request.url === `/api/agents/chat/${PROVIDER}` &&
          request.body.includes(messageId),
      )
      return JSON.parse(forwarded?.body ?? 'null') as Record<string, unknown> | null
    }

    const over = chatBody({ max_tokens: 500, temperature: 1.5 })
    await chatToEnd(chat, token, over)
    expect(sentToLibreChat(String(over.messageId))).toEqual({
      ...over,
      max_tokens: 7,
      temperature: 0.5,
    })

    // No output cap asked for: the provider's default must not apply either.
    const unset = chatBody()
    await chatToEnd(chat, token, unset)
    expect(sentToLibreChat(String(unset.messageId))).toEqual({ ...unset, max_tokens: 7 })

    const underCaps = chatBody({ max_tokens: 3, temperature: 0.2 })
    await chatToEnd(chat, token, underCaps)
    expect(sentToLibreChat(String(underCaps.messageId))).toEqual(underCaps)

    // What the provider was asked for, call by call: the capped values, as LibreChat passes a
    // conversation's sampling parameters to a custom endpoint.
    const streamed = chat.provider.calls.filter((providerCall) => providerCall.stream)
    expect(streamed.map((providerCall) => providerCall.body)).toMatchObject([
      { max_tokens: 7, temperature: 0.5 },
      { max_tokens: 7 },
      { max_tokens: 3, temperature: 0.2 },
    ])
    expect(streamed[1]?.body).not.toHaveProperty('temperature')
  })

  it('refuses MCP servers the workspace may not use, in chats and on LibreChat’s MCP routes', async () => {
    const chat = await startPolicyPlatform()
    const { user, workspaceId, token } = await chat.member('toolsmith')
    const name = await workspaceName(chat, user, workspaceId)
    const mark = chat.libreChat.requests.length

    const refused = await postChat(
      chat.gatewayUrl,
      token,
      chatBody({ ephemeralAgent: { mcp: ['not-allowed-server'] } }),
    )
    expect((await expectError(refused, 403, 'GW_MCP_NOT_ALLOWED')).message).toBe(
      `MCP server not-allowed-server is not allowed in workspace ${name}`,
    )
    // A model spec brings in its own servers, whatever the body says.
    const bySpec = await postChat(
      chat.gatewayUrl,
      token,
      chatBody({ model: 'fake-large', spec: 'other-tools-spec' }),
    )
    expect((await expectError(bySpec, 403, 'GW_MCP_NOT_ALLOWED')).message).toBe(
      `MCP server ${OTHER_SERVER} is not allowed in workspace ${name}`,
    )

    for (const [method, path] of [
      ['POST', `/api/mcp/${OTHER_SERVER}/reinitialize`],
      ['GET', `/api/mcp/connection/status/${OTHER_SERVER}`],
      ['POST', `/api/mcp/not-allowed-server/reinitialize`],
    ] as const) {
      const response = await call(chat, token, method, path)
      const server = path.includes(OTHER_SERVER) ? OTHER_SERVER : 'not-allowed-server'
      expect((await expectError(response, 403, 'GW_MCP_NOT_ALLOWED')).message, path).toBe(
        `MCP server ${server} is not allowed in workspace ${name}`,
      )
    }
    expect(
      libreChatSince(chat, mark).filter((line) => !line.startsWith('GET /api/config')),
    ).toEqual([])
    expect(chat.provider.calls).toHaveLength(0)

    // The allowed server's route reaches LibreChat.
    const allowed = await call(chat, token, 'GET', `/api/mcp/connection/status/${ALLOWED_SERVER}`)
    expect(allowed.status).toBe(200)
    expect(await allowed.json()).toMatchObject({ success: true, serverName: ALLOWED_SERVER })
  })
})

describe('saved agents at the door', () => {
  it('refuses agent writes and runs with models the workspace does not allow, and agents not shared with it', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId, token } = await chat.member('agent-owner')
    await chat.setPolicy(user, workspaceId, { models: { allow: [`${PROVIDER}:fake-small`] } })
    const name = await workspaceName(chat, user, workspaceId)
    const agentWrites = () =>
      chat.libreChat.requests.filter(
        (request) => request.method !== 'GET' && request.url.startsWith('/api/agents'),
      ).length

    const disallowed = await call(chat, token, 'POST', '/api/agents', {
      name: 'Too big',
      provider: PROVIDER,
      model: 'fake-large',
    })
    expect((await expectError(disallowed, 403, 'GW_MODEL_NOT_ALLOWED')).message).toBe(
      `Model oai:fake-large is not allowed in workspace ${name}`,
    )
    expect(agentWrites()).toBe(0)

    const created = await call(chat, token, 'POST', '/api/agents', {
      name: 'Small helper',
      provider: PROVIDER,
      model: 'fake-small',
    })
    expect(created.status).toBe(201)
    const agent = await jsonOf<{ id: string; model: string }>(created)
    expect(agent.id).toMatch(/^agent_/)

    const agentChat = { endpoint: 'agents', endpointType: undefined, model: undefined }
    chat.provider.behave({ reply: REPLY })
    const { frames } = await chatToEnd(chat, token, { ...agentChat, agent_id: agent.id })
    expect(frames.map(kindOf).at(-1)).toBe('final')
    expect(chat.provider.calls[0]?.body).toMatchObject({ model: 'fake-small' })

    // A PATCH naming only the model is judged with the stored provider.
    const writesBefore = agentWrites()
    const patched = await call(chat, token, 'PATCH', `/api/agents/${agent.id}`, {
      model: 'fake-large',
    })
    expect((await expectError(patched, 403, 'GW_MODEL_NOT_ALLOWED')).message).toBe(
      `Model oai:fake-large is not allowed in workspace ${name}`,
    )
    expect(agentWrites()).toBe(writesBefore)
    const stored = await jsonOf<{ model: string }>(
      await call(chat, token, 'GET', `/api/agents/${agent.id}`),
    )
    expect(stored.model).toBe('fake-small')

    // The policy moves away from the agent's model: running it is refused at once.
    await chat.setPolicy(user, workspaceId, { models: { allow: [`${PROVIDER}:fake-large`] } })
    await waitFor(
      'the gateway applying the new policy',
      async () => (await listedModels(chat, token))?.includes('fake-small') === false,
    )
    const chatPosts = chatPostsOf(chat).length
    const stale = await call(chat, token, 'POST', '/api/agents/chat/agents', {
      ...chatBody(agentChat),
      agent_id: agent.id,
    })
    expect((await expectError(stale, 403, 'GW_MODEL_NOT_ALLOWED')).message).toBe(
      `Model oai:fake-small is not allowed in workspace ${name}`,
    )
    const listing = await jsonOf<{ data: { id: string; platformPolicy?: unknown }[] }>(
      await call(chat, token, 'GET', '/api/agents'),
    )
    expect(listing.data.find((listed) => listed.id === agent.id)?.platformPolicy).toEqual({
      allowed: false,
      code: 'GW_MODEL_NOT_ALLOWED',
      message: `Model oai:fake-small is not allowed in workspace ${name}`,
    })

    // An agent of the same person's other workspace belongs to another LibreChat user.
    const other = await secondWorkspace(chat, user, 'Elsewhere')
    await chat.setPolicy(user, other.workspaceId, { models: { allow: [`${PROVIDER}:*`] } })
    const foreign = await jsonOf<{ id: string }>(
      await call(chat, other.token, 'POST', '/api/agents', {
        name: 'Not shared',
        provider: PROVIDER,
        model: 'fake-large',
      }),
    )
    expect(foreign.id).toMatch(/^agent_/)
    const notShared = await call(chat, token, 'POST', '/api/agents/chat/agents', {
      ...chatBody(agentChat),
      agent_id: foreign.id,
    })
    expect((await expectError(notShared, 403, 'GW_FORBIDDEN')).message).toBe(
      `Agent ${foreign.id} is not shared with you in this workspace`,
    )
    expect(chatPostsOf(chat)).toHaveLength(chatPosts)
    expect(chat.provider.calls).toHaveLength(1)
  })
})

describe('requests the policy routes refuse before reading them', () => {
  it('refuses other spellings of the policy routes with 400 GW_VALIDATION', async () => {
    const chat = await startChatPlatform()
    const { token } = await chat.member('speller')
    const mark = chat.libreChat.requests.length
    for (const [method, path] of [
      ['POST', `/api/Agents/chat/${PROVIDER}`],
      ['POST', `/api/agents/chat/${PROVIDER}/`],
      ['POST', `/api/agents//chat/${PROVIDER}`],
      ['POST', '/api/AGENTS'],
      ['PATCH', '/api/agents/agent_abc/'],
    ] as const) {
      const response = await call(chat, token, method, path, chatBody({ model: 'fake-large' }))
      await expectError(response, 400, 'GW_VALIDATION')
    }
    expect(libreChatSince(chat, mark)).toEqual([])
    expect(chat.provider.calls).toHaveLength(0)
  })

  it('lets a viewer read the listings but not chat', async () => {
    const chat = await startChatPlatform()
    const { user: owner, workspaceId } = await chat.member('host')
    const viewer = await chat.user('onlooker')
    await chat.addMember(owner, workspaceId, viewer, 'viewer')
    const token = await chat.scopedToken(viewer, workspaceId)

    const refused = await postChat(chat.gatewayUrl, token, chatBody())
    expect((await expectError(refused, 403, 'GW_FORBIDDEN')).message).toBe(
      'Viewers can read this workspace but not change it',
    )
    expect(chatPostsOf(chat)).toHaveLength(0)
    for (const path of [
      '/api/models',
      '/api/endpoints',
      '/api/config',
      '/api/agents',
      '/api/convos',
    ]) {
      const response = await call(chat, token, 'GET', path)
      expect(response.status, path).toBe(200)
    }
    expect(await listedModels(chat, token)).toEqual(['fake-small', 'fake-large'])
  })

  it('answers 413 to a body over 3 MiB and 400 to one that is not a JSON object', async () => {
    const chat = await startChatPlatform()
    const { token } = await chat.member('sender')
    const post = (body: string) =>
      fetch(`${chat.gatewayUrl}/api/agents/chat/${PROVIDER}`, {
        method: 'POST',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body,
      })

    const huge = JSON.stringify(chatBody({ text: 'x'.repeat(3 * 1024 * 1024) }))
    await expectError(await post(huge), 413, 'GW_PAYLOAD_TOO_LARGE')
    await expectError(await post('{"text": "unterminated'), 400, 'GW_VALIDATION')
    const array = await expectError(await post(JSON.stringify([chatBody()])), 400, 'GW_VALIDATION')
    expect(array.message).toBe('The chat request body must be a JSON object')
    expect(chatPostsOf(chat)).toHaveLength(0)
    expect(chat.provider.calls).toHaveLength(0)
  })
})

describe('limits at the door', () => {
  it('refuses a member’s third chat within the minute under memberRpm 2, and not another member’s', async () => {
    const chat = await startChatPlatform()
    const { user: owner, workspaceId, token } = await chat.member('hasty')
    await setQuota(chat, owner, workspaceId, { rpm: null, memberRpm: 2 })
    const colleague = await chat.user('colleague')
    await chat.addMember(owner, workspaceId, colleague, 'member')
    const colleagueToken = await chat.scopedToken(colleague, workspaceId)

    const allowedRemaining: string[] = []
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = await postChat(chat.gatewayUrl, token, chatBody())
      expect(response.status).toBe(200)
      await response.json()
      expect(response.headers.get('ratelimit-limit')).toBe('2')
      expect(response.headers.get('ratelimit-policy')).toBe('2;w=60')
      const reset = Number(response.headers.get('ratelimit-reset'))
      expect(reset).toBeGreaterThanOrEqual(1)
      expect(reset).toBeLessThanOrEqual(60)
      allowedRemaining.push(response.headers.get('ratelimit-remaining') ?? '')
    }
    expect(allowedRemaining).toEqual(['1', '0'])
    expect(chatPostsOf(chat)).toHaveLength(2)

    const third = await postChat(chat.gatewayUrl, token, chatBody())
    const refusal = await expectError(third, 429, 'GW_RATE_LIMITED')
    expect(refusal).toMatchObject({ limitName: 'memberRpm', scope: 'member', limit: 2, used: 2 })
    const retryAfter = Number(third.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(60)
    const resetInMs = Date.parse(refusal.resetAt ?? '') - Date.now()
    expect(resetInMs).toBeGreaterThan(0)
    expect(resetInMs).toBeLessThanOrEqual(60_000)
    expect(chatPostsOf(chat)).toHaveLength(2)

    const theirs = await postChat(chat.gatewayUrl, colleagueToken, chatBody())
    expect(theirs.status).toBe(200)
    expect(theirs.headers.get('ratelimit-remaining')).toBe('1')
    expect(chatPostsOf(chat)).toHaveLength(3)
  })

  it('refuses any member once the workspace’s rpm is spent', async () => {
    const chat = await startChatPlatform()
    const { user: owner, workspaceId, token } = await chat.member('busy')
    await setQuota(chat, owner, workspaceId, { rpm: 3, memberRpm: 2 })
    const colleague = await chat.user('latecomer')
    await chat.addMember(owner, workspaceId, colleague, 'member')
    const colleagueToken = await chat.scopedToken(colleague, workspaceId)

    for (const sender of [token, token, colleagueToken]) {
      const response = await postChat(chat.gatewayUrl, sender, chatBody())
      expect(response.status).toBe(200)
      await response.json()
    }
    // The colleague has used one of its own two, but the workspace's three are gone.
    const refused = await postChat(chat.gatewayUrl, colleagueToken, chatBody())
    expect(await expectError(refused, 429, 'GW_RATE_LIMITED')).toMatchObject({
      limitName: 'rpm',
      scope: 'workspace',
      limit: 3,
      used: 3,
    })
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(chatPostsOf(chat)).toHaveLength(3)
  })

  it('holds one stream slot per stream under maxConcurrentStreams 1, reconnects included', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId, token } = await chat.member('streamer')
    await setQuota(chat, user, workspaceId, { maxConcurrentStreams: 1 })
    const hold = holdAfterFirstChunk(chat.provider, REPLY)

    const started = await startChat(chat.gatewayUrl, token)
    const first = frameReader(await fetchStream(chat.gatewayUrl, token, started.streamId))
    await first.until((frame) => kindOf(frame) === 'on_message_delta')

    const mark = chat.libreChat.requests.length
    const secondChat = await postChat(chat.gatewayUrl, token, chatBody())
    const full = await expectError(secondChat, 429, 'GW_QUOTA_EXCEEDED')
    expect(full).toMatchObject({
      limitName: 'concurrentStreams',
      scope: 'workspace',
      limit: 1,
      used: 1,
    })
    expect(Number(secondChat.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    const otherStream = await fetchStream(chat.gatewayUrl, token, 'another-stream')
    expect(await expectError(otherStream, 429, 'GW_QUOTA_EXCEEDED')).toMatchObject({
      limitName: 'concurrentStreams',
    })
    expect(libreChatSince(chat, mark)).toEqual([])

    // A reloaded page subscribes to the same stream again: no second slot.
    const again = await fetchStream(chat.gatewayUrl, token, started.streamId, {
      query: '?resume=true',
    })
    expect(again.status).toBe(200)
    const second = frameReader(again)
    await second.until((frame) => kindOf(frame) === 'sync')

    hold.open()
    expect((await first.rest()).map(kindOf).at(-1)).toBe('final')
    expect((await second.rest()).map(kindOf).at(-1)).toBe('final')

    // Both clients have their whole stream; the slot frees as their connections close.
    let next: Response | undefined
    await waitFor('a chat being admitted again', async () => {
      next = await postChat(chat.gatewayUrl, token, chatBody())
      if (next.status === 429) await next.body?.cancel()
      return next.status !== 429
    })
    expect(next?.status).toBe(200)
    expect(chatPostsOf(chat)).toHaveLength(2)
  })

  it('counts a stream opened without a limit, so a limit set while it runs sees it', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId, token } = await chat.member('unlimited')
    const hold = holdAfterFirstChunk(chat.provider, REPLY)
    const started = await startChat(chat.gatewayUrl, token)
    const first = frameReader(await fetchStream(chat.gatewayUrl, token, started.streamId))
    await first.until((frame) => kindOf(frame) === 'on_message_delta')

    await setQuota(chat, user, workspaceId, { maxConcurrentStreams: 1 })
    let refused: Response | undefined
    await waitFor('the new limit reaching the gateway', async () => {
      refused = await fetchStream(chat.gatewayUrl, token, 'another-stream')
      if (refused.status !== 429) await refused.body?.cancel()
      return refused.status === 429
    })
    expect(await expectError(refused as Response, 429, 'GW_QUOTA_EXCEEDED')).toMatchObject({
      limitName: 'concurrentStreams',
      limit: 1,
      used: 1,
    })

    hold.open()
    expect((await first.rest()).map(kindOf).at(-1)).toBe('final')
    await waitFor('the counted stream giving its slot back', async () => {
      const next = await postChat(chat.gatewayUrl, token, chatBody())
      await next.body?.cancel()
      return next.status === 200
    })
  })

  it('relays nothing of LibreChat’s answer to a stream refused its slot, and then asks LibreChat nothing', async () => {
    const chat = await startChatPlatform()
    const { user, workspaceId, token } = await chat.member('subscriber')
    await setQuota(chat, user, workspaceId, { maxConcurrentStreams: 1 })
    const hold = holdAfterFirstChunk(chat.provider, REPLY)
    const started = await startChat(chat.gatewayUrl, token)
    const first = frameReader(await fetchStream(chat.gatewayUrl, token, started.streamId))
    await first.until((frame) => kindOf(frame) === 'on_message_delta')

    // No slot was refused here lately: LibreChat may be asked while the slot is decided (the
    // refusal can come first), and whatever it answers (a 404: it has no such stream) is
    // dropped for the refusal.
    let mark = chat.libreChat.requests.length
    const refused = await fetchStream(chat.gatewayUrl, token, 'not-a-stream')
    expect(await expectError(refused, 429, 'GW_QUOTA_EXCEEDED')).toMatchObject({
      limitName: 'concurrentStreams',
      limit: 1,
    })
    expect(
      libreChatSince(chat, mark).every(
        (request) => request === 'GET /api/agents/chat/stream/not-a-stream',
      ),
    ).toBe(true)

    // Just refused: the next stream waits for its slot, and LibreChat never hears of it.
    mark = chat.libreChat.requests.length
    const again = await fetchStream(chat.gatewayUrl, token, 'still-not-a-stream')
    await expectError(again, 429, 'GW_QUOTA_EXCEEDED')
    // (The first request, aborted, may still be recorded after the mark.)
    expect(
      libreChatSince(chat, mark).filter((request) => request.includes('still-not-a-stream')),
    ).toEqual([])

    // The refused subscription took nothing from the open stream: it ends whole.
    hold.open()
    expect((await first.rest()).map(kindOf).at(-1)).toBe('final')
    expect(chat.libreChat.aborts).toEqual([])
  })
})

describe('budgets at the door', () => {
  /** The first instant of next month in a zone with a fixed offset (no daylight saving time). */
  const nextMonthIn = (timeZone: string, offset: string) => {
    const parts = new Intl.DateTimeFormat('en-US', {
      timeZone,
      year: 'numeric',
      month: 'numeric',
    }).formatToParts(new Date())
    const year = Number(parts.find((part) => part.type === 'year')?.value)
    const month = Number(parts.find((part) => part.type === 'month')?.value)
    const [nextYear, nextMonth] = month === 12 ? [year + 1, 1] : [year, month + 1]
    return `${nextYear}-${String(nextMonth).padStart(2, '0')}-01T00:00:00${offset}`
  }

  it('refuses a chat with 429 monthlyTokens when the budget is 0, before LibreChat hears of it', async () => {
    const chat = await startChatPlatform()
    const { user, tenantId, workspaceId, token } = await chat.member('frugal')
    const zoned = await chat.workspace.inject({
      method: 'PATCH',
      url: `/v1/tenants/${tenantId}`,
      headers: bearer(user.token),
      payload: { timeZone: 'Asia/Kolkata' },
    })
    expect(zoned.statusCode, zoned.body).toBe(200)
    await setQuota(chat, user, workspaceId, { monthlyTokens: 0, overage: 'block' })

    const refused = await postChat(chat.gatewayUrl, token, chatBody())
    const body = await expectError(refused, 429, 'GW_QUOTA_EXCEEDED')
    const resetAt = nextMonthIn('Asia/Kolkata', '+05:30')
    expect(body).toMatchObject({
      limitName: 'monthlyTokens',
      scope: 'workspace',
      limit: 0,
      used: 0,
      resetAt,
    })
    expect(body.message).toContain(resetAt)
    const retryAfter = Number(refused.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(Math.abs(retryAfter - (Date.parse(resetAt) - Date.now()) / 1000)).toBeLessThan(5)
    expect(chatPostsOf(chat)).toHaveLength(0)
    expect(chat.provider.calls).toHaveLength(0)
  })

  it('refuses a member whose usage went over memberMonthlyTokens, and not the others', async () => {
    const chat = await startChatPlatform({ gatewayEnv: { BUDGET_CHECK_CACHE_MS: '1' } })
    const { user, tenantId, workspaceId, token } = await chat.member('spender')
    await setQuota(chat, user, workspaceId, { monthlyTokens: null, memberMonthlyTokens: 1000 })
    const colleague = await chat.user('saver')
    await chat.addMember(user, workspaceId, colleague, 'member')
    const colleagueToken = await chat.scopedToken(colleague, workspaceId)

    const first = await postChat(chat.gatewayUrl, token, chatBody())
    expect(first.status).toBe(200)
    await first.json()
    await appendModelUsage(
      chat,
      { tenantId, workspaceId, userId: user.id },
      { inputTokens: 700, outputTokens: 500 },
    )
    await sleep(5)

    const chatPosts = chatPostsOf(chat).length
    const refused = await postChat(chat.gatewayUrl, token, chatBody())
    expect(await expectError(refused, 429, 'GW_QUOTA_EXCEEDED')).toMatchObject({
      limitName: 'memberMonthlyTokens',
      scope: 'member',
      limit: 1000,
      used: 1200,
    })
    expect(chatPostsOf(chat)).toHaveLength(chatPosts)

    const theirs = await postChat(chat.gatewayUrl, colleagueToken, chatBody())
    expect(theirs.status).toBe(200)
    await theirs.json()
    expect(chatPostsOf(chat)).toHaveLength(chatPosts + 1)
  })
})
