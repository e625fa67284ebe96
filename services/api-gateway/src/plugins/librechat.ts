import { InternalServiceUnavailableError, userOf } from '@platform/service-kit'
import type { EffectivePolicy, Membership } from '@platform/shared-types'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import mongoose from 'mongoose'
import { Pool } from 'undici'
import { z } from 'zod'
import type { LibreChatSettings } from '../config.js'
import { DependencyUnavailable, Forbidden, NoWorkspace } from '../errors.js'
import { isJsonObject, ownField } from '../lib/allowlist.js'
import { parseJson } from '../lib/json.js'
import {
  createLibreChatBridge,
  type LibreChatBridge,
  type LibreChatIdentity,
} from '../lib/librechat-bridge.js'
import { createStreamWatch, type StreamWatch } from '../lib/stream-watch.js'

/** A member's request on its way to LibreChat: who they are there, and the rules they meet. */
export interface BridgedRequest {
  membership: Membership
  identity: LibreChatIdentity
  token: string
  policy: EffectivePolicy
}

export interface LibreChat {
  settings: LibreChatSettings
  bridge: LibreChatBridge
  /** One connection pool to LibreChat, shared by every route that calls it. */
  pool: Pool
  /**
   * Resolves the member behind a platform token for `/api/*`: a workspace-scoped token, a
   * membership the workspace-service still has, its LibreChat identity and a fresh token for
   * it, and the workspace's policy. Stored on the request for the handlers after it.
   */
  bridgeMember(request: FastifyRequest): Promise<BridgedRequest>
  /**
   * A call the gateway itself makes to LibreChat as a bridged user (not a proxied client
   * request): its minted token and the browser User-Agent LibreChat requires. LibreChat not
   * answering is a `DependencyUnavailable`.
   */
  requestAs(libreChatUserId: string, call: LibreChatCall): Promise<{ status: number; text: string }>
  /**
   * A saved agent as policy must judge it: LibreChat is asked, as the member's user, whether that
   * user may see it (its ACL; an agent of another workspace's user is refused with 403), then the
   * whole document is read from LibreChat's database, because LibreChat shows a viewer only
   * `provider` and `model`, not the tools and edges a run uses. `null`: no such agent.
   */
  agentAs(libreChatUserId: string, agentId: string): Promise<unknown>
  /** LibreChat's `modelSpecs.list` (`[]` without specs), read once a minute. */
  modelSpecs(libreChatUserId: string): Promise<unknown[]>
  /** Aborts generations nobody reads any more (ARCHITECTURE §6). */
  streamWatch: StreamWatch
}

export interface LibreChatCall {
  method: 'GET' | 'POST'
  path: string
  body?: unknown
  /** The client the call is made for, as `X-Forwarded-For` (LibreChat's limits key on it). */
  clientIp?: string
}

export interface LibreChatPluginOptions {
  settings: LibreChatSettings
  upstreamTimeoutMs: number
  /** How long an unread generation waits for a reader before it is aborted. */
  streamAbandonGraceMs: number
}

const JobStatusSchema = z.object({ active: z.boolean() }).loose()

/** How long LibreChat's model specs are reused; they change only when LibreChat restarts. */
const MODEL_SPECS_TTL_MS = 60_000

/** What policy reads of a saved agent (agent-check): its model, tools and the agents it runs. */
const AGENT_POLICY_FIELDS = {
  _id: 0,
  id: 1,
  provider: 1,
  model: 1,
  tools: 1,
  edges: 1,
  agent_ids: 1,
  subagents: 1,
} as const

const unavailable = (what: string, error: unknown) =>
  error instanceof InternalServiceUnavailableError
    ? new DependencyUnavailable(what, { cause: error })
    : error

async function libreChat(app: FastifyInstance, options: LibreChatPluginOptions) {
  const { settings } = options
  const libreChatDb = mongoose.createConnection(settings.mongoUrl, {
    serverSelectionTimeoutMS: 10_000,
  })
  await libreChatDb.asPromise()
  const bridge = createLibreChatBridge({
    gateway: app.mongo,
    libreChat: libreChatDb,
    jwtSecret: settings.jwtSecret,
    tokenTtlSeconds: settings.tokenTtlSeconds,
  })
  await bridge.ensureIndexes()
  const pool = new Pool(settings.url, {
    // No cap: every open chat stream holds a connection for as long as it runs, and a capped
    // pool would queue other members' requests behind them. The door's stream slots bound the
    // streams; one refused its slot holds a connection only until the refusal.
    connections: null,
    headersTimeout: options.upstreamTimeoutMs,
    // Streams stay open as long as a generation runs; the abandonment watch ends stale ones.
    bodyTimeout: 0,
    connectTimeout: 5000,
  })
  app.addHook('onClose', async () => {
    await pool.close()
    await libreChatDb.close()
  })
  app.readiness.add('librechat-mongo', async () => {
    const db = libreChatDb.db
    if (db === undefined) throw new Error('not connected')
    await db.admin().command({ ping: 1 })
  })

  app.decorateRequest('bridged', null)

  async function bridgeMember(request: FastifyRequest): Promise<BridgedRequest> {
    if (request.bridged !== null) return request.bridged
    const claims = userOf(request)
    if (claims.wid === undefined) throw new NoWorkspace()
    const { door } = app
    const [membership, policy] = await Promise.all([
      door.memberships.get(claims.sub, claims.wid),
      door.policies.get(claims.wid),
    ]).catch((error: unknown) => {
      throw unavailable('workspace service', error)
    })
    if (membership === null || policy === null)
      throw new Forbidden('You are not a member of this workspace any more')
    const identity = await bridge.identityFor({
      tenantId: membership.tenantId,
      workspaceId: membership.workspaceId,
      userId: claims.sub,
    })
    const token = await bridge.tokenFor(identity.libreChatUserId)
    request.bridged = { membership, identity, token, policy }
    return request.bridged
  }

  async function requestAs(libreChatUserId: string, call: LibreChatCall) {
    const headers: Record<string, string> = {
      authorization: `Bearer ${await bridge.tokenFor(libreChatUserId)}`,
      'user-agent': settings.userAgent,
      accept: 'application/json',
    }
    if (call.body !== undefined) headers['content-type'] = 'application/json'
    if (call.clientIp !== undefined) headers['x-forwarded-for'] = call.clientIp
    try {
      const response = await pool.request({
        method: call.method,
        path: call.path,
        headers,
        ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
      })
      return { status: response.statusCode, text: await response.body.text() }
    } catch (error) {
      throw new DependencyUnavailable('chat service', { cause: error })
    }
  }

  const agents = libreChatDb.collection('agents')
  async function agentAs(libreChatUserId: string, agentId: string) {
    const path = `/api/agents/${encodeURIComponent(agentId)}`
    const visible = await requestAs(libreChatUserId, { method: 'GET', path })
    if (visible.status === 404) return null
    if (visible.status === 403)
      throw new Forbidden(`Agent ${agentId} is not shared with you in this workspace`)
    if (visible.status !== 200)
      throw new DependencyUnavailable('chat service', {
        cause: new Error(`GET ${path} answered ${visible.status}`),
      })
    return agents.findOne({ id: agentId }, { projection: AGENT_POLICY_FIELDS })
  }

  // LibreChat's specs are the same for every user: one copy, one load in flight, any
  // member's user reading them.
  let specs: { list: unknown[]; expiresAt: number } | undefined
  let specsLoading: Promise<unknown[]> | undefined
  async function loadModelSpecs(libreChatUserId: string) {
    const answer = await requestAs(libreChatUserId, { method: 'GET', path: '/api/config' })
    const parsed = answer.status === 200 ? parseJson(answer.text) : undefined
    if (!isJsonObject(parsed))
      throw new DependencyUnavailable('chat service', {
        cause: new Error(`GET /api/config answered ${answer.status}`),
      })
    const list = ownField(ownField(parsed, 'modelSpecs'), 'list')
    return Array.isArray(list) ? list : []
  }
  async function modelSpecs(libreChatUserId: string) {
    if (specs !== undefined && specs.expiresAt > Date.now()) return specs.list
    specsLoading ??= loadModelSpecs(libreChatUserId)
      .then((list) => {
        specs = { list, expiresAt: Date.now() + MODEL_SPECS_TTL_MS }
        return list
      })
      .finally(() => {
        specsLoading = undefined
      })
    return specsLoading
  }

  const streamWatch = createStreamWatch({
    redis: app.redis,
    graceMs: options.streamAbandonGraceMs,
    log: app.log,
    async abort(stream) {
      const id = encodeURIComponent(stream.streamId)
      const status = await requestAs(stream.libreChatUserId, {
        method: 'GET',
        path: `/api/agents/chat/status/${id}`,
      })
      if (status.status === 200) {
        const job = JobStatusSchema.safeParse(parseJson(status.text))
        if (job.success && !job.data.active) return
      }
      // Always with the id: without one LibreChat aborts the user's latest job, which may be
      // another tab's.
      const aborted = await requestAs(stream.libreChatUserId, {
        method: 'POST',
        path: '/api/agents/chat/abort',
        body: { streamId: stream.streamId, conversationId: stream.streamId },
      })
      app.log.info(
        { streamId: stream.streamId, status: aborted.status },
        'aborted an abandoned generation',
      )
    },
  })
  app.addHook('onClose', async () => streamWatch.close())

  const decoration: LibreChat = {
    settings,
    bridge,
    pool,
    bridgeMember,
    requestAs,
    agentAs,
    modelSpecs,
    streamWatch,
  }
  app.decorate('libreChat', decoration)
}

export const libreChatPlugin = fp(libreChat, {
  name: 'librechat',
  fastify: '5.x',
  dependencies: ['mongo', 'redis', 'door'],
})

declare module 'fastify' {
  interface FastifyInstance {
    libreChat: LibreChat
  }
  interface FastifyRequest {
    bridged: BridgedRequest | null
  }
}
