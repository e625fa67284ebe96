import { randomUUID } from 'node:crypto'
import type { WorkspaceRole } from '@platform/shared-types'
import { PASSWORD, type TestStack, type TestUser } from './stack.js'

/**
 * Registers an account for an address chosen beforehand (an invitee's) and gives it an unscoped
 * token; `stack.user()` picks its own address, so it cannot stand in for an invitee.
 */
export async function registerWithEmail(
  stack: TestStack,
  email: string,
  name = 'Invited person',
): Promise<TestUser> {
  const registered = await stack.auth.inject({
    method: 'POST',
    url: '/auth/v1/register',
    payload: { email, password: PASSWORD, name },
  })
  if (registered.statusCode !== 201)
    throw new Error(`register answered ${registered.statusCode}: ${registered.body}`)
  const { user } = registered.json<{ user: { id: string; email: string; name: string } }>()
  const token = await stack.auth.identity.tokens.accessToken(user.id, randomUUID(), null)
  return { ...user, token }
}

export interface Crew<Roles extends readonly WorkspaceRole[]> {
  tenantId: string
  workspaceId: string
  /** Created the tenant: owns it and its first workspace. */
  owner: TestUser
  /** One user per role asked for, in the same order. */
  others: { [Index in keyof Roles]: TestUser }
}

/** A fresh tenant whose first workspace holds its creator (owner) and one user per `roles`. */
export async function workspaceWith<const Roles extends readonly WorkspaceRole[]>(
  stack: TestStack,
  ...roles: Roles
): Promise<Crew<Roles>> {
  const owner = await stack.user('owner')
  const { tenantId, workspaceId } = await stack.tenant(owner)
  const others: TestUser[] = []
  for (const role of roles) {
    const user = await stack.user(role)
    await stack.addMember(owner, workspaceId, user, role)
    others.push(user)
  }
  return { tenantId, workspaceId, owner, others: others as Crew<Roles>['others'] }
}

/**
 * What a membership write can touch in one workspace, without the `lastUsedAt` hint reads
 * refresh in the background: comparing two of these proves a refused request wrote nothing.
 */
export async function workspaceState(stack: TestStack, workspaceId: string) {
  const { Workspace, Member, Invitation, Audit, TenantMember } = stack.app.tenancy.models
  const [workspace, members, invitations, auditActions] = await Promise.all([
    Workspace.findById(workspaceId).lean(),
    Member.find({ workspaceId }).sort({ userId: 1 }).lean(),
    Invitation.find({ workspaceId }).sort({ _id: 1 }).lean(),
    Audit.find({ workspaceId }).sort({ at: 1, _id: 1 }).lean(),
  ])
  const tenantMembers =
    workspace === null
      ? []
      : await TenantMember.find({ tenantId: workspace.tenantId }).sort({ userId: 1 }).lean()
  return {
    workspace:
      workspace === null
        ? null
        : {
            name: workspace.name,
            ownerCount: workspace.ownerCount,
            policyVersion: workspace.policyVersion,
            deletedAt: workspace.deletedAt,
          },
    members: members.map(({ userId, email, name, role, addedAt }) => ({
      userId,
      email,
      name,
      role,
      addedAt,
    })),
    invitations: invitations.map(({ _id, email, role, status, expiresAt, acceptedBy }) => ({
      _id,
      email,
      role,
      status,
      expiresAt,
      acceptedBy,
    })),
    tenantMembers: tenantMembers.map(({ userId, role }) => ({ userId, role })),
    auditActions: auditActions.map((event) => `${event.action}:${event._id}`),
  }
}

/** The owner rows of a workspace next to its `ownerCount`, which must always agree. */
export async function ownerTally(stack: TestStack, workspaceId: string) {
  const { Workspace, Member } = stack.app.tenancy.models
  const [workspace, ownerRows] = await Promise.all([
    Workspace.findById(workspaceId).lean(),
    Member.countDocuments({ workspaceId, role: 'owner' }),
  ])
  return { ownerRows, ownerCount: workspace?.ownerCount ?? null }
}

/** The audit events of one workspace with a given action, oldest first. */
export function auditEvents(stack: TestStack, workspaceId: string, action: string) {
  return stack.app.tenancy.models.Audit.find({ workspaceId, action }).sort({ at: 1 }).lean()
}
