import type { InternalUser, WorkspaceRole } from '@platform/shared-types'
import type { Connection } from 'mongoose'
import { Conflict, InvitationInvalid, NotFound } from '../errors.js'
import type { Actor, AuditLog } from './audit-log.js'
import { newId, newSecretToken, sha256 } from './ids.js'
import { checkEmailDomain, type Members, normalizedEmail } from './members.js'
import type {
  InvitationDocument,
  TenantDocument,
  WorkspaceDocument,
  WorkspaceModels,
} from './models.js'

export interface InvitationsOptions {
  connection: Connection
  models: WorkspaceModels
  audit: AuditLog
  members: Members
  ttlHours: number
}

export const invitationView = (invitation: InvitationDocument) => ({
  id: invitation._id,
  workspaceId: invitation.workspaceId,
  email: invitation.email,
  role: invitation.role,
  status:
    invitation.status === 'pending' && invitation.expiresAt.getTime() <= Date.now()
      ? ('expired' as const)
      : invitation.status,
  invitedBy: invitation.invitedBy,
  createdAt: invitation.createdAt,
  expiresAt: invitation.expiresAt,
})

/**
 * Invitations for addresses without an account yet: a secret token (stored only as its hash)
 * that the invitee, once signed in with that address, exchanges for membership.
 */
export function createInvitations(options: InvitationsOptions) {
  const { connection, models, audit, members } = options
  const { Invitation, Workspace } = models

  async function create(
    tenant: TenantDocument,
    workspace: WorkspaceDocument,
    email: string,
    role: WorkspaceRole,
    actor: Actor,
  ) {
    const address = normalizedEmail(email)
    checkEmailDomain(tenant, address)
    const token = newSecretToken()
    const now = new Date()
    const invitation = await connection.transaction(async (session) => {
      const acting = await members.actingMember(workspace._id, actor, session)
      members.requireRoleChangeRight(acting, null, role)
      // An expired invitation no longer blocks a new one for the same address.
      await Invitation.updateMany(
        { workspaceId: workspace._id, email: address, status: 'pending', expiresAt: { $lte: now } },
        { $set: { status: 'revoked' } },
        { session },
      )
      const open = await Invitation.findOne({
        workspaceId: workspace._id,
        email: address,
        status: 'pending',
      })
        .session(session)
        .lean()
      if (open !== null) throw new Conflict(`${address} already has an open invitation`)
      const document: InvitationDocument = {
        _id: newId('inv'),
        tokenHash: sha256(token),
        workspaceId: workspace._id,
        tenantId: workspace.tenantId,
        email: address,
        role,
        status: 'pending',
        invitedBy: actor.userId,
        createdAt: now,
        expiresAt: new Date(now.getTime() + options.ttlHours * 3600_000),
        acceptedBy: null,
        acceptedAt: null,
      }
      await Invitation.create([document], { session })
      await audit.record(
        actor,
        {
          action: 'workspace.invitation.created',
          target: { type: 'invitation', id: document._id },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          after: { email: address, role, expiresAt: document.expiresAt.toISOString() },
        },
        session,
      )
      return document
    })
    return { invitation, token }
  }

  async function list(workspaceId: string, after: string | null, limit: number) {
    const filter: Record<string, unknown> = { workspaceId }
    if (after !== null) filter._id = { $gt: after }
    return Invitation.find(filter)
      .sort({ _id: 1 })
      .limit(limit + 1)
      .lean()
  }

  async function revoke(workspace: WorkspaceDocument, invitationId: string, actor: Actor) {
    await connection.transaction(async (session) => {
      const acting = await members.actingMember(workspace._id, actor, session)
      const invitation = await Invitation.findOne({
        _id: invitationId,
        workspaceId: workspace._id,
        status: 'pending',
      })
        .session(session)
        .lean()
      if (invitation === null) throw new NotFound(`Invitation ${invitationId} not found`)
      members.requireRoleChangeRight(acting, null, invitation.role)
      await Invitation.updateOne(
        { _id: invitationId },
        { $set: { status: 'revoked' } },
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'workspace.invitation.revoked',
          target: { type: 'invitation', id: invitationId },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          before: { email: invitation.email, role: invitation.role },
        },
        session,
      )
    })
  }

  /**
   * Turns an invitation into membership for the signed-in user whose address it was sent to.
   * Anyone else, or a token that is unknown, expired or used, gets the same refusal.
   */
  async function accept(token: string, user: InternalUser, actor: Actor) {
    const now = new Date()
    return connection.transaction(async (session) => {
      const invitation = await Invitation.findOneAndUpdate(
        {
          tokenHash: sha256(token),
          status: 'pending',
          expiresAt: { $gt: now },
          email: normalizedEmail(user.email),
        },
        { $set: { status: 'accepted', acceptedBy: user.id, acceptedAt: now } },
        { session, returnDocument: 'after' },
      ).lean()
      if (invitation === null) throw new InvitationInvalid()
      const workspace = await Workspace.findOne({ _id: invitation.workspaceId, deletedAt: null })
        .session(session)
        .lean()
      if (workspace === null) throw new InvitationInvalid()
      // The tenant may have narrowed who can join since the invitation was sent.
      const tenant = await models.Tenant.findById(workspace.tenantId).session(session).lean()
      if (tenant === null) throw new InvitationInvalid()
      checkEmailDomain(tenant, user.email)
      const member = await members.insert(
        workspace,
        user,
        invitation.role,
        invitation.invitedBy,
        session,
      )
      await audit.record(
        actor,
        {
          action: 'workspace.invitation.accepted',
          target: { type: 'invitation', id: invitation._id },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          after: { userId: user.id, email: user.email, role: invitation.role },
        },
        session,
      )
      return { workspace, member }
    })
  }

  return { create, list, revoke, accept }
}

export type Invitations = ReturnType<typeof createInvitations>
