import type { TenantRole } from '@platform/shared-types'
import type { Connection } from 'mongoose'
import { Forbidden, LastOwner, NotFound } from '../errors.js'
import type { Actor, AuditLog } from './audit-log.js'
import { newId } from './ids.js'
import type { Branding, TenantDocument, WorkspaceModels } from './models.js'
import type { Workspaces } from './workspaces.js'

export interface TenantSettings {
  name?: string | undefined
  timeZone?: string | undefined
  branding?: Partial<Branding> | undefined
  limits?: { monthlyTokens: number | null } | undefined
  allowedEmailDomains?: string[] | undefined
  auditRetentionDays?: number | null | undefined
}

export interface TenantsOptions {
  connection: Connection
  models: WorkspaceModels
  audit: AuditLog
  workspaces: Workspaces
  /** Tells gateways that every workspace of a tenant has a new effective policy. */
  invalidateTenantPolicies: (tenantId: string) => Promise<void>
}

/** A tenant's settings as its members see them, with the caller's tenant role. */
export const tenantView = (tenant: TenantDocument, role: TenantRole) => ({
  id: tenant._id,
  name: tenant.name,
  timeZone: tenant.timeZone,
  branding: tenant.branding,
  limits: tenant.limits,
  allowedEmailDomains: tenant.allowedEmailDomains,
  auditRetentionDays: tenant.auditRetentionDays,
  createdAt: tenant.createdAt.toISOString(),
  updatedAt: tenant.updatedAt.toISOString(),
  role,
})

/** Tenants: creation with a first workspace, settings, and tenant roles. */
export function createTenants(options: TenantsOptions) {
  const { connection, models, audit } = options
  const { Tenant, TenantMember } = models

  /** The tenant, its owner and its first workspace, in one transaction (API.md §4). */
  async function create(
    input: { name: string; timeZone: string; workspaceName: string },
    owner: { userId: string; email: string; name: string },
    actor: Actor,
  ) {
    return connection.transaction(async (session) => {
      const now = new Date()
      const [tenant] = await Tenant.create(
        [
          {
            _id: newId('tnt'),
            name: input.name,
            timeZone: input.timeZone,
            branding: { displayName: null, logoUrl: null, accentColor: null },
            allowedEmailDomains: [],
            limits: { monthlyTokens: null },
            auditRetentionDays: null,
            ownerCount: 1,
            createdBy: owner.userId,
          },
        ],
        { session },
      )
      if (tenant === undefined) throw new Error('tenant insert returned nothing')
      await TenantMember.create(
        [{ tenantId: tenant._id, userId: owner.userId, role: 'owner', addedAt: now }],
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'tenant.created',
          target: { type: 'tenant', id: tenant._id },
          tenantId: tenant._id,
          workspaceId: null,
          after: { name: input.name, timeZone: input.timeZone },
        },
        session,
      )
      const stored = tenant.toObject()
      const workspace = await options.workspaces.insert(
        stored,
        input.workspaceName,
        owner,
        actor,
        session,
      )
      return { tenant: stored, workspace }
    })
  }

  async function update(tenant: TenantDocument, settings: TenantSettings, actor: Actor) {
    const set: Record<string, unknown> = {}
    const before: Record<string, unknown> = {}
    const after: Record<string, unknown> = {}
    const change = (field: string, previous: unknown, next: unknown) => {
      if (JSON.stringify(previous) === JSON.stringify(next)) return
      set[field] = next
      before[field] = previous
      after[field] = next
    }
    if (settings.name !== undefined) change('name', tenant.name, settings.name)
    if (settings.timeZone !== undefined) change('timeZone', tenant.timeZone, settings.timeZone)
    if (settings.branding !== undefined)
      change('branding', tenant.branding, { ...tenant.branding, ...settings.branding })
    if (settings.limits !== undefined) change('limits', tenant.limits, settings.limits)
    if (settings.allowedEmailDomains !== undefined)
      change('allowedEmailDomains', tenant.allowedEmailDomains, settings.allowedEmailDomains)
    if (settings.auditRetentionDays !== undefined)
      change('auditRetentionDays', tenant.auditRetentionDays, settings.auditRetentionDays)
    if (Object.keys(set).length === 0) return tenant

    const updated = await connection.transaction(async (session) => {
      const result = await Tenant.findOneAndUpdate(
        { _id: tenant._id },
        { $set: set },
        { session, returnDocument: 'after' },
      ).lean()
      if (result === null) throw new NotFound(`Tenant ${tenant._id} not found`)
      await audit.record(
        actor,
        {
          action: 'tenant.settings.updated',
          target: { type: 'tenant', id: tenant._id },
          tenantId: tenant._id,
          workspaceId: null,
          before,
          after,
        },
        session,
      )
      return result
    })
    if ('auditRetentionDays' in set)
      await audit.applyRetention(tenant._id, updated.auditRetentionDays)
    // Caps and the time zone are part of every workspace's effective policy.
    if ('limits' in set || 'timeZone' in set) await options.invalidateTenantPolicies(tenant._id)
    return updated
  }

  /** Changes a tenant role; only owners change roles, and one owner always stays. */
  async function changeRole(
    tenant: TenantDocument,
    userId: string,
    role: TenantRole,
    actor: Actor,
  ) {
    return connection.transaction(async (session) => {
      // The actor's role as it is now: a demotion racing this change must not grant ownership.
      const acting = await TenantMember.findOne({ tenantId: tenant._id, userId: actor.userId })
        .session(session)
        .lean()
      if (acting === null) throw new NotFound(`Tenant ${tenant._id} not found`)
      if (acting.role !== 'owner') throw new Forbidden('Only a tenant owner changes tenant roles')
      const target = await TenantMember.findOne({ tenantId: tenant._id, userId })
        .session(session)
        .lean()
      if (target === null) throw new NotFound(`Member ${userId} not found`)
      if (target.role === role) return target
      if (target.role === 'owner') {
        const demoted = await Tenant.updateOne(
          { _id: tenant._id, ownerCount: { $gt: 1 } },
          { $inc: { ownerCount: -1 } },
          { session },
        )
        if (demoted.modifiedCount === 0) throw new LastOwner()
      }
      if (role === 'owner')
        await Tenant.updateOne({ _id: tenant._id }, { $inc: { ownerCount: 1 } }, { session })
      await TenantMember.updateOne(
        { tenantId: tenant._id, userId },
        { $set: { role } },
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'tenant.member.role_changed',
          target: { type: 'user', id: userId },
          tenantId: tenant._id,
          workspaceId: null,
          before: { role: target.role },
          after: { role },
        },
        session,
      )
      return { ...target, role }
    })
  }

  /** The tenants the user belongs to, with its role in each. */
  async function listMine(userId: string) {
    const memberships = await TenantMember.find({ userId }).lean()
    const tenants = await Tenant.find({ _id: { $in: memberships.map((m) => m.tenantId) } }).lean()
    const roles = new Map(memberships.map((m) => [m.tenantId, m.role]))
    return tenants.flatMap((tenant) => {
      const role = roles.get(tenant._id)
      return role === undefined ? [] : [tenantView(tenant, role)]
    })
  }

  return { create, update, changeRole, listMine }
}

export type Tenants = ReturnType<typeof createTenants>
