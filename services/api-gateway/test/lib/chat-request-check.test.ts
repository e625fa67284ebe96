import { describe, expect, it } from 'vitest'
import { compilePolicy, type IngressPolicy } from '../../src/lib/allowlist.js'
import {
  type ChatRequestContext,
  checkChatRequest,
  checkModelSpec,
  MAX_ADDED_CONVO_DEPTH,
} from '../../src/lib/chat-request-check.js'

const basePolicy: IngressPolicy = {
  workspaceName: 'Research',
  models: { allow: ['oai:gpt-4o-mini', 'claude:claude-*', 'ollama:llama3:*'] },
  mcp: { servers: ['workspace-tools', 'github'], tools: { github: ['search_*'] } },
  params: { maxOutputTokens: 4096, temperature: { max: 1 } },
}

/** LibreChat's `modelSpecs.list` as `librechat.yaml` would configure it. */
const modelSpecs = [
  {
    name: 'fast',
    label: 'Fast',
    preset: { endpoint: 'oai', model: 'gpt-4o-mini', max_tokens: 100_000 },
    mcpServers: ['github'],
  },
  { name: 'big', label: 'Big', preset: { endpoint: 'oai', model: 'gpt-4o' } },
  {
    name: 'jira',
    label: 'Jira',
    preset: { endpoint: 'oai', model: 'gpt-4o-mini' },
    mcpServers: ['github', 'jira'],
  },
  {
    name: 'team',
    label: 'Team',
    preset: { endpoint: 'agents', agent_id: 'agent_team' },
    subagents: { enabled: true, agent_ids: ['agent_sub1', 'agent_sub2'] },
  },
]

function context(policy: Partial<IngressPolicy> = {}): ChatRequestContext {
  return { matcher: compilePolicy({ ...basePolicy, ...policy }), modelSpecs }
}
const ctx = context()

/** A chat body as LibreChat's UI sends it for a custom endpoint (reference §2.1). */
const chatBody = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
  text: 'Hello',
  endpoint: 'oai',
  endpointType: 'custom',
  model: 'gpt-4o-mini',
  conversationId: null,
  parentMessageId: '00000000-0000-0000-0000-000000000000',
  messageId: '6f1c1a52-8d4e-4c38-9a83-4c7c3f0d1f10',
  sender: 'User',
  isCreatedByUser: true,
  ephemeralAgent: { mcp: ['github'], web_search: false, file_search: false, execute_code: false },
  isTemporary: false,
  ...fields,
})

const refusedModel = (subject: string) => ({
  ok: false,
  code: 'GW_MODEL_NOT_ALLOWED',
  subject,
  message: `Model ${subject} is not allowed in workspace Research`,
})
const refusedServer = (server: string) => ({
  ok: false,
  code: 'GW_MCP_NOT_ALLOWED',
  subject: `MCP server ${server}`,
  message: `MCP server ${server} is not allowed in workspace Research`,
})
const invalid = (message: string) => ({ ok: false, code: 'GW_VALIDATION', message })

describe('checkChatRequest: ephemeral chats', () => {
  it('allows an allowed model and MCP server, and sets the output cap the endpoint reads', () => {
    const body = chatBody()
    expect(checkChatRequest(body, ctx)).toEqual({
      ok: true,
      body: { ...body, max_tokens: 4096 },
      agentIds: [],
    })
  })

  it('leaves the client body untouched and returns a new one', () => {
    const body = chatBody()
    const result = checkChatRequest(body, ctx)
    expect(result.ok && result.body).not.toBe(body)
    expect(body).not.toHaveProperty('max_tokens')
  })

  it.each([
    ['claude', 'claude-3-5-sonnet-latest'],
    ['ollama', 'llama3:70b'],
  ])('allows %s:%s', (endpoint, model) => {
    expect(checkChatRequest(chatBody({ endpoint, model }), ctx)).toMatchObject({ ok: true })
  })

  it('refuses a model outside the allow list, naming it and the workspace', () => {
    expect(checkChatRequest(chatBody({ model: 'gpt-4o' }), ctx)).toEqual(refusedModel('oai:gpt-4o'))
  })

  it.each([
    ['openAI', 'gpt-4o-mini'],
    ['anthropic', 'claude-3-5-sonnet'],
    ['azureOpenAI', 'gpt-4o-mini'],
    ['google', 'gemini-1.5-pro'],
    ['bedrock', 'claude-3'],
    ['assistants', 'gpt-4o-mini'],
    ['gptPlugins', 'gpt-4o-mini'],
    ['custom', 'gpt-4o-mini'],
  ])('refuses the built-in endpoint %s, which bypasses the egress', (endpoint, model) => {
    expect(checkChatRequest(chatBody({ endpoint, model }), ctx)).toEqual(
      refusedModel(`${endpoint}:${model}`),
    )
  })

  it('refuses built-ins even when every provider is allowed', () => {
    expect(
      checkChatRequest(chatBody({ endpoint: 'openAI' }), context({ models: { allow: ['*:*'] } })),
    ).toEqual(refusedModel('openAI:gpt-4o-mini'))
  })

  it.each([
    ['oai', 'claude:claude-3-opus', 'oai:claude:claude-3-opus'],
    ['oai', 'oai:gpt-4o-mini', 'oai:oai:gpt-4o-mini'],
    ['claude', 'gpt-4o-mini', 'claude:gpt-4o-mini'],
    ['OAI', 'gpt-4o-mini', 'OAI:gpt-4o-mini'],
    ['Oai', 'gpt-4o-mini', 'Oai:gpt-4o-mini'],
    ['Ollama', 'llama3:8b', 'Ollama:llama3:8b'],
    [' oai', 'gpt-4o-mini', ' oai:gpt-4o-mini'],
    ['oai\t', 'gpt-4o-mini', 'oai?:gpt-4o-mini'],
    ['oai', 'gpt-4o-mini ', 'oai:gpt-4o-mini '],
    ['oai', ' gpt-4o-mini', 'oai: gpt-4o-mini'],
    ['\u043eai', 'gpt-4o-mini', '\u043eai:gpt-4o-mini'],
    ['oai', 'gpt-4\u043e-mini', 'oai:gpt-4\u043e-mini'],
    ['oai', 'gpt-4o-mini\u200b', 'oai:gpt-4o-mini?'],
    ['oai', 'gpt-4o-*', 'oai:gpt-4o-*'],
    ['oai', '*', 'oai:*'],
    ['*', 'gpt-4o-mini', '*:gpt-4o-mini'],
    ['ollama:llama3', '70b', 'ollama:llama3:70b'],
  ])('refuses the provider trick %j + %j', (endpoint, model, subject) => {
    expect(checkChatRequest(chatBody({ endpoint, model }), ctx)).toEqual(refusedModel(subject))
  })

  it.each([
    [{ endpoint: undefined }, 'endpoint must be a non-empty string'],
    [{ endpoint: '' }, 'endpoint must be a non-empty string'],
    [{ endpoint: ['oai'] }, 'endpoint must be a non-empty string'],
    [{ model: undefined }, 'model must be a string'],
    [{ model: null }, 'model must be a string'],
    [{ model: 42 }, 'model must be a string'],
    [{ model: ['gpt-4o-mini'] }, 'model must be a string'],
    [{ model: { $ne: null } }, 'model must be a string'],
  ])('refuses a malformed endpoint or model %j', (fields, message) => {
    expect(checkChatRequest(chatBody(fields), ctx)).toEqual(invalid(message))
  })

  it.each([null, 'text', 42, [chatBody()], undefined])(
    'refuses a body that is not an object: %j',
    (body) => {
      expect(checkChatRequest(body, ctx)).toEqual(
        invalid('The chat request body must be a JSON object'),
      )
    },
  )
})

describe('checkChatRequest: MCP servers of an ephemeral agent', () => {
  it('allows the listed servers and no servers at all', () => {
    expect(
      checkChatRequest(chatBody({ ephemeralAgent: { mcp: ['github', 'workspace-tools'] } }), ctx),
    ).toMatchObject({ ok: true })
    expect(checkChatRequest(chatBody({ ephemeralAgent: { mcp: [] } }), ctx)).toMatchObject({
      ok: true,
    })
    expect(checkChatRequest(chatBody({ ephemeralAgent: undefined }), ctx)).toMatchObject({
      ok: true,
    })
    expect(checkChatRequest(chatBody({ ephemeralAgent: { mcp: null } }), ctx)).toMatchObject({
      ok: true,
    })
  })

  it.each(['gitlab', 'GitHub', 'github ', 'constructor', '__proto__', '*'])(
    'refuses the server %j',
    (server) => {
      expect(
        checkChatRequest(chatBody({ ephemeralAgent: { mcp: ['github', server] } }), ctx),
      ).toEqual(refusedServer(server))
    },
  )

  it.each([['github'], [{ 0: 'github' }], [[42]], [[['github']]], [[null]]])(
    'refuses mcp %j, which is not an array of names',
    (mcp) => {
      expect(checkChatRequest(chatBody({ ephemeralAgent: { mcp } }), ctx)).toEqual(
        invalid('ephemeralAgent.mcp must be an array of MCP server names'),
      )
    },
  )

  it('finds one bad server in a huge list', () => {
    const mcp = Array.from({ length: 200_000 }, () => 'github')
    expect(checkChatRequest(chatBody({ ephemeralAgent: { mcp } }), ctx)).toMatchObject({
      ok: true,
    })
    mcp.push('gitlab')
    expect(checkChatRequest(chatBody({ ephemeralAgent: { mcp } }), ctx)).toEqual(
      refusedServer('gitlab'),
    )
  })

  it('checks the servers of a saved-agent chat too', () => {
    expect(
      checkChatRequest(
        chatBody({ endpoint: 'agents', agent_id: 'agent_abc', ephemeralAgent: { mcp: ['jira'] } }),
        ctx,
      ),
    ).toEqual(refusedServer('jira'))
  })
})

describe('checkChatRequest: parameter caps', () => {
  const capped = (fields: Record<string, unknown>) => {
    const result = checkChatRequest(chatBody(fields), ctx)
    if (!result.ok) throw new Error(result.message)
    return result.body
  }

  it.each([
    [{ max_tokens: 100 }, { max_tokens: 100 }],
    [{ max_tokens: 4096 }, { max_tokens: 4096 }],
    [{ max_tokens: 100_000 }, { max_tokens: 4096 }],
    [{ max_tokens: 0 }, { max_tokens: 0 }],
    [{ max_tokens: '100' }, { max_tokens: '100' }],
    [{ max_tokens: ' 100000 ' }, { max_tokens: 4096 }],
    [{ max_tokens: null }, { max_tokens: 4096 }],
    [{ max_tokens: '' }, { max_tokens: 4096 }],
    [{ max_tokens: '  ' }, { max_tokens: 4096 }],
    [{ maxOutputTokens: 8192 }, { maxOutputTokens: 4096 }],
    [
      { maxTokens: 9000, max_tokens: 10 },
      { maxTokens: 4096, max_tokens: 10 },
    ],
  ])('caps %j to %j', (fields, expected) => {
    const body = capped(fields)
    expect(body).toMatchObject(expected)
    for (const field of ['max_tokens', 'maxOutputTokens', 'maxTokens']) {
      if (!Object.hasOwn(expected, field)) expect(body).not.toHaveProperty(field)
    }
  })

  it.each([
    [undefined, 'max_tokens'],
    ['custom', 'max_tokens'],
    ['openAI', 'max_tokens'],
    ['anthropic', 'maxOutputTokens'],
    ['google', 'maxOutputTokens'],
    ['bedrock', 'maxTokens'],
  ])('sets the output cap of endpointType %s in %s when none is given', (endpointType, field) => {
    const body = capped({ endpointType })
    expect(body[field]).toBe(4096)
  })

  it('never sets an output cap on a saved-agent chat, whose parameters LibreChat takes from the agent', () => {
    expect(capped({ endpoint: 'agents', agent_id: 'agent_abc' })).not.toHaveProperty('max_tokens')
  })

  it('leaves maxContextTokens alone: it is the context window, not an output cap', () => {
    expect(capped({ maxContextTokens: 128_000 })).toMatchObject({
      maxContextTokens: 128_000,
      max_tokens: 4096,
    })
  })

  it.each([
    [{ temperature: 1.7 }, 1],
    [{ temperature: 1 }, 1],
    [{ temperature: 0.2 }, 0.2],
    [{ temperature: 0 }, 0],
    [{ temperature: null }, null],
  ])('caps the temperature %j to %j', (fields, expected) => {
    expect(capped(fields).temperature).toBe(expected)
  })

  it('adds no temperature the client did not send', () => {
    expect(capped({})).not.toHaveProperty('temperature')
  })

  it('changes nothing when the policy has no caps', () => {
    const body = chatBody({ max_tokens: 100_000, temperature: 1.9 })
    expect(
      checkChatRequest(body, context({ params: { maxOutputTokens: null, temperature: null } })),
    ).toEqual({ ok: true, body, agentIds: [] })
  })

  it.each([
    ['max_tokens', -1],
    ['max_tokens', 'abc'],
    ['max_tokens', '-5'],
    ['max_tokens', '1e5'],
    ['max_tokens', true],
    ['max_tokens', {}],
    ['max_tokens', [100]],
    ['maxOutputTokens', -0.5],
    ['maxTokens', 'NaN'],
  ])('refuses %s = %j', (field, value) => {
    expect(checkChatRequest(chatBody({ [field]: value }), ctx)).toEqual(
      invalid(`${field} must be a non-negative number`),
    )
  })

  it('refuses an output cap that JSON turned into Infinity', () => {
    const body = JSON.parse('{"endpoint":"oai","model":"gpt-4o-mini","max_tokens":1e400}')
    expect(checkChatRequest(body, ctx)).toEqual(invalid('max_tokens must be a non-negative number'))
  })

  it.each([-0.1, '0.5', true, [1], { max: 1 }])('refuses the temperature %j', (temperature) => {
    expect(checkChatRequest(chatBody({ temperature }), ctx)).toEqual(
      invalid('temperature must be a non-negative number'),
    )
  })

  it('refuses a negative value even when the policy has no caps', () => {
    expect(
      checkChatRequest(
        chatBody({ max_tokens: -1 }),
        context({ params: { maxOutputTokens: null, temperature: null } }),
      ),
    ).toEqual(invalid('max_tokens must be a non-negative number'))
  })
})

describe('checkChatRequest: saved agents', () => {
  it('returns the agent to check and checks no body model', () => {
    const body = chatBody({ endpoint: 'agents', agent_id: 'agent_abc', model: 'gpt-4o' })
    expect(checkChatRequest(body, ctx)).toEqual({ ok: true, body, agentIds: ['agent_abc'] })
  })

  it.each([
    [undefined],
    [''],
    ['ephemeral'],
    ['agent_'],
    ['agent_../../api/user'],
    ['agent_a b'],
    [42],
    [{ $ne: '' }],
  ])('refuses the agents endpoint with agent_id %j', (agentId) => {
    expect(checkChatRequest(chatBody({ endpoint: 'agents', agent_id: agentId }), ctx)).toEqual(
      invalid('agent_id must name a saved agent (agent_…)'),
    )
  })

  it('ignores agent_id on a model endpoint, as LibreChat runs an ephemeral agent there', () => {
    expect(checkChatRequest(chatBody({ agent_id: 'agent_abc' }), ctx)).toMatchObject({
      ok: true,
      agentIds: [],
    })
    expect(checkChatRequest(chatBody({ agent_id: 'agent_abc', model: 'gpt-4o' }), ctx)).toEqual(
      refusedModel('oai:gpt-4o'),
    )
  })
})

describe('checkChatRequest: model specs', () => {
  it('allows a spec whose preset model and servers are allowed', () => {
    expect(checkChatRequest(chatBody({ spec: 'fast' }), ctx)).toMatchObject({
      ok: true,
      agentIds: [],
    })
  })

  it('refuses a spec whose preset model is not allowed, whatever the body model', () => {
    expect(checkChatRequest(chatBody({ spec: 'big' }), ctx)).toEqual(refusedModel('oai:gpt-4o'))
  })

  it('refuses a spec that brings in a disallowed MCP server', () => {
    expect(checkChatRequest(chatBody({ spec: 'jira' }), ctx)).toEqual(refusedServer('jira'))
  })

  it('returns the preset agent and the subagents of an agents spec', () => {
    expect(
      checkChatRequest(chatBody({ endpoint: 'agents', agent_id: 'agent_team', spec: 'team' }), ctx),
    ).toMatchObject({ ok: true, agentIds: ['agent_team', 'agent_sub1', 'agent_sub2'] })
  })

  it('passes an unknown spec name, which runs nothing of a spec', () => {
    expect(checkChatRequest(chatBody({ spec: 'nope' }), ctx)).toMatchObject({ ok: true })
    expect(checkChatRequest(chatBody({ spec: 'constructor' }), ctx)).toMatchObject({ ok: true })
  })

  it('refuses a spec that is not a string', () => {
    expect(checkChatRequest(chatBody({ spec: { name: 'fast' } }), ctx)).toEqual(
      invalid('spec must be a string'),
    )
  })

  it('checks a spec on its own (the listing filter uses it)', () => {
    expect(checkModelSpec(modelSpecs[0], ctx.matcher)).toEqual({ ok: true, agentIds: [] })
    expect(checkModelSpec({ name: 'x' }, ctx.matcher)).toEqual(
      invalid('The model spec has no preset'),
    )
    expect(
      checkModelSpec(
        { name: 'x', preset: { endpoint: 'oai', model: 'gpt-4o-mini' }, mcpServers: 'github' },
        ctx.matcher,
      ),
    ).toEqual(invalid('The model spec mcpServers must be an array of MCP server names'))
  })
})

describe('checkChatRequest: addedConvo', () => {
  it('allows an allowed second model and caps its parameters too', () => {
    const result = checkChatRequest(
      chatBody({
        addedConvo: {
          endpoint: 'claude',
          endpointType: 'custom',
          model: 'claude-3-haiku',
          max_tokens: 50_000,
        },
      }),
      ctx,
    )
    expect(result).toMatchObject({
      ok: true,
      body: {
        max_tokens: 4096,
        addedConvo: { endpoint: 'claude', model: 'claude-3-haiku', max_tokens: 4096 },
      },
      agentIds: [],
    })
  })

  it('refuses a disallowed second model', () => {
    expect(
      checkChatRequest(chatBody({ addedConvo: { endpoint: 'oai', model: 'gpt-4o' } }), ctx),
    ).toEqual(refusedModel('oai:gpt-4o'))
    expect(
      checkChatRequest(chatBody({ addedConvo: { endpoint: 'openAI', model: 'gpt-4o-mini' } }), ctx),
    ).toEqual(refusedModel('openAI:gpt-4o-mini'))
  })

  it('returns a saved second agent, whatever its endpoint says', () => {
    expect(
      checkChatRequest(
        chatBody({ addedConvo: { endpoint: 'openAI', model: 'gpt-4o', agent_id: 'agent_two' } }),
        ctx,
      ),
    ).toMatchObject({ ok: true, agentIds: ['agent_two'] })
  })

  it('returns each saved agent once', () => {
    expect(
      checkChatRequest(
        chatBody({
          endpoint: 'agents',
          agent_id: 'agent_one',
          addedConvo: { endpoint: 'agents', agent_id: 'agent_one' },
        }),
        ctx,
      ),
    ).toMatchObject({ ok: true, agentIds: ['agent_one'] })
  })

  it('refuses the MCP servers and the spec of a second conversation', () => {
    expect(
      checkChatRequest(
        chatBody({
          addedConvo: { endpoint: 'oai', model: 'gpt-4o-mini', ephemeralAgent: { mcp: ['jira'] } },
        }),
        ctx,
      ),
    ).toEqual(refusedServer('jira'))
    expect(
      checkChatRequest(
        chatBody({ addedConvo: { endpoint: 'oai', model: 'gpt-4o-mini', spec: 'big' } }),
        ctx,
      ),
    ).toEqual(refusedModel('oai:gpt-4o'))
  })

  it.each([
    ['a string', 'claude:claude-3'],
    ['an array', [{ endpoint: 'oai', model: 'gpt-4o' }]],
    ['a number', 1],
  ])('refuses addedConvo as %s', (_shape, addedConvo) => {
    expect(checkChatRequest(chatBody({ addedConvo }), ctx)).toEqual(
      invalid('addedConvo must be an object'),
    )
  })

  it('refuses an added conversation without a model or with a non-string agent_id', () => {
    expect(checkChatRequest(chatBody({ addedConvo: {} }), ctx)).toEqual(
      invalid('endpoint must be a non-empty string'),
    )
    expect(
      checkChatRequest(
        chatBody({ addedConvo: { endpoint: 'oai', model: 'gpt-4o-mini', agent_id: 7 } }),
        ctx,
      ),
    ).toEqual(invalid('addedConvo.agent_id must be a string'))
  })

  it('checks nested added conversations down to the limit', () => {
    const nested = (depth: number, last: Record<string, unknown>): Record<string, unknown> =>
      depth === 0
        ? last
        : { endpoint: 'oai', model: 'gpt-4o-mini', addedConvo: nested(depth - 1, last) }
    const allowed = { endpoint: 'ollama', model: 'llama3:8b' }
    const refused = { endpoint: 'oai', model: 'o3' }
    expect(
      checkChatRequest(chatBody({ addedConvo: nested(MAX_ADDED_CONVO_DEPTH - 1, allowed) }), ctx),
    ).toMatchObject({ ok: true })
    expect(
      checkChatRequest(chatBody({ addedConvo: nested(MAX_ADDED_CONVO_DEPTH - 1, refused) }), ctx),
    ).toEqual(refusedModel('oai:o3'))
    expect(
      checkChatRequest(chatBody({ addedConvo: nested(MAX_ADDED_CONVO_DEPTH, allowed) }), ctx),
    ).toEqual(invalid('addedConvo is nested too deeply'))
  })

  it('refuses a very deep chain quickly, without exhausting the stack', () => {
    let chain: Record<string, unknown> = { endpoint: 'oai', model: 'gpt-4o-mini' }
    for (let depth = 0; depth < 50_000; depth++) {
      chain = { endpoint: 'oai', model: 'gpt-4o-mini', addedConvo: chain }
    }
    expect(checkChatRequest(chatBody({ addedConvo: chain }), ctx)).toEqual(
      invalid('addedConvo is nested too deeply'),
    )
  })
})

describe('checkChatRequest: prototype pollution', () => {
  it('never reads the endpoint or model from a prototype', () => {
    const planted = JSON.parse('{"__proto__":{"endpoint":"oai","model":"gpt-4o-mini"},"text":"hi"}')
    expect(checkChatRequest(planted, ctx)).toEqual(invalid('endpoint must be a non-empty string'))
    const inherited = Object.assign(Object.create({ model: 'gpt-4o-mini' }), { endpoint: 'oai' })
    expect(checkChatRequest(inherited, ctx)).toEqual(invalid('model must be a string'))
  })

  it('keeps a "__proto__" key as plain data in the rewritten body and pollutes nothing', () => {
    const body = JSON.parse(
      '{"endpoint":"oai","model":"gpt-4o-mini","__proto__":{"polluted":true},"addedConvo":{"endpoint":"oai","model":"gpt-4o-mini","__proto__":{"polluted":true}}}',
    )
    const result = checkChatRequest(body, ctx)
    if (!result.ok) throw new Error(result.message)
    expect(Object.getPrototypeOf(result.body)).toBe(Object.prototype)
    expect(Object.hasOwn(result.body, '__proto__')).toBe(true)
    expect(JSON.stringify(result.body)).toContain('"__proto__":{"polluted":true}')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('does not take planted ephemeralAgent servers from a prototype', () => {
    const body = chatBody({ ephemeralAgent: JSON.parse('{"__proto__":{"mcp":["jira"]}}') })
    expect(checkChatRequest(body, ctx)).toMatchObject({ ok: true })
  })
})
