import { once } from 'node:events'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { z } from 'zod'

export interface TestMcpServer {
  url: string
  /** Headers of every HTTP request that reached it. */
  requests: Array<Record<string, string | string[] | undefined>>
  toolCalls: Array<{ name: string; args: Record<string, unknown> }>
  close(): Promise<void>
}

/** A stateless Streamable HTTP MCP server with two tools: `search` and `summarize`. */
export async function startMcpServer(): Promise<TestMcpServer> {
  const requests: TestMcpServer['requests'] = []
  const toolCalls: TestMcpServer['toolCalls'] = []

  const buildServer = () => {
    const server = new McpServer({ name: 'docs', version: '1.0.0' })
    server.registerTool(
      'search',
      { description: 'Search the docs', inputSchema: { query: z.string() } },
      async ({ query }) => {
        toolCalls.push({ name: 'search', args: { query } })
        return { content: [{ type: 'text', text: `3 results for ${query}` }] }
      },
    )
    server.registerTool(
      'summarize',
      { description: 'Summarize a page', inputSchema: { page: z.string() } },
      async ({ page }) => {
        toolCalls.push({ name: 'summarize', args: { page } })
        return { content: [{ type: 'text', text: `Summary of ${page}` }] }
      },
    )
    return server
  }

  const http = createServer(async (request, response) => {
    requests.push({ ...request.headers })
    if (request.method !== 'POST') {
      response.writeHead(405).end()
      return
    }
    const server = buildServer()
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
    response.on('close', () => {
      void transport.close()
      void server.close()
    })
    await server.connect(transport)
    await transport.handleRequest(request, response, await readJson(request))
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const { port } = http.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    requests,
    toolCalls,
    async close() {
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}
