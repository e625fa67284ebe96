import { describe, expect, it } from 'vitest'
import {
  type AgentLoader,
  checkAgent,
  checkAgentGraph,
  checkAgentWrite,
  checkToolKeys,
  parseToolKey,
  referencedAgentIds,
} from '../../src/lib/agent-check.js'
import { compilePolicy, type IngressPolicy } from '../../src/lib/allowlist.js'

const policy: IngressPolicy = {
  workspaceName: 'Research',
  models: { allow: ['oai:gpt-4o-mini', 'claude:claude-*', 'ollama:llama3:*'] },
  mcp: { servers: ['workspace-tools', 'github'], tools: { github: ['search_*'] } },
  params: { maxOutputTokens: 4096, temperature: { max: 1 } },
}
const matcher = compilePolicy(policy)

const refusedModel = (subject: string) => ({
  ok: false,
  code: 'GW_MODEL_NOT_ALLOWED',
  subject,
  message: `Model ${subject} is not allowed in workspace Research`,
})
const refusedMcp = (subject: string) => ({
  ok: false,
  code: 'GW_MCP_NOT_ALLOWED',
  subject,
  message: `${subject} is not allowed in workspace Research`,
})
const invalid = (message: string) => ({ ok: false, code: 'GW_VALIDATION', message })

/** An agent document as `GET /api/agents/:id` returns it (v0.8.7 fields). */
const agentDoc = (fields: Record<string, unknown> = {}) => ({
  _id: '665f1c2e9b1e8a0012345678',
  id: 'agent_main',
  name: 'Researcher',
  provider: 'oai',
  model: 'gpt-4o-mini',
  model_parameters: { temperature: 0.2 },
  tools: ['web_search', 'search_issues_mcp_github', 'sys__all__sys_mcp_workspace-tools'],
  edges: [],
  ...fields,
})

describe('parseToolKey', () => {
  it.each([
    ['web_search', { kind: 'not-mcp' }],
    ['execute_code', { kind: 'not-mcp' }],
    ['search_mcp_github', { kind: 'mcp-tool', tool: 'search', server: 'github' }],
    ['search_mcp_mcp_tools', { kind: 'mcp-tool', tool: 'search', server: 'mcp_tools' }],
    ['sys__all__sys_mcp_github', { kind: 'mcp-server', server: 'github' }],
    ['sys__server__sys_mcp_github', { kind: 'mcp-server', server: 'github' }],
    ['a_mcp_b_mcp_c', { kind: 'malformed' }],
    ['search_mcp_', { kind: 'malformed' }],
    ['_mcp_github', { kind: 'malformed' }],
    ['_mcp_', { kind: 'malformed' }],
  ])('reads %s', (key, expected) => {
    expect(parseToolKey(key)).toEqual(expected)
  })
})

describe('checkToolKeys', () => {
  it('allows non-MCP tools, allowed tools, and whole allowed servers', () => {
    expect(
      checkToolKeys(
        [
          'web_search',
          'file_search',
          'search_code_mcp_github',
          'anything_mcp_workspace-tools',
          'sys__all__sys_mcp_github',
          'sys__server__sys_mcp_workspace-tools',
        ],
        matcher,
      ),
    ).toBeUndefined()
    expect(checkToolKeys(undefined, matcher)).toBeUndefined()
    expect(checkToolKeys(null, matcher)).toBeUndefined()
    expect(checkToolKeys([], matcher)).toBeUndefined()
  })

  it('refuses a tool outside the narrowed server, naming tool and server', () => {
    expect(checkToolKeys(['web_search', 'delete_repo_mcp_github'], matcher)).toEqual(
      refusedMcp('MCP tool delete_repo of server github'),
    )
  })

  it.each([
    ['search_mcp_gitlab', 'MCP server gitlab'],
    ['sys__all__sys_mcp_gitlab', 'MCP server gitlab'],
    ['sys__server__sys_mcp_gitlab', 'MCP server gitlab'],
    ['search_mcp_GitHub', 'MCP server GitHub'],
    ['search_mcp_constructor', 'MCP server constructor'],
    ['search_mcp___proto__', 'MCP server __proto__'],
  ])('refuses %s', (key, subject) => {
    expect(checkToolKeys([key], matcher)).toEqual(refusedMcp(subject))
  })

  it('refuses a key with two servers in it, which LibreChat would read either way', () => {
    expect(checkToolKeys(['search_mcp_github_mcp_gitlab'], matcher)).toEqual(
      invalid('Tool search_mcp_github_mcp_gitlab is not a valid MCP tool key'),
    )
  })

  it.each([
    ['search_mcp_github'],
    [{ 0: 'search_code_mcp_github' }],
    [42],
    [[42]],
    [[null]],
    [[['search_code_mcp_github']]],
  ])('refuses tools that are not an array of strings: %j', (tools) => {
    expect(checkToolKeys(tools, matcher)).toEqual(invalid('tools must be an array of tool keys'))
  })

  it('finds the one bad key in a huge list', () => {
    const tools = Array.from({ length: 100_000 }, (_, index) => `search_${index}_mcp_github`)
    expect(checkToolKeys(tools, matcher)).toBeUndefined()
    tools.push('drop_all_mcp_github')
    expect(checkToolKeys(tools, matcher)).toEqual(refusedMcp('MCP tool drop_all of server github'))
  })
})

describe('referencedAgentIds', () => {
  it('collects edges (both ends, single and list), the legacy chain and subagents, without itself', () => {
    expect(
      referencedAgentIds(
        agentDoc({
          edges: [
            { from: 'agent_main', to: 'agent_b', edgeType: 'handoff' },
            { from: ['agent_main', 'agent_c'], to: ['agent_d', 'agent_b'] },
          ],
          agent_ids: ['agent_e'],
          subagents: { enabled: true, agent_ids: ['agent_f', 'agent_main'] },
        }),
      ),
    ).toEqual(['agent_b', 'agent_c', 'agent_d', 'agent_e', 'agent_f'])
  })

  it('skips ids that cannot name a saved agent, and shapes it does not know', () => {
    expect(
      referencedAgentIds({
        edges: [
          { from: '../../api/user', to: 'ephemeral' },
          { from: 42, to: { $ne: '' } },
          'agent_x',
          null,
        ],
        agent_ids: 'agent_y',
        subagents: ['agent_z'],
      }),
    ).toEqual([])
    expect(referencedAgentIds(null)).toEqual([])
  })

  it('ignores references planted on the prototype', () => {
    const planted = JSON.parse('{"__proto__":{"agent_ids":["agent_x"]},"id":"agent_a"}')
    expect(referencedAgentIds(planted)).toEqual([])
  })
})

describe('checkAgent', () => {
  it('allows an agent with an allowed model and tools, and returns the agents it references', () => {
    expect(
      checkAgent(agentDoc({ edges: [{ from: 'agent_main', to: 'agent_helper' }] }), matcher),
    ).toEqual({ ok: true, agentIds: ['agent_helper'] })
  })

  it('allows an agent without a model: LibreChat cannot run it', () => {
    expect(checkAgent(agentDoc({ model: null }), matcher)).toEqual({ ok: true, agentIds: [] })
    expect(checkAgent(agentDoc({ model: '' }), matcher)).toEqual({ ok: true, agentIds: [] })
  })

  it.each([
    [{ provider: 'oai', model: 'gpt-4o' }, 'oai:gpt-4o'],
    [{ provider: 'openAI', model: 'gpt-4o-mini' }, 'openAI:gpt-4o-mini'],
    [{ provider: 'OAI', model: 'gpt-4o-mini' }, 'OAI:gpt-4o-mini'],
    [{ provider: 'oai', model: 'claude:claude-3' }, 'oai:claude:claude-3'],
    [{ provider: undefined, model: 'gpt-4o-mini' }, '(none):gpt-4o-mini'],
  ])('refuses %j', (fields, subject) => {
    expect(checkAgent(agentDoc(fields), matcher)).toEqual(refusedModel(subject))
  })

  it('refuses a non-string model and a document that is not an object', () => {
    expect(checkAgent(agentDoc({ model: ['gpt-4o-mini'] }), matcher)).toEqual(
      invalid('model must be a string'),
    )
    expect(checkAgent(null, matcher)).toEqual(invalid('The agent could not be read'))
    expect(checkAgent([agentDoc()], matcher)).toEqual(invalid('The agent could not be read'))
  })

  it('refuses an agent with a disallowed tool', () => {
    expect(checkAgent(agentDoc({ tools: ['sys__all__sys_mcp_jira'] }), matcher)).toEqual(
      refusedMcp('MCP server jira'),
    )
  })

  it('does not take a model from the prototype', () => {
    const agent = Object.assign(Object.create({ provider: 'oai', model: 'gpt-4o' }), {
      id: 'agent_main',
    })
    expect(checkAgent(agent, matcher)).toEqual({ ok: true, agentIds: [] })
  })
})

describe('checkAgentWrite', () => {
  it('allows a create body with an allowed model and tools', () => {
    expect(
      checkAgentWrite(
        {
          name: 'Helper',
          provider: 'claude',
          model: 'claude-3-5-sonnet',
          tools: ['search_code_mcp_github'],
          edges: [{ from: 'agent_new', to: 'agent_other' }],
        },
        matcher,
      ),
    ).toEqual({ ok: true, agentIds: ['agent_new', 'agent_other'] })
  })

  it('allows a PATCH that changes neither model, provider nor tools', () => {
    expect(checkAgentWrite({ name: 'Renamed', instructions: 'Be brief' }, matcher)).toEqual({
      ok: true,
      agentIds: [],
    })
  })

  it('refuses a disallowed model or tool', () => {
    expect(checkAgentWrite({ provider: 'oai', model: 'gpt-4o' }, matcher)).toEqual(
      refusedModel('oai:gpt-4o'),
    )
    expect(checkAgentWrite({ provider: 'anthropic', model: 'claude-3' }, matcher)).toEqual(
      refusedModel('anthropic:claude-3'),
    )
    expect(checkAgentWrite({ tools: ['push_mcp_github'] }, matcher)).toEqual(
      refusedMcp('MCP tool push of server github'),
    )
  })

  it('judges a PATCH of one of provider/model with the other from the stored agent', () => {
    const stored = agentDoc()
    expect(checkAgentWrite({ model: 'gpt-4o' }, matcher, stored)).toEqual(
      refusedModel('oai:gpt-4o'),
    )
    expect(checkAgentWrite({ provider: 'claude' }, matcher, stored)).toEqual(
      refusedModel('claude:gpt-4o-mini'),
    )
    expect(checkAgentWrite({ provider: 'ollama', model: 'llama3:8b' }, matcher, stored)).toEqual({
      ok: true,
      agentIds: [],
    })
    expect(
      checkAgentWrite({ edges: [{ from: 'agent_main', to: 'agent_x' }] }, matcher, stored),
    ).toEqual({ ok: true, agentIds: ['agent_x'] })
  })

  it('refuses a model it cannot judge for want of a provider', () => {
    expect(checkAgentWrite({ model: 'gpt-4o-mini' }, matcher)).toEqual(
      invalid('provider is required when model is set'),
    )
  })

  it('allows an empty model (the builder before a model is picked)', () => {
    expect(checkAgentWrite({ provider: 'openAI', model: '' }, matcher)).toEqual({
      ok: true,
      agentIds: [],
    })
  })

  it('refuses hostile shapes', () => {
    expect(checkAgentWrite({ provider: 'oai', model: { $ne: null } }, matcher)).toEqual(
      invalid('model must be a string'),
    )
    expect(checkAgentWrite({ tools: 'search_mcp_gitlab' }, matcher)).toEqual(
      invalid('tools must be an array of tool keys'),
    )
    const planted = JSON.parse('{"__proto__":{"provider":"oai","model":"gpt-4o"},"name":"x"}')
    expect(checkAgentWrite(planted, matcher)).toEqual({ ok: true, agentIds: [] })
  })

  it('leaves a body that is not an object to LibreChat, which refuses it', () => {
    expect(checkAgentWrite('text', matcher)).toEqual({ ok: true, agentIds: [] })
    expect(checkAgentWrite(null, matcher)).toEqual({ ok: true, agentIds: [] })
  })
})

describe('checkAgentGraph', () => {
  /** A loader over a fixed set of agents that records what it was asked for. */
  function loaderOf(agents: Record<string, unknown>) {
    const asked: string[] = []
    const load: AgentLoader = async (id) => {
      asked.push(id)
      return Object.hasOwn(agents, id) ? agents[id] : null
    }
    return { load, asked }
  }

  it('checks every reachable agent once, cycles included', async () => {
    const { load, asked } = loaderOf({
      agent_a: agentDoc({ id: 'agent_a', edges: [{ from: 'agent_a', to: 'agent_b' }] }),
      agent_b: agentDoc({ id: 'agent_b', agent_ids: ['agent_c', 'agent_a'] }),
      agent_c: agentDoc({ id: 'agent_c', subagents: { agent_ids: ['agent_a', 'agent_b'] } }),
    })
    expect(await checkAgentGraph(['agent_a', 'agent_a'], load, matcher)).toEqual({
      ok: true,
      checkedIds: ['agent_a', 'agent_b', 'agent_c'],
    })
    expect(asked).toEqual(['agent_a', 'agent_b', 'agent_c'])
  })

  it('refuses when an agent two handoffs away uses a disallowed model', async () => {
    const { load } = loaderOf({
      agent_a: agentDoc({ id: 'agent_a', edges: [{ from: 'agent_a', to: 'agent_b' }] }),
      agent_b: agentDoc({ id: 'agent_b', edges: [{ from: 'agent_b', to: 'agent_c' }] }),
      agent_c: agentDoc({ id: 'agent_c', provider: 'claude', model: 'gpt-4o' }),
    })
    expect(await checkAgentGraph(['agent_a'], load, matcher)).toEqual(refusedModel('claude:gpt-4o'))
  })

  it('skips agents the user cannot see, as LibreChat does', async () => {
    const { load } = loaderOf({
      agent_a: agentDoc({ id: 'agent_a', agent_ids: ['agent_hidden'] }),
    })
    expect(await checkAgentGraph(['agent_a', 'agent_gone'], load, matcher)).toEqual({
      ok: true,
      checkedIds: ['agent_a'],
    })
  })

  it('never asks the loader for an id that cannot name a saved agent', async () => {
    const { load, asked } = loaderOf({})
    await checkAgentGraph(['../internal/v1', 'ephemeral', 'agent_ok'], load, matcher)
    expect(asked).toEqual(['agent_ok'])
  })

  it('refuses a chain deeper than the limit', async () => {
    const chain: Record<string, unknown> = {}
    for (let index = 0; index < 20; index++) {
      chain[`agent_${index}`] = agentDoc({
        id: `agent_${index}`,
        agent_ids: [`agent_${index + 1}`],
      })
    }
    const { load } = loaderOf(chain)
    expect(
      await checkAgentGraph(['agent_0'], load, matcher, { maxAgents: 50, maxDepth: 5 }),
    ).toEqual(invalid('The agents of this request reference each other more than 5 levels deep'))
  })

  it('refuses a graph wider than the limit before loading it', async () => {
    const wide = Array.from({ length: 100_000 }, (_, index) => `agent_w${index}`)
    const { load, asked } = loaderOf({ agent_a: agentDoc({ id: 'agent_a', agent_ids: wide }) })
    expect(await checkAgentGraph(['agent_a'], load, matcher)).toEqual(
      invalid('The agents of this request reference more than 50 agents'),
    )
    expect(asked).toEqual(['agent_a'])
  })

  it('passes a loader failure on to the caller', async () => {
    const failing: AgentLoader = async () => {
      throw new Error('LibreChat is down')
    }
    await expect(checkAgentGraph(['agent_a'], failing, matcher)).rejects.toThrow(
      'LibreChat is down',
    )
  })

  it('refuses an unreadable agent document', async () => {
    const { load } = loaderOf({ agent_a: 'Not Found' })
    expect(await checkAgentGraph(['agent_a'], load, matcher)).toEqual(
      invalid('The agent could not be read'),
    )
  })
})
