import { mongo } from 'mongoose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, type MessageShape, readStream, type Stack, startChat, startStack } from './helpers.js'
import { startMcpServer, type TestMcpServer } from './mcp-server.js'

let stack: Stack
let mcp: TestMcpServer
beforeAll(async () => {
  mcp = await startMcpServer()
  stack = await startStack({
    mcpServers: [{ name: 'docs', url: mcp.url, headers: { 'X-LC-User': '{{LIBRECHAT_USER_ID}}' } }],
    modelSpecs: [
      {
        name: 'fast',
        label: 'Fast',
        preset: { endpoint: 'fakellm', model: 'fake-small' },
        mcpServers: ['docs'],
      },
    ],
    balanceEnabled: true,
  })
})
afterAll(async () => {
  await stack.close()
  await mcp.close()
})

interface AgentShape {
  _id: string
  id: string
  author: string
  name?: string
  provider: string
  model: string
  tools: string[]
}

interface AgentList {
  object: string
  data: AgentShape[]
  first_id: string | null
  last_id: string | null
  has_more: boolean
  after: string | null
}

const createAgent = async (user: Parameters<typeof api>[1], body: Record<string, unknown>) => {
  const response = await api(stack, user, '/api/agents', { method: 'POST', json: body })
  return { status: response.status, agent: (await response.json()) as AgentShape }
}

describe('librechat-api.md §9: GET /api/models, /api/endpoints, /api/config with the shapes of §3', () => {
  it('lists the built-in endpoints with their default models, agents:[] and each custom endpoint’s models', async () => {
    const user = await stack.createUser()
    const models = (await (await api(stack, user, '/api/models')).json()) as Record<
      string,
      string[]
    >
    expect(Object.keys(models).sort()).toEqual(
      ['agents', 'anthropic', 'assistants', 'fakellm', 'google', 'openAI'].sort(),
    )
    expect(models.fakellm).toEqual(['fake-small', 'fake-large'])
    expect(models.agents).toEqual([])
    expect(models.openAI?.length).toBeGreaterThan(0)
    expect((await api(stack, undefined, '/api/models')).status).toBe(401)
  })

  it('answers /api/endpoints (authenticated in v0.8.7) with agents and the custom endpoints', async () => {
    const user = await stack.createUser()
    expect(await (await api(stack, user, '/api/endpoints')).json()).toEqual({
      agents: {
        order: 1,
        userProvide: false,
        disableBuilder: false,
        capabilities: ['execute_code', 'file_search', 'actions', 'tools'],
      },
      fakellm: {
        type: 'custom',
        order: 9999,
        userProvide: false,
        userProvideURL: false,
        modelDisplayLabel: 'fakellm',
      },
    })
    expect((await api(stack, undefined, '/api/endpoints')).status).toBe(401)
  })

  it('answers /api/config without a token with the login subset only, and with one adds interface and modelSpecs', async () => {
    const anonymous = (await (await api(stack, undefined, '/api/config')).json()) as Record<
      string,
      unknown
    >
    expect(anonymous).toMatchObject({
      appTitle: 'LibreChat',
      registrationEnabled: true,
      emailLoginEnabled: true,
      socialLogins: ['github', 'google', 'discord', 'openid', 'facebook', 'apple', 'saml'],
      serverDomain: stack.double.url,
    })
    expect(anonymous).not.toHaveProperty('interface')
    expect(anonymous).not.toHaveProperty('modelSpecs')
    expect(anonymous).not.toHaveProperty('mcpServers')

    const user = await stack.createUser()
    const full = (await (await api(stack, user, '/api/config')).json()) as Record<string, unknown>
    expect(full).toMatchObject({
      registrationEnabled: true,
      interface: { agents: true },
      modelSpecs: {
        list: [
          {
            name: 'fast',
            label: 'Fast',
            preset: { endpoint: 'fakellm', model: 'fake-small' },
            mcpServers: ['docs'],
          },
        ],
      },
      balance: { enabled: true },
    })
    expect(full).not.toHaveProperty('mcpServers')
  })
})

describe('librechat-api.md §9: GET /api/mcp/tools, /api/mcp/connection/status with the shapes of §4.1', () => {
  it('lists each server’s tools with <tool>_mcp_<server> plugin keys, connecting with the user’s resolved headers', async () => {
    const user = await stack.createUser()
    const before = await (await api(stack, user, '/api/mcp/connection/status')).json()
    expect(before).toEqual({
      success: true,
      connectionStatus: { docs: { connectionState: 'disconnected', requiresOAuth: false } },
    })
    const seen = mcp.requests.length
    const tools = await (await api(stack, user, '/api/mcp/tools')).json()
    expect(tools).toEqual({
      servers: {
        docs: {
          name: 'docs',
          icon: '',
          authenticated: true,
          authConfig: [],
          tools: [
            { name: 'search', pluginKey: 'search_mcp_docs', description: 'Search the docs' },
            { name: 'summarize', pluginKey: 'summarize_mcp_docs', description: 'Summarize a page' },
          ],
        },
      },
    })
    expect(mcp.requests.slice(seen).every((headers) => headers['x-lc-user'] === user.id)).toBe(true)
    expect(await (await api(stack, user, '/api/mcp/connection/status/docs')).json()).toEqual({
      success: true,
      serverName: 'docs',
      connectionStatus: 'connected',
      requiresOAuth: false,
    })
    const other = await stack.createUser()
    const unknown = await api(stack, other, '/api/mcp/connection/status/nosuch')
    expect(unknown.status).toBe(404)
    const otherStatus = (await (await api(stack, other, '/api/mcp/connection/status')).json()) as {
      connectionStatus: { docs: { connectionState: string } }
    }
    expect(otherStatus.connectionStatus.docs.connectionState).toBe('disconnected')
  })
})

describe('librechat-api.md §9: /api/agents with the shapes of §5.1, owned per user', () => {
  it('creates an agent (201, agent_ id) and drops MCP tool keys of servers it does not know', async () => {
    const user = await stack.createUser()
    const { status, agent } = await createAgent(user, {
      name: 'Researcher',
      provider: 'fakellm',
      model: 'fake-small',
      tools: ['search_mcp_docs', 'x_mcp_unknownserver', 'a_mcp_b_mcp_c', 'web_search'],
      edges: [{ from: 'a', to: 'b' }],
    })
    expect(status).toBe(201)
    expect(agent).toMatchObject({
      name: 'Researcher',
      provider: 'fakellm',
      model: 'fake-small',
      author: user.id,
      tools: ['search_mcp_docs', 'web_search'],
      edges: [{ from: 'a', to: 'b' }],
    })
    expect(agent.id).toMatch(/^agent_[A-Za-z0-9_-]{21}$/)
  })

  it('refuses an agent without provider or model with 400', async () => {
    const user = await stack.createUser()
    const { status } = await createAgent(user, { name: 'Incomplete', provider: 'fakellm' })
    expect(status).toBe(400)
  })

  it('lists only the user’s own agents, newest first, with cursor pagination', async () => {
    const user = await stack.createUser()
    const other = await stack.createUser()
    const first = (await createAgent(user, { provider: 'fakellm', model: 'fake-small' })).agent
    const second = (await createAgent(user, { provider: 'fakellm', model: 'fake-large' })).agent
    await createAgent(other, { provider: 'fakellm', model: 'fake-small' })
    const page = (await (await api(stack, user, '/api/agents?limit=1')).json()) as AgentList
    expect(page).toMatchObject({
      object: 'list',
      first_id: second.id,
      last_id: second.id,
      has_more: true,
    })
    expect(page.data.map((agent) => agent.id)).toEqual([second.id])
    const next = (await (
      await api(stack, user, `/api/agents?limit=1&cursor=${page.after}`)
    ).json()) as AgentList
    expect(next).toMatchObject({ data: [{ id: first.id }], has_more: false, after: null })
  })

  it("answers another user's agent with 403 and an unknown one with 404, for GET, PATCH and DELETE", async () => {
    const owner = await stack.createUser()
    const other = await stack.createUser()
    const { agent } = await createAgent(owner, { provider: 'fakellm', model: 'fake-small' })
    for (const method of ['GET', 'PATCH', 'DELETE']) {
      const init = method === 'PATCH' ? { method, json: { name: 'stolen' } } : { method }
      const foreign = await api(stack, other, `/api/agents/${agent.id}`, init)
      expect(foreign.status).toBe(403)
      expect(await foreign.json()).toEqual({
        error: 'Forbidden',
        message: 'Insufficient permissions to access this agent',
      })
      const unknown = await api(stack, other, '/api/agents/agent_doesnotexist', init)
      expect(unknown.status).toBe(404)
      expect(await unknown.json()).toEqual({ error: 'Not Found', message: 'agent not found' })
    }
    const patched = await api(stack, owner, `/api/agents/${agent.id}`, {
      method: 'PATCH',
      json: { name: 'Renamed', tools: ['summarize_mcp_docs', 'q_mcp_elsewhere'] },
    })
    expect(await patched.json()).toMatchObject({ name: 'Renamed', tools: ['summarize_mcp_docs'] })
    const deleted = await api(stack, owner, `/api/agents/${agent.id}`, { method: 'DELETE' })
    expect(await deleted.json()).toEqual({ message: 'Agent deleted' })
    expect((await api(stack, owner, `/api/agents/${agent.id}`)).status).toBe(404)
  })
})

describe('librechat-api.md §9: /api/convos and /api/messages/:id with the shapes of §5.2–5.3, per user', () => {
  it('lists the user’s conversations and messages and hides them from everyone else', async () => {
    const user = await stack.createUser()
    const other = await stack.createUser()
    const started = await startChat(stack, user, { text: 'Remember this' })
    await readStream(stack, user, started.streamId)

    const list = (await (await api(stack, user, '/api/convos')).json()) as {
      conversations: Array<Record<string, unknown>>
      nextCursor: string | null
    }
    expect(list.nextCursor).toBeNull()
    expect(list.conversations).toHaveLength(1)
    expect(list.conversations[0]).toMatchObject({
      conversationId: started.conversationId,
      title: 'New Chat',
      endpoint: 'fakellm',
      endpointType: 'custom',
      model: 'fake-small',
      user: user.id,
    })
    expect(await (await api(stack, other, '/api/convos')).json()).toEqual({
      conversations: [],
      nextCursor: null,
    })

    const convo = await api(stack, user, `/api/convos/${started.conversationId}`)
    expect(convo.status).toBe(200)
    const hidden = await api(stack, other, `/api/convos/${started.conversationId}`)
    expect(hidden.status).toBe(404)
    expect(await hidden.text()).toBe('')

    const messages = (await (
      await api(stack, user, `/api/messages/${started.conversationId}`)
    ).json()) as MessageShape[]
    expect(messages).toHaveLength(2)
    expect(messages[0]).toMatchObject({
      text: 'Remember this',
      isCreatedByUser: true,
      sender: 'User',
    })
    expect(messages[1]).toMatchObject({
      isCreatedByUser: false,
      parentMessageId: messages[0]?.messageId,
      content: [{ type: 'text', text: 'Hello from the fake provider.' }],
      tokenCount: Math.ceil('Hello from the fake provider.'.length / 4),
    })
    expect(
      await (await api(stack, other, `/api/messages/${started.conversationId}`)).json(),
    ).toEqual([])
  })

  it('pages conversations with an opaque cursor', async () => {
    const user = await stack.createUser()
    const ids: string[] = []
    for (let index = 0; index < 3; index += 1) {
      const started = await startChat(stack, user)
      await readStream(stack, user, started.streamId)
      ids.push(started.conversationId)
    }
    const first = (await (await api(stack, user, '/api/convos?limit=2')).json()) as {
      conversations: Array<{ conversationId: string }>
      nextCursor: string | null
    }
    expect(first.conversations.map((convo) => convo.conversationId)).toEqual([ids[2], ids[1]])
    const second = (await (
      await api(stack, user, `/api/convos?limit=2&cursor=${first.nextCursor}`)
    ).json()) as { conversations: Array<{ conversationId: string }>; nextCursor: string | null }
    expect(second.conversations.map((convo) => convo.conversationId)).toEqual([ids[0]])
    expect(second.nextCursor).toBeNull()
  })
})

describe('librechat-api.md §9: POST /api/files (multipart file + file_id + endpoint), GET /api/balance', () => {
  const upload = (user: Parameters<typeof api>[1], fields: Record<string, string>, file = true) => {
    const form = new FormData()
    if (file) form.append('file', new Blob(['hello file'], { type: 'text/plain' }), 'notes.txt')
    for (const [name, value] of Object.entries(fields)) form.append(name, value)
    return api(stack, user, '/api/files', { method: 'POST', body: form })
  }

  it('stores an upload and answers with the server file_id and the client temp_file_id', async () => {
    const user = await stack.createUser()
    const response = await upload(user, { file_id: 'client-uuid-1', endpoint: 'fakellm' })
    expect(response.status).toBe(200)
    const body = (await response.json()) as Record<string, unknown>
    expect(body).toMatchObject({
      message: 'File uploaded and processed successfully',
      temp_file_id: 'client-uuid-1',
      filename: 'notes.txt',
      bytes: 10,
      type: 'text/plain',
      source: 'local',
      user: user.id,
      object: 'file',
    })
    expect(body.file_id).toMatch(/^[0-9a-f-]{36}$/)
    expect(body.filepath).toBe(`/uploads/${user.id}/${body.file_id}__notes.txt`)
  })

  it('refuses uploads without file, file_id or endpoint, from non-browsers and without a token', async () => {
    const user = await stack.createUser()
    expect((await upload(user, { endpoint: 'fakellm' })).status).toBe(400)
    expect((await upload(user, { file_id: 'x' })).status).toBe(400)
    expect((await upload(user, { file_id: 'x', endpoint: 'fakellm' }, false)).status).toBe(400)
    const form = new FormData()
    form.append('file', new Blob(['x']), 'x.txt')
    const bot = await api(stack, user, '/api/files', {
      method: 'POST',
      body: form,
      headers: { 'user-agent': 'python-requests/2.32' },
    })
    expect(await bot.text()).toBe('event: error\ndata: {"message":"Illegal request"}\n\n')
    expect((await api(stack, undefined, '/api/files', { method: 'POST', body: form })).status).toBe(
      401,
    )
  })

  it('answers the balance row, or 404 without one', async () => {
    const user = await stack.createUser()
    expect((await api(stack, user, '/api/balance')).status).toBe(404)
    await stack.db
      .collection('balances')
      .insertOne({ user: new mongo.ObjectId(user.id), tokenCredits: 20000 })
    expect(await (await api(stack, user, '/api/balance')).json()).toEqual({
      tokenCredits: 20000,
      autoRefillEnabled: false,
    })
  })

  it('answers 204 when balance is disabled (v0.8.7)', async () => {
    const plain = await startStack()
    try {
      const user = await plain.createUser()
      const response = await api(plain, user, '/api/balance')
      expect(response.status).toBe(204)
      expect(await response.text()).toBe('')
    } finally {
      await plain.close()
    }
  })
})
