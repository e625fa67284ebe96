import { isDuplicateKeyError } from '@platform/service-kit'
import type { InternalUser, WorkspaceRole } from '@platform/shared-types'
import type { ClientSession, Connection } from 'mongoose'
import { Conflict, EmailDomainNotAllowed, Forbidden, LastOwner, NotFound } from '../errors.js'
import type { Actor, AuditLog } from './audit-log.js'
import type {
  MemberDocument,
  TenantDocument,
  WorkspaceDocument,
  WorkspaceModels,
} from './models.js'
import { mayInWorkspace } from './permissions.js'

export interface MembersOptions {
  connection: Connection
  models: WorkspaceModels
  audit: AuditLog
}

export const memberView = (member: MemberDocument) => ({
  userId: member.userId,
  email: member.email,
  name: member.name,
  role: member.role,
  addedAt: member.addedAt,
})

/** Lowercased and NFKC-folded, as the auth-service stores addresses. */
export const normalizedEmail = (email: string) => email.normalize('NFKC').trim().toLowerCase()

/** Refuses an address the tenant does not let join (an empty list lets anyone join). */
export function checkEmailDomain(tenant: TenantDocument, email: string) {
  if (tenant.allowedEmailDomains.length === 0) return
  const domain = normalizedEmail(email).split('@').at(-1) ?? ''
  if (!tenant.allowedEmailDomains.includes(domain)) throw new EmailDomainNotAllowed(domain)
}

/**
 * Members and their roles. Every change re-reads the acting member inside its transaction, and
 * the workspace's `ownerCount` only drops through a conditional update that needs another
 * owner, so no interleaving of requests can leave a workspace without an owner.
 */
export function createMembers(options: MembersOptions) {
  const { connection, models, audit } = options
  const { Workspace, Member, TenantMember } = models

  /** The acting member as it is now, inside the transaction; gone or demoted meanwhile → refused. */
  async function actingMember(workspaceId: string, actor: Actor, session: ClientSession) {
    const member = await Member.findOne({ workspaceId, userId: actor.userId })
      .session(session)
      .lean()
    if (member === null) throw new NotFound(`Workspace ${workspaceId} not found`)
    return member
  }

  async function list(workspaceId: string, after: string | null, limit: number) {
    const filter: Record<string, unknown> = { workspaceId }
    if (after !== null) filter.userId = { $gt: after }
    return Member.find(filter)
      .sort({ workspaceId: 1, userId: 1 })
      .limit(limit + 1)
      .lean()
  }

  /** Adds an existing user inside the caller's transaction (direct add, accepted invitation). */
  async function insert(
    workspace: WorkspaceDocument,
    user: InternalUser,
    role: WorkspaceRole,
    addedBy: string,
    session: ClientSession,
  ): Promise<MemberDocument> {
    const now = new Date()
    const member: MemberDocument = {
      workspaceId: workspace._id,
      tenantId: workspace.tenantId,
      userId: user.id,
      email: user.email,
      name: user.name,
      role,
      addedAt: now,
      addedBy,
      lastUsedAt: null,
    }
    try {
      await Member.create([member], { session })
    } catch (error) {
      if (isDuplicateKeyError(error))
        throw new Conflict(`${user.email} is already a member of this workspace`)
      throw error
    }
    const live = await Workspace.updateOne(
      { _id: workspace._id, deletedAt: null },
      role === 'owner' ? { $inc: { ownerCount: 1 } } : { $set: {} },
      { session },
    )
    if (live.matchedCount === 0) throw new NotFound(`Workspace ${workspace._id} not found`)
    await TenantMember.updateOne(
      { tenantId: workspace.tenantId, userId: user.id },
      { $setOnInsert: { role: 'member', addedAt: now } },
      { upsert: true, session },
    )
    return member
  }

  async function add(
    tenant: TenantDocument,
    workspace: WorkspaceDocument,
    user: InternalUser,
    role: WorkspaceRole,
    actor: Actor,
  ) {
    checkEmailDomain(tenant, user.email)
    return connection.transaction(async (session) => {
      const acting = await actingMember(workspace._id, actor, session)
      requireRoleChangeRight(acting, null, role)
      const member = await insert(workspace, user, role, actor.userId, session)
      await audit.record(
        actor,
        {
          action: 'workspace.member.added',
          target: { type: 'user', id: user.id },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          after: { email: user.email, role },
        },
        session,
      )
      return member
    })
  }

  /** Owners alone touch owners; admins manage everyone else; nobody else manages anyone. */
  function requireRoleChangeRight(
    acting: MemberDocument,
    from: WorkspaceRole | null,
    to: WorkspaceRole | null,
  ) {
    if (!mayInWorkspace(acting.role, 'members.manage'))
      throw new Forbidden(`Your role (${acting.role}) may not manage members`)
    if (
      (from === 'owner' || to === 'owner') &&
      !mayInWorkspace(acting.role, 'members.manage-owners')
    )
      throw new Forbidden('Only an owner grants, changes or removes the owner role')
  }

  /** Takes one owner away, refused when it is the last (an atomic check on `ownerCount`). */
  async function releaseOwner(workspaceId: string, session: ClientSession) {
    const result = await Workspace.updateOne(
      { _id: workspaceId, ownerCount: { $gt: 1 } },
      { $inc: { ownerCount: -1 } },
      { session },
    )
    if (result.modifiedCount === 0) throw new LastOwner()
  }

  async function changeRole(
    workspace: WorkspaceDocument,
    userId: string,
    role: WorkspaceRole,
    actor: Actor,
  ) {
    return connection.transaction(async (session) => {
      const acting = await actingMember(workspace._id, actor, session)
      const target = await Member.findOne({ workspaceId: workspace._id, userId })
        .session(session)
        .lean()
      if (target === null) throw new NotFound(`Member ${userId} not found`)
      requireRoleChangeRight(acting, target.role, role)
      if (target.role === role) return target
      if (target.role === 'owner') await releaseOwner(workspace._id, session)
      if (role === 'owner')
        await Workspace.updateOne({ _id: workspace._id }, { $inc: { ownerCount: 1 } }, { session })
      await Member.updateOne(
        { workspaceId: workspace._id, userId },
        { $set: { role } },
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'workspace.member.role_changed',
          target: { type: 'user', id: userId },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          before: { role: target.role },
          after: { role },
        },
        session,
      )
      return { ...target, role }
    })
  }

  /** Removes a member; a member removing itself is leaving, which needs no management right. */
  async function remove(workspace: WorkspaceDocument, userId: string, actor: Actor) {
    await connection.transaction(async (session) => {
      const acting = await actingMember(workspace._id, actor, session)
      const target = await Member.findOne({ workspaceId: workspace._id, userId })
        .session(session)
        .lean()
      if (target === null) throw new NotFound(`Member ${userId} not found`)
      const leaving = userId === actor.userId
      if (!leaving) requireRoleChangeRight(acting, target.role, null)
      if (target.role === 'owner') await releaseOwner(workspace._id, session)
      await Member.deleteOne({ workspaceId: workspace._id, userId }, { session })
      await audit.record(
        actor,
        {
          action: leaving ? 'workspace.member.left' : 'workspace.member.removed',
          target: { type: 'user', id: userId },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          before: { email: target.email, role: target.role },
        },
        session,
      )
    })
  }

  return { list, insert, add, changeRole, remove, requireRoleChangeRight, actingMember }
}

export type Members = ReturnType<typeof createMembers>
