import { randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js'
import type { FakeProviderCall } from '@platform/fake-provider'
import type { UsageRecord } from '@platform/shared-types'
import { expect, onTestFinished } from 'vitest'
import { z } from 'zod'
import { type ChatPlatform, EGRESS_SECRET, libreChatUserIdOf } from './chat-platform.js'
import { bearer, type TestUser } from './platform.js'
import { waitFor } from './stream-client.js'

/** What the egress wants of LibreChat on every call: the shared secret and the user it calls for. */
export const egressHeaders = (libreChatUserId: string) => ({
  authorization: `Bearer ${EGRESS_SECRET}`,
  'x-librechat-user-id': libreChatUserId,
})

export const PROMPT = [{ role: 'user', content: 'Say something short' }]

/** A chat completion of {@link PROMPT} with the small model, as LibreChat sends it for a user. */
export const completion = (libreChatUserId: string, overrides: Record<string, unknown> = {}) => ({
  model: 'fake-small',
  messages: PROMPT,
  user: libreChatUserId,
  ...overrides,
})

/**
 * Bridges a platform user of a workspace to LibreChat (one GET through the gateway, read to its
 * end) and answers the LibreChat user the bridge made.
 */
export async function bridgeToLibreChat(
  platform: ChatPlatform,
  member: { user: TestUser; workspaceId: string; token: string },
): Promise<string> {
  const answer = await fetch(`${platform.gatewayUrl}/api/user`, { headers: bearer(member.token) })
  expect(answer.status).toBe(200)
  await answer.text()
  return libreChatUserIdOf(platform, member)
}

/**
 * A member of its own tenant bridged to LibreChat, with its LibreChat user id. With `policy`,
 * its workspace gets that policy first, so the bridge caches no earlier one.
 */
export async function bridgedMember(platform: ChatPlatform, label?: string, policy?: object) {
  const member = await platform.member(label)
  if (policy !== undefined) await platform.setPolicy(member.user, member.workspaceId, policy)
  return { ...member, libreChatUserId: await bridgeToLibreChat(platform, member) }
}

export type BridgedMember = Awaited<ReturnType<typeof bridgedMember>>

/** The provider's chat completion calls, without LibreChat's model listings. */
export const chatCalls = (platform: ChatPlatform): FakeProviderCall[] =>
  platform.provider.calls.filter((call) => call.path === '/v1/chat/completions')

/** One row of the workspace-service's usage ledger: a usage record as the journal delivered it. */
export type LedgerRow = Omit<UsageRecord, 'callId' | 'startedAt' | 'endedAt'> & {
  _id: string
  startedAt: Date
  endedAt: Date
}

/** The workspace's ledger rows, oldest first, after the journal delivered what it holds. */
export async function ledgerOf(platform: ChatPlatform, workspaceId: string): Promise<LedgerRow[]> {
  await platform.gateway.egress?.usageJournal?.flush()
  return platform.workspace.mongo
    .collection<LedgerRow>('usage_ledger')
    .find({ workspaceId })
    .sort({ startedAt: 1 })
    .toArray()
}

/** The workspace's ledger rows once the journal has delivered `count` of them. */
export async function ledgerRows(platform: ChatPlatform, workspaceId: string, count: number) {
  let rows: LedgerRow[] = []
  await waitFor(
    `${count} ledger rows`,
    async () => {
      rows = await ledgerOf(platform, workspaceId)
      return rows.length >= count
    },
    10_000,
  )
  expect(rows).toHaveLength(count)
  return rows
}

export interface McpUpstreamRequest {
  method: string
  headers: IncomingHttpHeaders
}

export interface McpUpstreamCall {
  tool: string
  args: unknown
  meta: Record<string, unknown> | undefined
  headers: Record<string, unknown>
}

/**
 * A real MCP server over Streamable HTTP, one SDK session per `initialize`, recording every HTTP
 * request and every tool call (its headers and `_meta`). A tool named `broken` fails as a tool
 * does.
 */
export async function startMcpUpstream(tools: readonly string[]) {
  const requests: McpUpstreamRequest[] = []
  const calls: McpUpstreamCall[] = []
  const transports = new Map<string, StreamableHTTPServerTransport>()

  function serverFor() {
    const server = new McpServer({ name: 'upstream', version: '1.0.0' })
    for (const tool of tools)
      server.registerTool(
        tool,
        { description: `The ${tool} tool`, inputSchema: { text: z.string().optional() } },
        async (args, extra) => {
          calls.push({ tool, args, meta: extra._meta, headers: { ...extra.requestInfo?.headers } })
          if (tool === 'broken') throw new Error('the tool broke')
          return { content: [{ type: 'text', text: `${tool}: ${args.text ?? ''}` }] }
        },
      )
    return server
  }

  const http = createServer(async (request, response) => {
    requests.push({ method: request.method ?? '', headers: request.headers })
    const chunks: Buffer[] = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined
    const sessionId = request.headers['mcp-session-id']
    let transport = typeof sessionId === 'string' ? transports.get(sessionId) : undefined
    if (transport === undefined) {
      if (!isInitializeRequest(body)) {
        response.writeHead(404).end()
        return
      }
      const opened = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id) => {
          transports.set(id, opened)
        },
      })
      opened.onclose = () => {
        if (opened.sessionId !== undefined) transports.delete(opened.sessionId)
      }
      await serverFor().connect(opened)
      transport = opened
    }
    await transport.handleRequest(request, response, body)
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  onTestFinished(async () => {
    await Promise.all([...transports.values()].map((transport) => transport.close()))
    http.closeAllConnections()
    await new Promise((resolve) => http.close(resolve))
  })
  const { port } = http.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    requests,
    calls,
    toolCalls: (tool: string) => calls.filter((call) => call.tool === tool),
    /** Requests made for a workspace, as the platform identity headers name it. */
    requestsFor: (workspaceId: string) =>
      requests.filter((request) => request.headers['x-platform-workspace-id'] === workspaceId),
  }
}

export type McpUpstream = Awaited<ReturnType<typeof startMcpUpstream>>
