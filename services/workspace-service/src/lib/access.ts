import { Forbidden, NotFound } from '../errors.js'
import type {
  MemberDocument,
  TenantDocument,
  TenantMemberDocument,
  WorkspaceDocument,
  WorkspaceModels,
} from './models.js'
import {
  mayInTenant,
  mayInWorkspace,
  type TenantPermission,
  type WorkspacePermission,
} from './permissions.js'

export interface WorkspaceAccess {
  workspace: WorkspaceDocument
  member: MemberDocument
}

export interface TenantAccess {
  tenant: TenantDocument
  membership: TenantMemberDocument
}

/** How stale a member's `lastUsedAt` may get before a request refreshes it. */
const LAST_USED_RESOLUTION_MS = 60_000

/**
 * Who may do what, decided from this service's own membership rows (never the token's role
 * claim, which can be minutes old). A workspace or tenant the caller is not in does not exist
 * for it (404, whatever tenant it is in); one it is in but may not act on is 403.
 */
export function createAccess(models: WorkspaceModels) {
  const { Workspace, Member, Tenant, TenantMember } = models

  async function workspace(
    userId: string,
    workspaceId: string,
    permission: WorkspacePermission,
  ): Promise<WorkspaceAccess> {
    const [found, member] = await Promise.all([
      Workspace.findOne({ _id: workspaceId, deletedAt: null }).lean(),
      Member.findOne({ workspaceId, userId }).lean(),
    ])
    if (found === null || member === null) throw new NotFound(`Workspace ${workspaceId} not found`)
    if (!mayInWorkspace(member.role, permission))
      throw new Forbidden(`Your role (${member.role}) may not do this in workspace ${found.name}`)
    const now = Date.now()
    if (member.lastUsedAt === null || now - member.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS)
      // Only a hint for choosing the workspace a sign-in lands in; losing it costs nothing.
      void Member.updateOne({ workspaceId, userId }, { $set: { lastUsedAt: new Date(now) } }).catch(
        () => undefined,
      )
    return { workspace: found, member }
  }

  async function tenant(
    userId: string,
    tenantId: string,
    permission: TenantPermission,
  ): Promise<TenantAccess> {
    const [found, membership] = await Promise.all([
      Tenant.findById(tenantId).lean(),
      TenantMember.findOne({ tenantId, userId }).lean(),
    ])
    if (found === null || membership === null) throw new NotFound(`Tenant ${tenantId} not found`)
    if (!mayInTenant(membership.role, permission))
      throw new Forbidden(`Your tenant role (${membership.role}) may not do this`)
    return { tenant: found, membership }
  }

  /** The tenant of a workspace the caller was let into; a workspace always has one. */
  async function tenantOf(workspace: WorkspaceDocument): Promise<TenantDocument> {
    const found = await Tenant.findById(workspace.tenantId).lean()
    if (found === null) throw new Error(`workspace ${workspace._id} has no tenant`)
    return found
  }

  return { workspace, tenant, tenantOf }
}

export type Access = ReturnType<typeof createAccess>
