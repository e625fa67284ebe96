import type { AddressInfo } from 'node:net'
import { createTokenVerifier } from '@platform/service-kit'
import {
  AuditBatchSchema,
  type AuditEvent,
  type Membership,
  type WorkspaceRole,
} from '@platform/shared-types'
import Fastify, { type FastifyInstance } from 'fastify'
import { createLocalJWKSet, type JSONWebKeySet } from 'jose'

export interface WorkspaceDouble {
  /** The base URL to give the auth-service as WORKSPACE_SERVICE_URL. */
  url: string
  /** Makes `userId` a member of a workspace (appended, so the first added is the first listed). */
  addMember(
    userId: string,
    membership: { workspaceId: string; tenantId?: string; name?: string; role: WorkspaceRole },
  ): void
  removeMember(userId: string, workspaceId: string): void
  setLastUsed(userId: string, workspaceId: string | null): void
  /** Audit events received, once each by `eventId`, in arrival order. */
  auditEvents: AuditEvent[]
  /** How many audit batches arrived, failed ones included. */
  auditBatches: number
  /** While set, `POST /internal/v1/audit` answers 503 (the service is "down"). */
  failAudit: boolean
  /** Callers seen, by the `sub` of their service token. */
  callers: string[]
  close(): Promise<void>
}

/**
 * A stand-in for the workspace-service's internal routes the auth-service calls, answering
 * exactly as API.md §7 says over real HTTP, and refusing calls without a valid service token
 * (verified against the auth-service's own JWKS).
 */
export async function startWorkspaceDouble(options: {
  issuer: string
  jwks: () => Promise<JSONWebKeySet>
}): Promise<WorkspaceDouble> {
  const memberships = new Map<string, Membership[]>()
  const lastUsed = new Map<string, string | null>()
  const seenEventIds = new Set<string>()
  const verifier = createTokenVerifier({
    issuer: options.issuer,
    keys: async (header, token) => createLocalJWKSet(await options.jwks())(header, token),
    redis: null,
    cacheEntries: 0,
  })
  const app: FastifyInstance = Fastify()
  const double: WorkspaceDouble = {
    url: '',
    addMember(userId, membership) {
      const list = memberships.get(userId) ?? []
      list.push({
        workspaceId: membership.workspaceId,
        tenantId: membership.tenantId ?? `tenant-of-${membership.workspaceId}`,
        name: membership.name ?? `Workspace ${membership.workspaceId}`,
        role: membership.role,
      })
      memberships.set(userId, list)
    },
    removeMember(userId, workspaceId) {
      memberships.set(
        userId,
        (memberships.get(userId) ?? []).filter((item) => item.workspaceId !== workspaceId),
      )
    },
    setLastUsed(userId, workspaceId) {
      lastUsed.set(userId, workspaceId)
    },
    auditEvents: [],
    auditBatches: 0,
    failAudit: false,
    callers: [],
    close: () => app.close(),
  }

  app.addHook('onRequest', async (request, reply) => {
    const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1]
    try {
      if (token === undefined) throw new Error('no token')
      const claims = await verifier.verifyServiceToken(token)
      double.callers.push(claims.sub)
    } catch {
      return reply.code(401).send({
        statusCode: 401,
        code: 'WSP_UNAUTHENTICATED',
        error: 'Unauthorized',
        message: 'A service token is required',
      })
    }
  })

  app.get<{ Querystring: { userId?: string; workspaceId?: string } }>(
    '/internal/v1/memberships',
    async (request, reply) => {
      const { userId, workspaceId } = request.query
      const found = (memberships.get(userId ?? '') ?? []).find(
        (item) => item.workspaceId === workspaceId,
      )
      if (found === undefined)
        return reply.code(404).send({
          statusCode: 404,
          code: 'WSP_NOT_FOUND',
          error: 'Not Found',
          message: 'No such membership',
        })
      return found
    },
  )

  app.get<{ Params: { userId: string } }>(
    '/internal/v1/users/:userId/memberships',
    async (request) => ({
      items: memberships.get(request.params.userId) ?? [],
      lastUsedWorkspaceId: lastUsed.get(request.params.userId) ?? null,
    }),
  )

  app.post('/internal/v1/audit', async (request, reply) => {
    double.auditBatches++
    if (double.failAudit)
      return reply.code(503).send({
        statusCode: 503,
        code: 'WSP_NOT_READY',
        error: 'Service Unavailable',
        message: 'down',
      })
    const batch = AuditBatchSchema.safeParse(request.body)
    if (!batch.success)
      return reply.code(400).send({
        statusCode: 400,
        code: 'WSP_VALIDATION',
        error: 'Bad Request',
        message: batch.error.message,
      })
    for (const event of batch.data.events) {
      if (seenEventIds.has(event.eventId)) continue
      seenEventIds.add(event.eventId)
      double.auditEvents.push(event)
    }
    return reply.code(202).send({ accepted: batch.data.events.length })
  })

  await app.listen({ host: '127.0.0.1', port: 0 })
  double.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  return double
}
