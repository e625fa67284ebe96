import { randomUUID } from 'node:crypto'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { describe, expect, it, onTestFinished } from 'vitest'
import {
  type ChatPlatform,
  EGRESS_SECRET,
  PROVIDER,
  startChatPlatform,
} from '../helpers/chat-platform.js'
import {
  type BridgedMember,
  bridgedMember,
  egressHeaders,
  ledgerOf,
  type McpUpstream,
  startMcpUpstream,
} from '../helpers/egress.js'
import { waitFor } from '../helpers/stream-client.js'

const DOCS_KEY = 'docs-upstream-key'

const DOCS_POLICY = { servers: ['docs'], tools: { docs: ['search*'] } }

/** The gateway with two MCP servers behind its egress; members get `DOCS_POLICY` by default. */
async function startMcpPlatform() {
  const docs = await startMcpUpstream(['search', 'search_titles', 'echo', 'broken'])
  const github = await startMcpUpstream(['list_issues', 'delete_repo'])
  const platform = await startChatPlatform({
    egress: true,
    memberPolicy: { models: { allow: [`${PROVIDER}:*`] }, mcp: DOCS_POLICY },
    gatewayEnv: {
      MCP_SERVERS: JSON.stringify([
        { name: 'docs', url: docs.url, headers: { 'X-Upstream-Key': DOCS_KEY } },
        { name: 'github', url: github.url },
      ]),
    },
  })
  return { platform, docs, github }
}

/** An MCP session through the egress, opened as LibreChat opens one for a user. */
async function connect(
  platform: ChatPlatform,
  member: BridgedMember,
  server: string,
  secret = EGRESS_SECRET,
) {
  const transport = new StreamableHTTPClientTransport(
    new URL(`${platform.egressUrl}/mcp/${server}`),
    {
      requestInit: {
        headers: {
          authorization: `Bearer ${secret}`,
          'x-librechat-user-id': member.libreChatUserId,
        },
      },
    },
  )
  const client = new Client({ name: 'LibreChat', version: '0.8.7' })
  await client.connect(transport)
  onTestFinished(async () => {
    // Ended as LibreChat ends a session, so no stream is cut while the client still reads it.
    await transport.terminateSession().catch(() => undefined)
    await client.close()
  })
  return { client, transport }
}

/** How an HTTP refusal of the egress reaches the SDK's client. */
async function refusalOf(attempt: Promise<unknown>) {
  const error = await attempt.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(StreamableHTTPError)
  return (error as StreamableHTTPError).code
}

const toolNames = async (client: Client) =>
  (await client.listTools()).tools.map((tool) => tool.name).sort()

const textOf = (result: unknown) =>
  (result as CallToolResult).content
    .map((item) => (item.type === 'text' ? item.text : ''))
    .join('\n')

/** A JSON-RPC request straight to the egress, outside any SDK. */
function rawMcp(
  platform: ChatPlatform,
  server: string,
  headers: Record<string, string>,
  body: unknown,
) {
  return fetch(`${platform.egressUrl}/mcp/${server}`, {
    method: 'POST',
    headers: {
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      ...headers,
    },
    body: JSON.stringify(body),
  })
}

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'LibreChat', version: '0.8.7' },
  },
}

const upstreamSawNothing = (upstream: McpUpstream) => expect(upstream.requests).toHaveLength(0)

describe('MCP egress: what each workspace sees', () => {
  it('lists each workspace its own tools and hides the servers it may not use', async () => {
    const { platform, docs, github } = await startMcpPlatform()
    const narrow = await bridgedMember(platform, 'narrow')
    const wide = await bridgedMember(platform, 'wide')
    await platform.setPolicy(wide.user, wide.workspaceId, {
      mcp: { servers: ['docs', 'github'], tools: {} },
    })

    const narrowDocs = await connect(platform, narrow, 'docs')
    expect(await toolNames(narrowDocs.client)).toEqual(['search', 'search_titles'])
    const wideDocs = await connect(platform, wide, 'docs')
    expect(await toolNames(wideDocs.client)).toEqual(['broken', 'echo', 'search', 'search_titles'])
    const wideGithub = await connect(platform, wide, 'github')
    expect(await toolNames(wideGithub.client)).toEqual(['delete_repo', 'list_issues'])

    const before = github.requests.length
    // The other workspace's server, and one no deployment has, are the same 404.
    expect(await refusalOf(connect(platform, narrow, 'github'))).toBe(404)
    expect(await refusalOf(connect(platform, narrow, 'nowhere'))).toBe(404)
    const answer = await rawMcp(
      platform,
      'github',
      egressHeaders(narrow.libreChatUserId),
      initialize,
    )
    expect(answer.status).toBe(404)
    expect(await answer.json()).toMatchObject({
      statusCode: 404,
      code: 'GW_NOT_FOUND',
      error: { type: 'not_found_error' },
    })
    expect(github.requests).toHaveLength(before)
    expect(docs.calls).toHaveLength(0)
  })

  it('refuses a wrong or missing egress secret with 401 before any upstream is asked', async () => {
    const { platform, docs } = await startMcpPlatform()
    const member = await bridgedMember(platform, 'member')
    expect(await refusalOf(connect(platform, member, 'docs', 'wrong-secret'))).toBe(401)
    for (const authorization of [undefined, `Bearer ${EGRESS_SECRET}x`, EGRESS_SECRET]) {
      const answer = await rawMcp(
        platform,
        'docs',
        {
          'x-librechat-user-id': member.libreChatUserId,
          ...(authorization === undefined ? {} : { authorization }),
        },
        initialize,
      )
      expect(answer.status).toBe(401)
      expect(await answer.json()).toMatchObject({ code: 'GW_UNAUTHENTICATED' })
    }
    upstreamSawNothing(docs)
  })

  it('refuses a call without a LibreChat user, or for a user the bridge never made', async () => {
    const { platform, docs } = await startMcpPlatform()
    const secret = { authorization: `Bearer ${EGRESS_SECRET}` }
    const noUser = await rawMcp(platform, 'docs', secret, initialize)
    expect(noUser.status).toBe(400)
    const stranger = await rawMcp(
      platform,
      'docs',
      { ...secret, 'x-librechat-user-id': 'aaaaaaaaaaaaaaaaaaaaaaaa' },
      initialize,
    )
    expect(stranger.status).toBe(403)
    upstreamSawNothing(docs)
  })
})

describe('MCP egress: tool calls', () => {
  it('forwards allowed calls with the caller’s identity, refuses others, and ledgers and audits each', async () => {
    const { platform, docs } = await startMcpPlatform()
    const member = await bridgedMember(platform, 'member')
    const { client } = await connect(platform, member, 'docs')

    const allowed = await client.callTool({ name: 'search', arguments: { text: 'hello' } })
    expect(allowed.isError).toBeFalsy()
    expect(textOf(allowed)).toBe('search: hello')
    const [call] = docs.toolCalls('search')
    expect(call?.args).toEqual({ text: 'hello' })
    expect(call?.headers).toMatchObject({
      'x-platform-tenant-id': member.tenantId,
      'x-platform-workspace-id': member.workspaceId,
      'x-platform-user-id': member.user.id,
      'x-upstream-key': DOCS_KEY,
    })
    expect(call?.meta).toMatchObject({
      'platform/tenantId': member.tenantId,
      'platform/workspaceId': member.workspaceId,
      'platform/userId': member.user.id,
    })
    // LibreChat's credentials stay at the gateway, on every request of the upstream session.
    for (const request of docs.requests) {
      expect(request.headers.authorization).toBeUndefined()
      expect(request.headers['x-librechat-user-id']).toBeUndefined()
      expect(request.headers['x-platform-user-id']).toBe(member.user.id)
    }

    const refused = await client.callTool({ name: 'echo', arguments: { text: 'hi' } })
    expect(refused.isError).toBe(true)
    expect(textOf(refused)).toMatch(/^GW_MCP_NOT_ALLOWED: /)
    expect(textOf(refused)).toContain('echo')
    expect(docs.toolCalls('echo')).toHaveLength(0)

    await platform.setPolicy(member.user, member.workspaceId, {
      mcp: { servers: ['docs'], tools: { docs: ['search', 'broken'] } },
    })
    await waitFor(
      'the new policy',
      async () => (await toolNames(client)).includes('broken'),
      10_000,
    )
    const failed = await client.callTool({ name: 'broken' })
    expect(failed.isError).toBe(true)
    expect(docs.toolCalls('broken')).toHaveLength(1)

    const ledger = await ledgerOf(platform, member.workspaceId)
    const byTool = (tool: string) => ledger.filter((row) => row.tool === tool)
    expect(byTool('search')).toEqual([
      expect.objectContaining({
        kind: 'mcp',
        server: 'docs',
        tenantId: member.tenantId,
        userId: member.user.id,
        inputTokens: 0,
        outputTokens: 0,
        costUsd: 0,
        status: 'completed',
      }),
    ])
    expect(byTool('echo')).toEqual([expect.objectContaining({ kind: 'mcp', status: 'failed' })])
    expect(byTool('broken')).toEqual([expect.objectContaining({ kind: 'mcp', status: 'failed' })])
    for (const row of ledger) expect(row.durationMs).toBeGreaterThanOrEqual(0)

    const audit = platform.workspace.mongo.collection('audit_events')
    const auditOf = () =>
      audit.find({ workspaceId: member.workspaceId, action: /^gateway\.mcp\./ }).toArray()
    await waitFor('the audit events', async () => (await auditOf()).length === 3, 10_000)
    const events = await auditOf()
    expect(events.map((event) => [event.action, event.target.id]).sort()).toEqual([
      ['gateway.mcp.tool_called', 'docs:broken'],
      ['gateway.mcp.tool_called', 'docs:search'],
      ['gateway.mcp.tool_refused', 'docs:echo'],
    ])
    for (const event of events) {
      expect(event.actor).toEqual({ type: 'user', id: member.user.id })
      expect(event.tenantId).toBe(member.tenantId)
    }
  })

  it('applies a policy change to the open session’s next request', async () => {
    const { platform, docs } = await startMcpPlatform()
    const member = await bridgedMember(platform, 'member')
    const { client } = await connect(platform, member, 'docs')
    expect(await toolNames(client)).toEqual(['search', 'search_titles'])
    expect(textOf(await client.callTool({ name: 'search_titles' }))).toBe('search_titles: ')

    await platform.setPolicy(member.user, member.workspaceId, {
      mcp: { servers: ['docs'], tools: { docs: ['search'] } },
    })
    await waitFor(
      'the narrower tool list',
      async () => (await toolNames(client)).join() === 'search',
      10_000,
    )
    const refused = await client.callTool({ name: 'search_titles' })
    expect(refused.isError).toBe(true)
    expect(textOf(refused)).toMatch(/^GW_MCP_NOT_ALLOWED: /)
    expect(docs.toolCalls('search_titles')).toHaveLength(1)

    await platform.setPolicy(member.user, member.workspaceId, {
      mcp: { servers: [], tools: {} },
    })
    let code: number | undefined
    await waitFor(
      'the server gone from the policy',
      async () => {
        code = await client.listTools().then(
          () => undefined,
          (error: unknown) => (error as StreamableHTTPError).code,
        )
        return code !== undefined
      },
      10_000,
    )
    expect(code).toBe(404)
    const searches = docs.toolCalls('search').length
    expect(await refusalOf(client.callTool({ name: 'search' }))).toBe(404)
    expect(docs.toolCalls('search')).toHaveLength(searches)
  })
})

describe('MCP egress: sessions', () => {
  it('keeps each session to the user that opened it and ends the upstream session with it', async () => {
    const { platform, docs } = await startMcpPlatform()
    const owner = await bridgedMember(platform, 'owner')
    const other = await bridgedMember(platform, 'other')
    const { client, transport } = await connect(platform, owner, 'docs')
    const sessionId = transport.sessionId
    expect(sessionId).toBeDefined()

    const listTools = { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }
    const listToolsAs = (member: BridgedMember, mcpSessionId?: string) =>
      rawMcp(
        platform,
        'docs',
        {
          ...egressHeaders(member.libreChatUserId),
          ...(mcpSessionId === undefined ? {} : { 'mcp-session-id': mcpSessionId }),
        },
        listTools,
      )
    const asOther = await listToolsAs(other, sessionId ?? '')
    expect(asOther.status).toBe(404)
    const madeUp = await listToolsAs(owner, randomUUID())
    expect(madeUp.status).toBe(404)
    const notInitialize = await listToolsAs(owner)
    expect(notInitialize.status).toBe(400)

    // The session is untouched by the attempts, and its upstream session is its own.
    expect(await toolNames(client)).toEqual(['search', 'search_titles'])
    await connect(platform, other, 'docs')
    const upstreamSessions = new Set(
      docs.requests.flatMap((request) => request.headers['mcp-session-id'] ?? []),
    )
    expect(upstreamSessions.size).toBe(2)

    await transport.terminateSession()
    await waitFor(
      'the upstream session ended',
      () => docs.requests.some((request) => request.method === 'DELETE'),
      5_000,
    )
    const afterDelete = await listToolsAs(owner, sessionId ?? '')
    expect(afterDelete.status).toBe(404)
  })
})
