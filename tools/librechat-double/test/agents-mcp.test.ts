import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  api,
  chatBody,
  type Frame,
  kindOf,
  readStream,
  type Stack,
  startChat,
  startStack,
  type TestUser,
} from './helpers.js'
import { startMcpServer, type TestMcpServer } from './mcp-server.js'

let stack: Stack
let mcp: TestMcpServer
beforeAll(async () => {
  mcp = await startMcpServer()
  stack = await startStack({
    mcpServers: [
      {
        name: 'docs',
        url: mcp.url,
        headers: {
          'X-LC-User': '{{LIBRECHAT_USER_ID}}',
          'X-LC-Convo': '{{LIBRECHAT_BODY_CONVERSATIONID}}',
        },
      },
    ],
    modelSpecs: [
      {
        name: 'docs-spec',
        label: 'Docs',
        preset: { endpoint: 'fakellm', model: 'fake-large' },
        mcpServers: ['docs'],
      },
    ],
  })
})
afterAll(async () => {
  await stack.close()
  await mcp.close()
})
beforeEach(() => stack.provider.reset())

interface OfferedTool {
  function: { name: string; description: string; parameters: Record<string, unknown> }
}
const offeredTools = (index: number) => {
  const body = stack.provider.calls[index]?.body as { tools?: OfferedTool[] } | undefined
  return (body?.tools ?? []).map((tool) => tool.function.name)
}

async function createAgent(user: TestUser, body: Record<string, unknown>): Promise<string> {
  const response = await api(stack, user, '/api/agents', { method: 'POST', json: body })
  return ((await response.json()) as { id: string }).id
}

describe('librechat-api.md §2.1/§4: ephemeralAgent.mcp attaches MCP tools, and tool calls go through MCP', () => {
  it('offers the server’s tools as OpenAI tools, calls the tool, and sends the result back to the provider', async () => {
    const user = await stack.createUser()
    stack.provider.behave({
      reply: 'The docs say hello',
      toolCall: { name: 'search_mcp_docs', arguments: { query: 'greetings' } },
    })
    const toolCallsBefore = mcp.toolCalls.length
    const started = await startChat(stack, user, { ephemeralAgent: { mcp: ['docs', 'nosuch'] } })
    const frames = await readStream(stack, user, started.streamId)
    expect(frames.map(kindOf)).toEqual([
      'created',
      'on_context_usage',
      'on_run_step',
      'on_run_step_completed',
      'on_run_step',
      'on_message_delta',
      'on_message_delta',
      'on_message_delta',
      'on_message_delta',
      'final',
    ])
    const [, , toolStep, completed, textStep] = frames as [Frame, Frame, Frame, Frame, Frame]
    expect(toolStep.data.data).toMatchObject({
      type: 'tool_calls',
      index: 0,
      stepDetails: { type: 'tool_calls', tool_calls: [{ name: 'search_mcp_docs' }] },
    })
    expect(completed.data.data?.result).toMatchObject({
      id: toolStep.data.data?.id,
      tool_call: {
        name: 'search_mcp_docs',
        args: '{"query":"greetings"}',
        output: '3 results for greetings',
      },
    })
    expect(textStep.data.data).toMatchObject({ type: 'message_creation', index: 1 })
    expect(mcp.toolCalls.slice(toolCallsBefore)).toEqual([
      { name: 'search', args: { query: 'greetings' } },
    ])
    expect(offeredTools(0)).toEqual(['search_mcp_docs', 'summarize_mcp_docs'])
    const followUp = stack.provider.calls[1]?.body as { messages: Array<Record<string, unknown>> }
    expect(followUp.messages.at(-2)).toMatchObject({
      role: 'assistant',
      tool_calls: [{ type: 'function', function: { name: 'search_mcp_docs' } }],
    })
    expect(followUp.messages.at(-1)).toMatchObject({
      role: 'tool',
      content: '3 results for greetings',
    })
    expect(frames.at(-1)?.data.responseMessage?.content).toEqual([
      {
        type: 'tool_call',
        tool_call: {
          id: expect.any(String),
          name: 'search_mcp_docs',
          args: '{"query":"greetings"}',
          output: '3 results for greetings',
          progress: 1,
        },
      },
      { type: 'text', text: 'The docs say hello' },
    ])
    const lastMcpHeaders = mcp.requests.at(-1) ?? {}
    expect(lastMcpHeaders['x-lc-user']).toBe(user.id)
    expect(lastMcpHeaders['x-lc-convo']).toBe(started.conversationId)
  })

  it('attaches no tools without ephemeralAgent.mcp, and a model spec’s servers and model when spec is named', async () => {
    const user = await stack.createUser()
    const plain = await startChat(stack, user)
    await readStream(stack, user, plain.streamId)
    expect(stack.provider.calls[0]?.body).not.toHaveProperty('tools')

    const withSpec = await startChat(stack, user, { spec: 'docs-spec', model: 'fake-small' })
    await readStream(stack, user, withSpec.streamId)
    expect(stack.provider.calls[1]?.body).toMatchObject({ model: 'fake-large' })
    expect(offeredTools(1)).toEqual(['search_mcp_docs', 'summarize_mcp_docs'])

    const mismatch = await api(stack, user, '/api/agents/chat/agents', {
      method: 'POST',
      json: chatBody({ spec: 'docs-spec', endpoint: 'elsewhere', endpointType: 'custom' }),
    })
    expect(await mismatch.text()).toBe('event: error\ndata: {"text":"Model spec mismatch"}\n\n')
  })
})

describe('librechat-api.md §2.1: endpoint "agents" + agent_id takes model, provider and tools from the agent document', () => {
  it('runs the stored agent: its instructions, model and only its MCP tools; the response model is the agent id', async () => {
    const user = await stack.createUser()
    const agentId = await createAgent(user, {
      name: 'Doc bot',
      instructions: 'Answer from the docs.',
      provider: 'fakellm',
      model: 'fake-large',
      tools: ['summarize_mcp_docs', 'sys__server__sys_mcp_docs'],
    })
    const started = await startChat(stack, user, {
      endpoint: 'agents',
      endpointType: undefined,
      agent_id: agentId,
      model: 'fake-small',
    })
    const frames = await readStream(stack, user, started.streamId)
    expect(stack.provider.calls[0]?.body).toMatchObject({
      model: 'fake-large',
      messages: [
        { role: 'system', content: 'Answer from the docs.' },
        { role: 'user', content: 'Hello there' },
      ],
    })
    expect(offeredTools(0)).toEqual(['summarize_mcp_docs'])
    expect(frames.at(-1)?.data).toMatchObject({
      conversation: { endpoint: 'agents', agent_id: agentId, model: 'fake-large' },
      responseMessage: { model: agentId, sender: 'Doc bot', endpoint: 'agents' },
    })
  })

  it('uses every tool of a server for sys__all__sys_mcp_<server>', async () => {
    const user = await stack.createUser()
    const agentId = await createAgent(user, {
      provider: 'fakellm',
      model: 'fake-small',
      tools: ['sys__all__sys_mcp_docs'],
    })
    const started = await startChat(stack, user, { endpoint: 'agents', agent_id: agentId })
    await readStream(stack, user, started.streamId)
    expect(offeredTools(0)).toEqual(['search_mcp_docs', 'summarize_mcp_docs'])
  })

  it("refuses another user's agent (403), an unknown agent (404) and a missing agent_id (400) before anything runs", async () => {
    const owner = await stack.createUser()
    const other = await stack.createUser()
    const agentId = await createAgent(owner, { provider: 'fakellm', model: 'fake-small' })
    const post = (user: TestUser, overrides: Record<string, unknown>) =>
      api(stack, user, '/api/agents/chat/agents', {
        method: 'POST',
        json: chatBody({ endpoint: 'agents', ...overrides }),
      })
    const foreign = await post(other, { agent_id: agentId })
    expect(foreign.status).toBe(403)
    expect(await foreign.json()).toEqual({
      error: 'Forbidden',
      message: 'Insufficient permissions to access this agent',
    })
    const unknown = await post(other, { agent_id: 'agent_nope' })
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toEqual({ error: 'Not Found', message: 'agent not found' })
    const missing = await post(other, {})
    expect(missing.status).toBe(400)
    expect(await missing.json()).toEqual({
      error: 'Bad Request',
      message: 'agent_id is required in request body',
    })
    expect(stack.provider.calls).toHaveLength(0)
  })

  it('records an illegal_model_request when the agent’s model is not listed for its provider', async () => {
    const user = await stack.createUser()
    const agentId = await createAgent(user, { provider: 'fakellm', model: 'fake-unlisted' })
    const before = stack.double.violations.length
    const started = await startChat(stack, user, { endpoint: 'agents', agent_id: agentId })
    expect(await readStream(stack, user, started.streamId)).toEqual([
      { event: 'error', data: { error: 'Illegal model request: fake-unlisted' } },
    ])
    expect(stack.double.violations.slice(before)).toEqual([
      { type: 'illegal_model_request', userId: user.id, ip: '127.0.0.1' },
    ])
  })
})
