import { InternalServiceUnavailableError, userOf } from '@platform/service-kit'
import type { EffectivePolicy, Membership } from '@platform/shared-types'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import mongoose from 'mongoose'
import { Pool } from 'undici'
import type { LibreChatSettings } from '../config.js'
import { DependencyUnavailable, Forbidden, NoWorkspace } from '../errors.js'
import {
  createLibreChatBridge,
  type LibreChatBridge,
  type LibreChatIdentity,
} from '../lib/librechat-bridge.js'

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
}

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
    connections: 256,
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

  const decoration: LibreChat = { settings, bridge, pool, bridgeMember, requestAs }
  app.decorate('libreChat', decoration)
}

export const libreChatPlugin = fp(libreChat, {
  name: 'librechat',
  fastify: '5.x',
  dependencies: ['mongo', 'door'],
})

declare module 'fastify' {
  interface FastifyInstance {
    libreChat: LibreChat
  }
  interface FastifyRequest {
    bridged: BridgedRequest | null
  }
}
