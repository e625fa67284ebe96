import type { FastifyInstance } from 'fastify'
import { authenticate } from '../auth.js'
import { type DoubleContext, requestUser } from '../context.js'
import { toolKey } from '../mcp.js'

/**
 * Built-in endpoints LibreChat lists in `/api/models` even when they are off (no key configured).
 * Representative lists: a gateway filtering `/api/models` must drop these, whatever they hold.
 */
const BUILT_IN_MODELS: Record<string, string[]> = {
  openAI: ['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-mini', 'o3-mini', 'gpt-3.5-turbo'],
  google: ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.0-flash'],
  anthropic: ['claude-sonnet-4-5', 'claude-opus-4-1', 'claude-3-5-haiku-latest'],
  assistants: ['gpt-4o', 'gpt-4o-mini', 'gpt-4-turbo', 'gpt-3.5-turbo'],
  agents: [],
}

const SOCIAL_LOGINS = ['github', 'google', 'discord', 'openid', 'facebook', 'apple', 'saml']

/** `/api/models`, `/api/endpoints`, `/api/config`, `/api/mcp/*`. */
export async function discoveryRoutes(app: FastifyInstance, context: DoubleContext): Promise<void> {
  app.get('/api/models', async () => {
    const models: Record<string, string[]> = { ...BUILT_IN_MODELS }
    for (const endpoint of context.endpoints) models[endpoint.name] = [...endpoint.models]
    return models
  })

  app.get('/api/endpoints', async () => {
    const config: Record<string, unknown> = {
      agents: {
        order: 1,
        userProvide: false,
        disableBuilder: false,
        capabilities: ['execute_code', 'file_search', 'actions', 'tools'],
      },
    }
    for (const endpoint of context.endpoints) {
      config[endpoint.name] = {
        type: 'custom',
        order: 9999,
        userProvide: false,
        userProvideURL: false,
        modelDisplayLabel: endpoint.name,
      }
    }
    return config
  })

  app.get('/api/config', async (request) => {
    const loginConfig = {
      appTitle: 'LibreChat',
      socialLogins: SOCIAL_LOGINS,
      discordLoginEnabled: false,
      facebookLoginEnabled: false,
      githubLoginEnabled: false,
      googleLoginEnabled: false,
      appleLoginEnabled: false,
      openidLoginEnabled: false,
      openidLabel: 'Continue with OpenID',
      openidImageUrl: '',
      openidAutoRedirect: false,
      samlLoginEnabled: false,
      samlLabel: 'Continue with SAML',
      serverDomain: context.serverUrl(),
      emailLoginEnabled: true,
      registrationEnabled: true,
      socialLoginEnabled: false,
      passwordResetEnabled: false,
      emailEnabled: false,
      showBirthdayIcon: false,
      helpAndFaqURL: 'https://librechat.ai',
      sharedLinksEnabled: true,
      publicSharedLinksEnabled: false,
    }
    const userConfig = {
      interface: {
        endpointsMenu: true,
        modelSelect: true,
        parameters: true,
        presets: true,
        sidePanel: true,
        agents: true,
        bookmarks: true,
        prompts: true,
        mcpServers: { placeholder: 'MCP Servers' },
      },
      ...(context.modelSpecs.length > 0
        ? {
            modelSpecs: {
              list: context.modelSpecs.map((spec) => ({
                name: spec.name,
                label: spec.label,
                preset: { ...spec.preset },
                ...(spec.mcpServers ? { mcpServers: [...spec.mcpServers] } : {}),
              })),
            },
          }
        : {}),
      balance: { enabled: context.balanceEnabled },
      webSearch: {},
    }
    if (context.version === '0.8.1') {
      // v0.8.1 answers everything to everyone, MCP servers included.
      const mcpServers = Object.fromEntries(
        context.mcp.all.map((server) => [
          server.name,
          { startup: true, chatMenu: true, isOAuth: false, customUserVars: {} },
        ]),
      )
      return { ...loginConfig, ...userConfig, mcpServers }
    }
    // v0.8.7: optional authentication; an invalid token just gets the login subset.
    const auth = await authenticate(request.headers.authorization, context.jwtKey, context.store)
    return 'user' in auth ? { ...loginConfig, ...userConfig } : loginConfig
  })

  app.get('/api/mcp/tools', async (request) => {
    const user = requestUser(context, request)
    const servers: Record<string, unknown> = {}
    for (const server of context.mcp.all) {
      const tools = await context.mcp
        .open(server, { user: user.doc })
        .then(async (session) => {
          await session.close().catch(() => undefined)
          return session.tools
        })
        .catch(() => [])
      servers[server.name] = {
        name: server.name,
        icon: '',
        authenticated: true,
        authConfig: [],
        tools: tools.map((tool) => ({
          name: tool.name,
          pluginKey: toolKey(tool),
          description: tool.description,
        })),
      }
    }
    return { servers }
  })

  app.get('/api/mcp/connection/status', async (request) => {
    const user = requestUser(context, request)
    const connectionStatus = Object.fromEntries(
      context.mcp.all.map((server) => [
        server.name,
        { connectionState: context.mcp.state(user.id, server.name), requiresOAuth: false },
      ]),
    )
    return { success: true, connectionStatus }
  })

  app.get('/api/mcp/connection/status/:serverName', async (request, reply) => {
    const user = requestUser(context, request)
    const { serverName } = request.params as { serverName: string }
    if (!context.mcp.configured(serverName)) {
      return reply
        .code(404)
        .send({ error: `MCP server '${serverName}' not found in configuration` })
    }
    return {
      success: true,
      serverName,
      connectionStatus: context.mcp.state(user.id, serverName),
      requiresOAuth: false,
    }
  })
}
