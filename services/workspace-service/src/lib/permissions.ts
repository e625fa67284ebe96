import type { TenantRole, WorkspaceRole } from '@platform/shared-types'

/** What a workspace member may do. Routes name the one permission they need. */
export type WorkspacePermission =
  | 'workspace.read'
  | 'workspace.update'
  | 'workspace.delete'
  | 'members.read'
  | 'members.manage'
  | 'members.manage-owners'
  | 'policy.read'
  | 'policy.write'
  | 'policy.history'
  | 'usage.read-own'
  | 'usage.read-all'
  | 'quota.read'
  | 'audit.read'
  | 'export'

/**
 * The one table of workspace roles (API.md §4). `members.manage` covers admins, members and
 * viewers; only owners touch owners (grant, demote, remove).
 */
export const WORKSPACE_PERMISSIONS: Record<WorkspaceRole, ReadonlySet<WorkspacePermission>> = {
  owner: new Set<WorkspacePermission>([
    'workspace.read',
    'workspace.update',
    'workspace.delete',
    'members.read',
    'members.manage',
    'members.manage-owners',
    'policy.read',
    'policy.write',
    'policy.history',
    'usage.read-own',
    'usage.read-all',
    'quota.read',
    'audit.read',
    'export',
  ]),
  admin: new Set<WorkspacePermission>([
    'workspace.read',
    'workspace.update',
    'members.read',
    'members.manage',
    'policy.read',
    'policy.write',
    'policy.history',
    'usage.read-own',
    'usage.read-all',
    'quota.read',
    'audit.read',
    'export',
  ]),
  member: new Set<WorkspacePermission>([
    'workspace.read',
    'members.read',
    'policy.read',
    'usage.read-own',
    'quota.read',
  ]),
  viewer: new Set<WorkspacePermission>([
    'workspace.read',
    'members.read',
    'policy.read',
    'usage.read-own',
    'quota.read',
  ]),
}

/** What a tenant member may do. */
export type TenantPermission =
  | 'tenant.read'
  | 'tenant.update'
  | 'tenant.members.read'
  | 'tenant.members.manage'
  | 'tenant.audit.read'
  | 'workspaces.create'

/** Tenant roles: owners and admins run the tenant; only owners change who runs it. */
export const TENANT_PERMISSIONS: Record<TenantRole, ReadonlySet<TenantPermission>> = {
  owner: new Set<TenantPermission>([
    'tenant.read',
    'tenant.update',
    'tenant.members.read',
    'tenant.members.manage',
    'tenant.audit.read',
    'workspaces.create',
  ]),
  admin: new Set<TenantPermission>([
    'tenant.read',
    'tenant.update',
    'tenant.members.read',
    'tenant.audit.read',
    'workspaces.create',
  ]),
  member: new Set<TenantPermission>(['tenant.read']),
}

export const mayInWorkspace = (role: WorkspaceRole, permission: WorkspacePermission) =>
  WORKSPACE_PERMISSIONS[role].has(permission)

export const mayInTenant = (role: TenantRole, permission: TenantPermission) =>
  TENANT_PERMISSIONS[role].has(permission)
