import { randomUUID } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import {
  CallToolRequestSchema,
  type CallToolResult,
  CallToolResultSchema,
  ErrorCode,
  type Implementation,
  isInitializeRequest,
  ListToolsRequestSchema,
  McpError,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js'
import type { InternalClient } from '@platform/service-kit'
import type { AuditEvent, UsageRecord } from '@platform/shared-types'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { NotFound, UpstreamUnavailable, Validation } from '../errors.js'
import { matcherFor, mcpToolNotAllowed, showValue } from '../lib/allowlist.js'
import {
  type EgressCaller,
  type EgressCallerLookup,
  LIBRECHAT_USER_HEADER,
  libreChatUserIdOf,
  resolveEgressCaller,
} from '../lib/egress-caller.js'
import type { McpServer } from '../lib/egress-config.js'
import type { UsageJournal } from '../lib/usage-journal.js'

/** The headers that tell an upstream MCP server who is calling, on every request of a session. */
export const PLATFORM_IDENTITY_HEADERS = {
  tenantId: 'x-platform-tenant-id',
  workspaceId: 'x-platform-workspace-id',
  userId: 'x-platform-user-id',
} as const

/**
 * The same identity in each forwarded request's `_meta`, under the `platform/` prefix (MCP's
 * `prefix/name` form for `_meta` keys), for servers that read the protocol rather than headers.
 */
export const PLATFORM_META_KEYS = {
  tenantId: 'platform/tenantId',
  workspaceId: 'platform/workspaceId',
  userId: 'platform/userId',
} as const

const SESSION_HEADER = 'mcp-session-id'
/** A session nobody has used for this long is closed, and its upstream session with it. */
const DEFAULT_SESSION_IDLE_MS = 30 * 60_000
/**
 * Sessions one LibreChat user may hold to one server. A client that drops its connection without
 * a DELETE leaves its session behind; past this many, the least recently used one goes.
 */
const MAX_SESSIONS_PER_USER_AND_SERVER = 8
/** How long a closing session waits for the upstream to end its own session. */
const UPSTREAM_GOODBYE_MS = 2_000

const ServerParamsSchema = z.object({ server: z.string().min(1).max(64) })
const AuditAppendResponseSchema = z.object({ stored: z.number(), duplicates: z.number() })

export interface EgressMcpRoutesOptions {
  /** The MCP servers this deployment configures (`MCP_SERVERS`). */
  servers: readonly McpServer[]
  callers: EgressCallerLookup
  journal: UsageJournal
  /** Every tool call is also posted to its `POST /internal/v1/audit`. */
  workspaceService: InternalClient
  /** How long an upstream may take to answer one request (a tool's progress restarts the clock). */
  upstreamTimeoutMs: number
  sessionIdleMs?: number
}

/** One session handed to LibreChat and the upstream session behind it, for one user and server. */
interface McpSession {
  /** Set once the SDK has answered the `initialize` that opened the session. */
  id: string | undefined
  server: McpServer
  libreChatUserId: string
  /** As resolved by the latest request: policy and membership are checked on every request. */
  caller: EgressCaller
  proxy: Server
  transport: StreamableHTTPServerTransport
  upstream: Client
  upstreamTransport: StreamableHTTPClientTransport
  lastSeen: number
  /** HTTP requests of this session still open (a standalone GET stream stays open). */
  inFlight: number
  closed: boolean
}

interface SettledToolCall {
  callId: string
  caller: EgressCaller
  server: string
  tool: string
  refused: boolean
  status: UsageRecord['status']
  startedAt: Date
  endedAt: Date
}

/** A tool name as the ledger and the audit log can hold it, whatever the client sent. */
const recordedToolName = (name: unknown) => showValue(name).slice(0, 128) || '(none)'

/** How an upstream failure reaches LibreChat: the upstream's own protocol errors pass unchanged. */
function upstreamFailure(server: McpServer, error: unknown): McpError {
  if (error instanceof McpError) return error
  return new McpError(
    ErrorCode.InternalError,
    `GW_UPSTREAM_UNAVAILABLE: The MCP server ${server.name} is not answering; try again shortly`,
  )
}

/**
 * LibreChat's `_meta` with the caller's identity written over it, so no client can claim another
 * one. Its progress token stays behind: the upstream client issues its own and the proxy relays
 * the progress back under LibreChat's.
 */
function identityMeta(caller: EgressCaller, meta: Record<string, unknown> | undefined) {
  const { progressToken: _relayedByTheProxy, ...passed } = meta ?? {}
  return {
    ...passed,
    [PLATFORM_META_KEYS.tenantId]: caller.tenantId,
    [PLATFORM_META_KEYS.workspaceId]: caller.workspaceId,
    [PLATFORM_META_KEYS.userId]: caller.userId,
  }
}

/** The server's configured headers, then the caller's identity, which no configuration overrides. */
function upstreamHeaders(server: McpServer, caller: EgressCaller): Headers {
  const headers = new Headers(server.headers)
  headers.set(PLATFORM_IDENTITY_HEADERS.tenantId, caller.tenantId)
  headers.set(PLATFORM_IDENTITY_HEADERS.workspaceId, caller.workspaceId)
  headers.set(PLATFORM_IDENTITY_HEADERS.userId, caller.userId)
  return headers
}

function usageRecordOf(call: SettledToolCall): UsageRecord {
  return {
    callId: call.callId,
    kind: 'mcp',
    tenantId: call.caller.tenantId,
    workspaceId: call.caller.workspaceId,
    userId: call.caller.userId,
    server: call.server,
    tool: call.tool,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
    durationMs: Math.max(0, call.endedAt.getTime() - call.startedAt.getTime()),
    startedAt: call.startedAt.toISOString(),
    endedAt: call.endedAt.toISOString(),
    status: call.status,
  }
}

function auditEventOf(call: SettledToolCall): AuditEvent {
  return {
    eventId: call.callId,
    at: call.endedAt.toISOString(),
    action: call.refused ? 'gateway.mcp.tool_refused' : 'gateway.mcp.tool_called',
    actor: { type: 'user', id: call.caller.userId },
    target: { type: 'mcp_tool', id: `${call.server}:${call.tool}` },
    tenantId: call.caller.tenantId,
    workspaceId: call.caller.workspaceId,
    // LibreChat's address, not the member's: the member's own requests are audited at the door.
    ip: null,
    userAgent: null,
    before: null,
    after: {
      server: call.server,
      tool: call.tool,
      status: call.status,
      durationMs: Math.max(0, call.endedAt.getTime() - call.startedAt.getTime()),
    },
  }
}

/**
 * The MCP egress (API.md §6, ARCHITECTURE §4.2): LibreChat reaches every MCP server through
 * `/mcp/:server` over Streamable HTTP. Each session handed out belongs to the LibreChat user that
 * opened it and has its own upstream session, which carries the caller's identity in headers and
 * in each request's `_meta`, plus the server's configured headers (never LibreChat's
 * `Authorization`, which is the egress secret). Every request is checked against the caller's
 * current policy: a server outside it answers 404 like an unknown one, `tools/list` shows the
 * allowed tools only, and a call of another tool is answered `GW_MCP_NOT_ALLOWED` without
 * reaching the upstream. Every call, refused and failed ones too, is ledgered and audited.
 *
 * The proxy offers tools only: resources, prompts and the client's sampling, elicitation and
 * roots are not relayed, so no policy is needed for them.
 */
export async function egressMcpRoutes(app: FastifyInstance, options: EgressMcpRoutesOptions) {
  const servers = new Map(options.servers.map((server) => [server.name, server]))
  const sessions = new Map<string, McpSession>()
  const sessionIdleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS

  const sweep = setInterval(
    () => {
      const idleSince = Date.now() - sessionIdleMs
      for (const session of sessions.values())
        if (session.inFlight === 0 && session.lastSeen < idleSince)
          void closeSession(session, 'idle')
    },
    Math.min(sessionIdleMs, 60_000),
  )
  sweep.unref()
  // Before the server closes, not after: an open GET stream would keep `server.close()` waiting.
  app.addHook('preClose', async () => {
    clearInterval(sweep)
    await Promise.all([...sessions.values()].map((session) => closeSession(session, 'shutdown')))
  })

  async function closeSession(session: McpSession, reason: string) {
    if (session.closed) return
    session.closed = true
    if (session.id !== undefined) sessions.delete(session.id)
    app.log.debug(
      { mcpSession: session.id, server: session.server.name, reason },
      'MCP session closed',
    )
    await session.proxy.close().catch(() => undefined)
    // Ends the upstream's session too, so it frees it now rather than at its own timeout.
    await Promise.race([
      session.upstreamTransport.terminateSession().catch(() => undefined),
      delay(UPSTREAM_GOODBYE_MS, undefined, { ref: false }),
    ])
    await session.upstream.close().catch(() => undefined)
  }

  function settle(call: SettledToolCall) {
    void options.journal.append(usageRecordOf(call))
    options.workspaceService
      .post('/internal/v1/audit', { events: [auditEventOf(call)] }, AuditAppendResponseSchema)
      .catch((error: unknown) => {
        app.log.warn({ err: error, callId: call.callId }, 'MCP tool call not audited')
      })
  }

  /**
   * Answers LibreChat's requests of one session from the upstream, within the policy of the
   * session's latest request.
   */
  function proxyFor(server: McpServer, upstream: Client, currentCaller: () => EgressCaller) {
    const listChanged = upstream.getServerCapabilities()?.tools?.listChanged === true
    // The low-level server, not `McpServer`: a proxy relays tool schemas it never defines.
    const proxy = new Server(upstream.getServerVersion() ?? { name: server.name, version: '0' }, {
      capabilities: { tools: { listChanged } },
      instructions: upstream.getInstructions(),
    })
    if (listChanged)
      upstream.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
        await proxy.sendToolListChanged().catch(() => undefined)
      })

    proxy.setRequestHandler(ListToolsRequestSchema, async (listing, extra) => {
      const caller = currentCaller()
      const listed = await upstream
        .listTools(
          {
            ...(listing.params?.cursor === undefined ? {} : { cursor: listing.params.cursor }),
            _meta: identityMeta(caller, listing.params?._meta),
          },
          { signal: extra.signal, timeout: options.upstreamTimeoutMs },
        )
        .catch((error: unknown) => {
          throw upstreamFailure(server, error)
        })
      const matcher = matcherFor(caller.policy)
      return {
        ...listed,
        tools: listed.tools.filter((tool) => matcher.isToolAllowed(server.name, tool.name)),
      }
    })

    proxy.setRequestHandler(CallToolRequestSchema, async (call, extra) => {
      const caller = currentCaller()
      const { name, arguments: args, _meta: meta } = call.params
      const startedAt = new Date()
      const callId = randomUUID()
      const tool = recordedToolName(name)
      const matcher = matcherFor(caller.policy)
      if (!matcher.isToolAllowed(server.name, name)) {
        const refusal = mcpToolNotAllowed(matcher, server.name, name)
        settle({
          callId,
          caller,
          server: server.name,
          tool,
          refused: true,
          status: 'failed',
          startedAt,
          endedAt: new Date(),
        })
        return {
          isError: true,
          content: [{ type: 'text', text: `${refusal.code}: ${refusal.message}` }],
        } satisfies CallToolResult
      }
      const progressToken = meta?.progressToken
      let status: UsageRecord['status'] = 'failed'
      try {
        const result = await upstream.callTool(
          {
            name,
            ...(args === undefined ? {} : { arguments: args }),
            _meta: identityMeta(caller, meta),
          },
          CallToolResultSchema,
          {
            signal: extra.signal,
            timeout: options.upstreamTimeoutMs,
            resetTimeoutOnProgress: true,
            ...(progressToken === undefined
              ? {}
              : {
                  onprogress: (progress) => {
                    void extra
                      .sendNotification({
                        method: 'notifications/progress',
                        params: { ...progress, progressToken },
                      })
                      .catch(() => undefined)
                  },
                }),
          },
        )
        // A tool that reports its own failure is a failed call for the ledger.
        status = result.isError === true ? 'failed' : 'completed'
        return result
      } catch (error) {
        status = extra.signal.aborted ? 'cancelled' : 'failed'
        app.log.warn({ err: error, server: server.name, tool }, 'MCP tool call failed upstream')
        throw upstreamFailure(server, error)
      } finally {
        settle({
          callId,
          caller,
          server: server.name,
          tool,
          refused: false,
          status,
          startedAt,
          endedAt: new Date(),
        })
      }
    })
    return proxy
  }

  /** Opens the upstream session first: an upstream that is down refuses the `initialize`. */
  async function openSession(
    server: McpServer,
    caller: EgressCaller,
    clientInfo: Implementation,
    log: FastifyBaseLogger,
  ): Promise<McpSession> {
    const upstreamTransport = new StreamableHTTPClientTransport(new URL(server.url), {
      requestInit: { headers: upstreamHeaders(server, caller) },
    })
    const upstream = new Client(clientInfo, { capabilities: {} })
    upstream.onerror = (error) => {
      app.log.debug({ err: error, server: server.name }, 'MCP upstream connection error')
    }
    try {
      await upstream.connect(upstreamTransport, { timeout: options.upstreamTimeoutMs })
    } catch (error) {
      await upstream.close().catch(() => undefined)
      log.warn({ err: error, server: server.name }, 'MCP server did not accept a session')
      throw new UpstreamUnavailable(`MCP server ${server.name}`)
    }

    const crowd = [...sessions.values()].filter(
      (open) => open.libreChatUserId === caller.libreChatUserId && open.server === server,
    )
    if (crowd.length >= MAX_SESSIONS_PER_USER_AND_SERVER) {
      const leastRecent = crowd.reduce((a, b) => (b.lastSeen < a.lastSeen ? b : a))
      void closeSession(leastRecent, 'too many sessions')
    }

    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => {
        session.id = id
        sessions.set(id, session)
      },
    })
    transport.onclose = () => {
      void closeSession(session, 'closed by LibreChat')
    }
    const session: McpSession = {
      id: undefined,
      server,
      libreChatUserId: caller.libreChatUserId,
      caller,
      proxy: proxyFor(server, upstream, () => session.caller),
      transport,
      upstream,
      upstreamTransport,
      lastSeen: Date.now(),
      inFlight: 0,
      closed: false,
    }
    await session.proxy.connect(session.transport)
    return session
  }

  /** Hands one HTTP request of the session to the SDK's transport, which answers it. */
  async function relay(session: McpSession, request: FastifyRequest, reply: FastifyReply) {
    session.inFlight += 1
    session.lastSeen = Date.now()
    reply.raw.once('close', () => {
      session.inFlight -= 1
      session.lastSeen = Date.now()
    })
    reply.hijack()
    try {
      await session.transport.handleRequest(request.raw, reply.raw, request.body)
    } catch (error) {
      request.log.error({ err: error, server: session.server.name }, 'MCP request not relayed')
      if (!reply.raw.writableEnded) reply.raw.destroy()
    }
  }

  async function handle(request: FastifyRequest, reply: FastifyReply) {
    const name = (request.params as { server: string }).server
    const server = servers.get(name)
    if (server === undefined) throw new NotFound(`No MCP server is called ${showValue(name)}`)
    const caller = await resolveEgressCaller(
      libreChatUserIdOf(request.headers[LIBRECHAT_USER_HEADER]),
      options.callers,
    )
    const sessionId = request.headers[SESSION_HEADER]
    const session = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined
    const ownSession =
      session !== undefined &&
      session.libreChatUserId === caller.libreChatUserId &&
      session.server === server
        ? session
        : undefined

    // A server the workspace may not use answers as one this deployment does not have.
    if (!matcherFor(caller.policy).isServerAllowed(server.name)) {
      if (ownSession !== undefined) await closeSession(ownSession, 'server no longer allowed')
      throw new NotFound(`No MCP server is called ${showValue(name)}`)
    }

    if (sessionId === undefined) {
      if (request.method !== 'POST' || !isInitializeRequest(request.body))
        throw new Validation(`Only an initialize request may come without an ${SESSION_HEADER}`)
      const opened = await openSession(server, caller, request.body.params.clientInfo, request.log)
      await relay(opened, request, reply)
      // An initialize the SDK refused opened no session: its upstream session goes at once.
      if (opened.id === undefined) await closeSession(opened, 'initialize refused')
      return reply
    }
    // Another user's session, or one of another server, is as unknown as a made-up id.
    if (ownSession === undefined) throw new NotFound('No such MCP session; initialize a new one')
    ownSession.caller = caller
    await relay(ownSession, request, reply)
    return reply
  }

  app.route({
    method: ['POST', 'GET', 'DELETE'],
    url: '/mcp/:server',
    schema: { params: ServerParamsSchema },
    handler: handle,
  })
}
