import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { type PlaceholderContext, resolveHeaders } from './placeholders.js'
import type { ProviderTool } from './provider-client.js'
import type { McpServerConfig } from './types.js'

/** LibreChat's tool key delimiter: `<tool>_mcp_<server>`. */
export const MCP_DELIMITER = '_mcp_'
/** "Every tool of this server" (`sys__all__sys_mcp_<server>`). */
export const MCP_ALL_TOOLS = 'sys__all__sys'
/** UI placeholder stored in agent tools and ignored at run time. */
export const MCP_SERVER_PLACEHOLDER = 'sys__server__sys'

export type ConnectionState = 'connected' | 'disconnected' | 'connecting' | 'error'

export interface McpTool {
  server: string
  name: string
  description: string
  inputSchema: Record<string, unknown>
}

/** An open connection to one MCP server for one user (and, with body placeholders, one turn). */
export interface McpSession {
  server: McpServerConfig
  tools: McpTool[]
  call(name: string, args: Record<string, unknown>): Promise<string>
  close(): Promise<void>
}

export const toolKey = (tool: McpTool): string => `${tool.name}${MCP_DELIMITER}${tool.server}`

/** Splits `<tool>_mcp_<server>`; keys with other than exactly one delimiter are not MCP keys. */
export function parseToolKey(key: string): { tool: string; server: string } | undefined {
  const parts = key.split(MCP_DELIMITER)
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined
  return { tool: parts[0], server: parts[1] }
}

export function asProviderTool(tool: McpTool): ProviderTool {
  return {
    type: 'function',
    function: { name: toolKey(tool), description: tool.description, parameters: tool.inputSchema },
  }
}

/**
 * Connections per user: each carries that user's resolved headers, so the double connects lazily
 * per user (listing tools, or a chat turn) and closes the connection when done. The last known
 * state per user and server answers the connection-status routes.
 */
export class McpConnector {
  private readonly states = new Map<string, ConnectionState>()

  constructor(private readonly servers: readonly McpServerConfig[]) {}

  configured(name: string): McpServerConfig | undefined {
    return this.servers.find((server) => server.name === name)
  }

  get all(): readonly McpServerConfig[] {
    return this.servers
  }

  state(userId: string, server: string): ConnectionState {
    return this.states.get(`${userId}\u0000${server}`) ?? 'disconnected'
  }

  async open(server: McpServerConfig, context: PlaceholderContext): Promise<McpSession> {
    const stateKey = `${context.user._id.toHexString()}\u0000${server.name}`
    this.states.set(stateKey, 'connecting')
    const client = new Client({ name: 'librechat-double', version: '0.8.7' })
    const transport = new StreamableHTTPClientTransport(new URL(server.url), {
      requestInit: { headers: resolveHeaders(server.headers, context) },
    })
    try {
      await client.connect(transport)
      const listed = await client.listTools()
      this.states.set(stateKey, 'connected')
      const tools = listed.tools.map((tool) => ({
        server: server.name,
        name: tool.name,
        description: tool.description ?? '',
        inputSchema: tool.inputSchema as Record<string, unknown>,
      }))
      return {
        server,
        tools,
        async call(name, args) {
          const result = await client.callTool({ name, arguments: args })
          const content = Array.isArray(result.content) ? result.content : []
          return content
            .map((item: { type?: string; text?: string }) =>
              item.type === 'text' ? (item.text ?? '') : JSON.stringify(item),
            )
            .join('\n')
        },
        close: () => client.close(),
      }
    } catch (error) {
      this.states.set(stateKey, 'error')
      await client.close().catch(() => undefined)
      throw error
    }
  }
}
