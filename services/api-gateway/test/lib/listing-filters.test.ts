import { describe, expect, it } from 'vitest'
import { compilePolicy, type IngressPolicy } from '../../src/lib/allowlist.js'
import {
  filterAgentsListing,
  filterEndpointsListing,
  filterMcpConnectionStatus,
  filterMcpServersListing,
  filterMcpToolsListing,
  filterModelsListing,
  filterStartupConfig,
  listingFilterFor,
  mcpServersOfPath,
  rewriteStartupConfigForPlatform,
} from '../../src/lib/listing-filters.js'

const policy: IngressPolicy = {
  workspaceName: 'Research',
  models: { allow: ['oai:gpt-4o-mini', 'claude:claude-*', 'ollama:llama3:*'] },
  mcp: { servers: ['workspace-tools', 'github'], tools: { github: ['search_*'] } },
  params: { maxOutputTokens: 4096, temperature: { max: 1 } },
}
const matcher = compilePolicy(policy)

describe('filterModelsListing (GET /api/models)', () => {
  const models = {
    openAI: ['gpt-4o', 'gpt-4o-mini'],
    anthropic: ['claude-3-5-sonnet'],
    assistants: ['gpt-4o'],
    azureOpenAI: [],
    agents: ['agent-model-kept-as-sent'],
    oai: ['gpt-4o', 'gpt-4o-mini', 'o3'],
    claude: ['claude-3-5-sonnet', 'claude-3-haiku', 'gpt-4o-mini'],
    ollama: ['llama3', 'llama3:8b', 'mistral', 42, null],
    mistral: ['mistral-large'],
  }

  it('keeps the allowed models of custom endpoints, removes built-ins, keeps agents as sent', () => {
    expect(filterModelsListing(models, matcher)).toEqual({
      agents: ['agent-model-kept-as-sent'],
      oai: ['gpt-4o-mini'],
      claude: ['claude-3-5-sonnet', 'claude-3-haiku'],
      ollama: ['llama3:8b'],
      mistral: [],
    })
  })

  it('keeps the order LibreChat sent', () => {
    expect(Object.keys(filterModelsListing(models, matcher) as object)).toEqual([
      'agents',
      'oai',
      'claude',
      'ollama',
      'mistral',
    ])
  })

  it('passes other shapes through unchanged', () => {
    for (const body of [null, 'Unauthorized', 42, [['oai', ['gpt-4o']]]]) {
      expect(filterModelsListing(body, matcher)).toBe(body)
    }
    expect(filterModelsListing({ message: 'Unauthorized' }, matcher)).toEqual({
      message: 'Unauthorized',
    })
  })

  it('keeps a "__proto__" endpoint as plain data, with no model, and pollutes nothing', () => {
    const body = JSON.parse('{"__proto__":["gpt-4o-mini"],"oai":["gpt-4o-mini"]}')
    const filtered = filterModelsListing(body, matcher) as Record<string, unknown>
    expect(Object.getPrototypeOf(filtered)).toBe(Object.prototype)
    expect(Object.hasOwn(filtered, '__proto__')).toBe(true)
    expect(JSON.stringify(filtered)).toBe('{"__proto__":[],"oai":["gpt-4o-mini"]}')
  })

  it('filters huge lists', () => {
    const huge = {
      claude: Array.from({ length: 100_000 }, (_, index) => `claude-${index}`),
      oai: Array.from({ length: 100_000 }, (_, index) => `gpt-${index}`),
    }
    const filtered = filterModelsListing(huge, matcher) as Record<string, unknown[]>
    expect(filtered.claude).toHaveLength(100_000)
    expect(filtered.oai).toEqual([])
  })
})

describe('filterEndpointsListing (GET /api/endpoints)', () => {
  const endpoints = {
    agents: { order: 1, userProvide: false, capabilities: ['execute_code', 'tools'] },
    openAI: { order: 0, userProvide: false },
    azureOpenAI: { order: 2 },
    oai: { type: 'custom', order: 9999, userProvide: false, modelDisplayLabel: 'OpenAI' },
    claude: { type: 'custom', order: 9999, modelDisplayLabel: 'Claude' },
    ollama: { type: 'custom', order: 9999 },
    mistral: { type: 'custom', order: 9999 },
  }

  it('keeps agents and the endpoints a pattern names, drops built-ins and the rest', () => {
    expect(filterEndpointsListing(endpoints, matcher)).toEqual({
      agents: endpoints.agents,
      oai: endpoints.oai,
      claude: endpoints.claude,
      ollama: endpoints.ollama,
    })
  })

  it('drops endpoints without an allowed model when given the models listing', () => {
    expect(
      filterEndpointsListing(endpoints, matcher, {
        oai: ['gpt-4o-mini'],
        claude: ['gpt-4o'],
        ollama: ['llama3:8b'],
        mistral: ['mistral-large'],
      }),
    ).toEqual({ agents: endpoints.agents, oai: endpoints.oai, ollama: endpoints.ollama })
  })

  it('drops everything but agents for a policy that allows no model', () => {
    expect(
      filterEndpointsListing(endpoints, compilePolicy({ ...policy, models: { allow: [] } })),
    ).toEqual({ agents: endpoints.agents })
  })

  it('passes other shapes through unchanged', () => {
    expect(filterEndpointsListing('nope', matcher)).toBe('nope')
    expect(filterEndpointsListing(null, matcher)).toBe(null)
  })
})

describe('filterStartupConfig (GET /api/config, signed in)', () => {
  const config = {
    appTitle: 'LibreChat',
    registrationEnabled: true,
    interface: { modelSelect: true, mcpServers: { placeholder: 'MCP', use: true, create: false } },
    modelSpecs: {
      enforce: false,
      prioritize: true,
      list: [
        { name: 'fast', label: 'Fast', preset: { endpoint: 'oai', model: 'gpt-4o-mini' } },
        { name: 'big', label: 'Big', preset: { endpoint: 'oai', model: 'gpt-4o' } },
        {
          name: 'tools',
          label: 'Tools',
          preset: { endpoint: 'claude', model: 'claude-3-haiku' },
          mcpServers: ['github', 'jira'],
        },
        { name: 'team', label: 'Team', preset: { endpoint: 'agents', agent_id: 'agent_team' } },
        { name: 'gpt', label: 'GPT', preset: { endpoint: 'openAI', model: 'gpt-4o-mini' } },
        { name: 'broken', label: 'Broken' },
      ],
    },
    mcpServers: {
      github: { startup: true, chatMenu: true, isOAuth: false },
      jira: { startup: true, chatMenu: true, isOAuth: true },
    },
    balance: { enabled: false },
  }

  it('keeps the allowed specs and servers and every other field as is', () => {
    expect(filterStartupConfig(config, matcher)).toEqual({
      ...config,
      modelSpecs: {
        enforce: false,
        prioritize: true,
        list: [config.modelSpecs.list[0], config.modelSpecs.list[3]],
      },
      mcpServers: { github: config.mcpServers.github },
    })
  })

  it('leaves a config without modelSpecs or mcpServers alone', () => {
    const plain = { appTitle: 'LibreChat', modelSpecs: { enforce: true } }
    expect(filterStartupConfig(plain, matcher)).toEqual(plain)
    expect(filterStartupConfig(undefined, matcher)).toBeUndefined()
  })
})

describe('rewriteStartupConfigForPlatform (GET /api/config)', () => {
  const preLogin = {
    appTitle: 'Acme Chat',
    discordLoginEnabled: true,
    facebookLoginEnabled: true,
    githubLoginEnabled: true,
    googleLoginEnabled: true,
    appleLoginEnabled: true,
    openidLoginEnabled: true,
    openidLabel: 'Continue with OpenID',
    openidAutoRedirect: true,
    samlLoginEnabled: true,
    serverDomain: 'http://localhost:3080',
    emailLoginEnabled: false,
    registrationEnabled: true,
    socialLoginEnabled: true,
    emailEnabled: true,
    passwordResetEnabled: true,
    socialLogins: ['google', 'facebook', 'openid', 'github', 'discord', 'saml'],
    ldap: { enabled: true, username: true },
    minPasswordLength: 12,
  }

  it('turns off registration, social and federated logins, password reset and account deletion', () => {
    expect(rewriteStartupConfigForPlatform(preLogin)).toEqual({
      appTitle: 'Acme Chat',
      discordLoginEnabled: false,
      facebookLoginEnabled: false,
      githubLoginEnabled: false,
      googleLoginEnabled: false,
      appleLoginEnabled: false,
      openidLoginEnabled: false,
      openidLabel: 'Continue with OpenID',
      openidAutoRedirect: false,
      samlLoginEnabled: false,
      serverDomain: 'http://localhost:3080',
      emailLoginEnabled: true,
      registrationEnabled: false,
      socialLoginEnabled: false,
      emailEnabled: false,
      passwordResetEnabled: false,
      socialLogins: [],
      minPasswordLength: 12,
      allowAccountDeletion: false,
    })
  })

  it('passes other shapes through unchanged', () => {
    expect(rewriteStartupConfigForPlatform('<html>')).toBe('<html>')
    expect(rewriteStartupConfigForPlatform(null)).toBe(null)
  })
})

describe('filterMcpToolsListing (GET /api/mcp/tools)', () => {
  const listing = {
    servers: {
      github: {
        name: 'github',
        icon: '',
        authenticated: true,
        authConfig: [],
        tools: [
          { name: 'search_issues', pluginKey: 'search_issues_mcp_github', description: 'Search' },
          { name: 'delete_repo', pluginKey: 'delete_repo_mcp_github', description: 'Delete' },
          { pluginKey: 'search_code_mcp_github', description: 'No name' },
          { description: 'Neither' },
          'search_raw',
        ],
      },
      'workspace-tools': {
        name: 'workspace-tools',
        tools: [{ name: 'anything', pluginKey: 'anything_mcp_workspace-tools' }],
      },
      jira: { name: 'jira', tools: [{ name: 'search', pluginKey: 'search_mcp_jira' }] },
    },
  }

  it('keeps the allowed servers with their allowed tools', () => {
    expect(filterMcpToolsListing(listing, matcher)).toEqual({
      servers: {
        github: {
          ...listing.servers.github,
          tools: [listing.servers.github.tools[0], listing.servers.github.tools[2]],
        },
        'workspace-tools': listing.servers['workspace-tools'],
      },
    })
  })

  it('passes other shapes through unchanged', () => {
    expect(filterMcpToolsListing({ message: 'Unauthorized' }, matcher)).toEqual({
      message: 'Unauthorized',
    })
    const odd = { servers: { github: 'text' } }
    expect(filterMcpToolsListing(odd, matcher)).toEqual(odd)
    expect(filterMcpToolsListing([], matcher)).toEqual([])
  })
})

describe('filterMcpConnectionStatus (GET /api/mcp/connection/status)', () => {
  it('keeps the allowed servers only', () => {
    const status = {
      success: true,
      connectionStatus: {
        github: { connectionState: 'connected', requiresOAuth: false },
        jira: { connectionState: 'error', requiresOAuth: true },
      },
      oauthTimeout: 120_000,
    }
    expect(filterMcpConnectionStatus(status, matcher)).toEqual({
      success: true,
      connectionStatus: { github: { connectionState: 'connected', requiresOAuth: false } },
      oauthTimeout: 120_000,
    })
  })

  it('passes other shapes through unchanged', () => {
    const single = { success: true, serverName: 'github', connectionStatus: 'connected' }
    expect(filterMcpConnectionStatus(single, matcher)).toBe(single)
    expect(filterMcpConnectionStatus(null, matcher)).toBe(null)
  })
})

describe('mcpServersOfPath', () => {
  it.each([
    ['/api/mcp/connection/status/jira', ['jira']],
    ['/api/mcp/connection/status/jira?x=1', ['jira']],
    ['/API/MCP/Connection/Status/Jira/', ['Jira']],
    ['/api/mcp/connection/status/my%20server', ['my server']],
    ['/api/mcp/connection/status/%E0%A4%A', ['%E0%A4%A']],
    ['/api/mcp/oauth/cancel/jira', ['jira']],
    ['/api/mcp/servers/jira', ['jira']],
    ['/api/mcp/jira/reinitialize', ['jira']],
    ['/api/mcp/jira/auth-values', ['jira']],
    ['/api/mcp/jira/oauth/initiate?userId=x', ['jira']],
    ['/api/mcp/jira/oauth/callback', ['jira']],
    ['/api/mcp/jira/oauth/bind', ['jira']],
    ['/api/mcp/servers/reinitialize', ['reinitialize', 'servers']],
    ['/api/mcp/tools', []],
    ['/api/mcp/servers', []],
    ['/api/mcp/connection/status', []],
    ['/api/mcp/oauth/tokens/flow-1', []],
    ['/api/mcp/oauth/status/flow-1', []],
    ['/api/agents/jira/reinitialize', []],
    ['/mcp/jira', []],
  ])('%s names %j', (path, servers) => {
    expect(mcpServersOfPath(path)).toEqual(servers)
  })
})

describe('filterMcpServersListing (GET /api/mcp/servers)', () => {
  it('keeps the allowed servers only', () => {
    const servers = {
      github: { type: 'streamable-http', title: 'GitHub', canEdit: false },
      jira: { type: 'streamable-http', title: 'Jira' },
      constructor: { title: 'tricky name' },
    }
    expect(filterMcpServersListing(servers, matcher)).toEqual({ github: servers.github })
    expect(filterMcpServersListing('x', matcher)).toBe('x')
  })
})

describe('filterAgentsListing (GET /api/agents)', () => {
  it('keeps a v0.8.7 page (no model fields) unchanged', () => {
    const page = {
      object: 'list',
      data: [
        { id: 'agent_a', name: 'A', author: 'u1', updatedAt: '2026-07-01T12:00:00.000Z' },
        { id: 'agent_b', name: 'B', author: 'u1', updatedAt: '2026-07-01T11:00:00.000Z' },
      ],
      first_id: 'agent_a',
      last_id: 'agent_b',
      has_more: false,
      after: null,
    }
    expect(filterAgentsListing(page, matcher)).toEqual(page)
  })

  it('marks agents whose model or tools are not allowed, and keeps the page intact', () => {
    const page = {
      object: 'list',
      data: [
        { id: 'agent_a', provider: 'oai', model: 'gpt-4o-mini', tools: ['search_x_mcp_github'] },
        { id: 'agent_b', provider: 'oai', model: 'gpt-4o' },
        { id: 'agent_c', provider: 'claude', model: 'claude-3', tools: ['sys__all__sys_mcp_jira'] },
        'not an agent',
      ],
      first_id: 'agent_a',
      last_id: 'agent_c',
      has_more: true,
      after: 'cursor',
    }
    expect(filterAgentsListing(page, matcher)).toEqual({
      ...page,
      data: [
        page.data[0],
        {
          id: 'agent_b',
          provider: 'oai',
          model: 'gpt-4o',
          platformPolicy: {
            allowed: false,
            code: 'GW_MODEL_NOT_ALLOWED',
            message: 'Model oai:gpt-4o is not allowed in workspace Research',
          },
        },
        {
          id: 'agent_c',
          provider: 'claude',
          model: 'claude-3',
          tools: ['sys__all__sys_mcp_jira'],
          platformPolicy: {
            allowed: false,
            code: 'GW_MCP_NOT_ALLOWED',
            message: 'MCP server jira is not allowed in workspace Research',
          },
        },
        'not an agent',
      ],
    })
  })

  it('passes other shapes through unchanged', () => {
    expect(filterAgentsListing({ data: 'x' }, matcher)).toEqual({ data: 'x' })
    expect(filterAgentsListing(undefined, matcher)).toBeUndefined()
  })
})

describe('listingFilterFor', () => {
  it.each([
    ['/api/models', filterModelsListing],
    ['/API/Models', filterModelsListing],
    ['/api/models/', filterModelsListing],
    ['/api/models?user=x', filterModelsListing],
    ['/api/mcp/tools', filterMcpToolsListing],
    ['/api/mcp/connection/status', filterMcpConnectionStatus],
    ['/api/mcp/servers', filterMcpServersListing],
    ['/api/agents?limit=10', filterAgentsListing],
  ])('finds the filter of %s', (path, filter) => {
    expect(listingFilterFor(path)).toBe(filter)
  })

  it('filters and rewrites /api/config, and filters /api/endpoints by pattern', () => {
    const configFilter = listingFilterFor('/api/config')
    expect(
      configFilter?.({ registrationEnabled: true, mcpServers: { jira: {}, github: {} } }, matcher),
    ).toMatchObject({ registrationEnabled: false, mcpServers: { github: {} } })
    expect(listingFilterFor('/api/endpoints')?.({ openAI: {}, oai: {} }, matcher)).toEqual({
      oai: {},
    })
  })

  it.each(['/api/models/extra', '/api/agents/agent_a', '/api/convos', '/models', '/api', '/'])(
    'has no filter for %s',
    (path) => {
      expect(listingFilterFor(path)).toBeUndefined()
    },
  )
})
