import { type ClientContext, InternalServiceUnavailableError } from '@platform/service-kit'
import type { Membership, TokenPairResponse } from '@platform/shared-types'
import type { FastifyBaseLogger } from 'fastify'
import { DependencyUnavailable, NotAMember } from '../errors.js'
import type { Identity } from '../plugins/identity.js'
import type { PairBuilder, SessionDocument, SessionScope } from './sessions.js'
import { publicUser, type UserDocument } from './users.js'

/** Where a request came from, for the session list and the audit log. */
const scopeOf = (membership: Membership): SessionScope => ({
  tenantId: membership.tenantId,
  workspaceId: membership.workspaceId,
  role: membership.role,
  workspaceName: membership.name,
})

/**
 * The steps every way of signing in shares: choose the workspace the tokens speak for, open a
 * session, and answer with a token pair.
 */
export function createSignIn(identity: Identity, log: FastifyBaseLogger) {
  const { models, sessions, tokens, workspaces, audit } = identity

  /** The requested workspace, which must be one of the user's, or else the one used last. */
  async function chooseScope(
    user: UserDocument,
    workspaceId?: string,
  ): Promise<SessionScope | null> {
    if (workspaceId !== undefined) {
      let membership: Awaited<ReturnType<typeof workspaces.membership>>
      try {
        membership = await workspaces.membership(user._id, workspaceId)
      } catch (error) {
        if (error instanceof InternalServiceUnavailableError)
          throw new DependencyUnavailable('The workspace-service', { cause: error })
        throw error
      }
      if (membership === null) throw new NotAMember(workspaceId)
      return scopeOf(membership)
    }
    let answer: Awaited<ReturnType<typeof workspaces.memberships>>
    try {
      answer = await workspaces.memberships(user._id)
    } catch (error) {
      // Signing in still works while the workspace-service is away, just in no workspace.
      log.warn({ err: error, userId: user._id }, 'memberships unavailable; signing in unscoped')
      return null
    }
    const preferred = [user.lastWorkspaceId, answer.lastUsedWorkspaceId]
    const chosen =
      preferred
        .map((id) => answer.items.find((membership) => membership.workspaceId === id))
        .find((membership) => membership !== undefined) ?? answer.items[0]
    return chosen === undefined ? null : scopeOf(chosen)
  }

  /**
   * The session's scope as it stands now: a member whose role changed gets the new role, one who
   * left falls back to no workspace. When the workspace-service cannot say, the scope is kept.
   */
  async function currentScope(session: SessionDocument): Promise<SessionScope | null> {
    if (session.scope === null) return null
    try {
      const membership = await workspaces.membership(session.userId, session.scope.workspaceId)
      if (membership === null) return null
      return scopeOf(membership)
    } catch (error) {
      log.warn({ err: error, sessionId: session._id }, 'membership unavailable; keeping scope')
      return session.scope
    }
  }

  async function rememberWorkspace(user: UserDocument, scope: SessionScope | null) {
    if (scope === null || scope.workspaceId === user.lastWorkspaceId) return
    await models.users.updateOne({ _id: user._id }, { lastWorkspaceId: scope.workspaceId })
  }

  const pairFor =
    (user: UserDocument): PairBuilder =>
    async (session, refreshToken) => ({
      accessToken: await tokens.accessToken(user._id, session._id, session.scope),
      refreshToken,
      expiresIn: tokens.accessTokenSeconds,
      user: publicUser(user),
      workspace:
        session.scope === null
          ? null
          : {
              id: session.scope.workspaceId,
              name: session.scope.workspaceName,
              role: session.scope.role,
            },
    })

  /** Opens the session, answers its pair, and records the sign-in with `auditDetails`. */
  async function openSession(
    user: UserDocument,
    scope: SessionScope | null,
    method: string,
    client: ClientContext,
    auditDetails: Record<string, unknown>,
  ): Promise<{ pair: TokenPairResponse; session: SessionDocument }> {
    const { session, refreshToken } = await sessions.create({
      userId: user._id,
      scope,
      method,
      ip: client.ip,
      userAgent: client.userAgent,
    })
    await rememberWorkspace(user, scope)
    const pair = await pairFor(user)(session, refreshToken)
    await audit.record({
      action: 'auth.login.succeeded',
      actor: { type: 'user', id: user._id },
      target: { type: 'session', id: session._id },
      tenantId: scope?.tenantId ?? null,
      workspaceId: scope?.workspaceId ?? null,
      after: { method, ...auditDetails },
      ...client,
    })
    return { pair, session }
  }

  return { chooseScope, currentScope, openSession, pairFor, rememberWorkspace }
}

export type SignIn = ReturnType<typeof createSignIn>
