import type { WorkspacePolicy, WorkspaceRole } from '@platform/shared-types'
import type { ClientSession, Connection } from 'mongoose'
import { NotFound } from '../errors.js'
import type { Actor, AuditLog } from './audit-log.js'
import { newId } from './ids.js'
import type { TenantDocument, WorkspaceDocument, WorkspaceModels } from './models.js'

const DAY_MS = 24 * 3600 * 1000

/** A new workspace's policy (API.md §4): no model, no MCP server, and the tenant's budget. */
export const defaultPolicy = (tenant: Pick<TenantDocument, 'limits'>): WorkspacePolicy => ({
  models: { allow: [] },
  mcp: { servers: [], tools: {} },
  params: { maxOutputTokens: null, temperature: null },
  systemPrompt: null,
  quota: {
    monthlyTokens: tenant.limits.monthlyTokens,
    monthlyCostUsd: null,
    memberMonthlyTokens: null,
    rpm: null,
    memberRpm: null,
    tpm: null,
    memberTpm: null,
    maxConcurrentStreams: null,
    overage: 'block',
  },
})

export interface WorkspacesOptions {
  connection: Connection
  models: WorkspaceModels
  audit: AuditLog
  retentionDays: number
  /** Tells gateways a workspace's policy changed or is gone. */
  invalidatePolicy: (workspaceId: string, version: number) => Promise<void>
}

export interface MyWorkspace {
  id: string
  tenantId: string
  name: string
  role: WorkspaceRole
}

/** Workspaces: creation with their first owner and policy, renames, soft delete and purge. */
export function createWorkspaces(options: WorkspacesOptions) {
  const { connection, models, audit } = options
  const { Workspace, Member, TenantMember, PolicyVersion, Invitation } = models

  /**
   * Creates a workspace owned by `owner` inside the caller's transaction: the workspace, its
   * owner row, tenant membership, version 1 of its policy and the audit event.
   */
  async function insert(
    tenant: TenantDocument,
    name: string,
    owner: { userId: string; email: string; name: string },
    actor: Actor,
    session: ClientSession,
  ): Promise<WorkspaceDocument> {
    const now = new Date()
    const policy = defaultPolicy(tenant)
    const [workspace] = await Workspace.create(
      [
        {
          _id: newId('wsp'),
          tenantId: tenant._id,
          name,
          policy,
          policyVersion: 1,
          ownerCount: 1,
          createdBy: owner.userId,
          deletedAt: null,
          deletedBy: null,
          purgeAt: null,
        },
      ],
      { session },
    )
    if (workspace === undefined) throw new Error('workspace insert returned nothing')
    await Member.create(
      [
        {
          workspaceId: workspace._id,
          tenantId: tenant._id,
          userId: owner.userId,
          email: owner.email,
          name: owner.name,
          role: 'owner',
          addedAt: now,
          addedBy: owner.userId,
          lastUsedAt: now,
        },
      ],
      { session },
    )
    await TenantMember.updateOne(
      { tenantId: tenant._id, userId: owner.userId },
      { $setOnInsert: { role: 'member', addedAt: now } },
      { upsert: true, session },
    )
    await PolicyVersion.create(
      [
        {
          workspaceId: workspace._id,
          version: 1,
          policy,
          changedBy: owner.userId,
          changedAt: now,
          diff: [{ path: '', before: null, after: policy }],
        },
      ],
      { session },
    )
    await audit.record(
      actor,
      {
        action: 'workspace.created',
        target: { type: 'workspace', id: workspace._id },
        tenantId: tenant._id,
        workspaceId: workspace._id,
        after: { name },
      },
      session,
    )
    return workspace.toObject()
  }

  async function create(
    tenant: TenantDocument,
    name: string,
    owner: { userId: string; email: string; name: string },
    actor: Actor,
  ) {
    return connection.transaction((session) => insert(tenant, name, owner, actor, session))
  }

  /** The caller's workspaces, a page at a time, in id order. */
  async function listMine(
    userId: string,
    options: { tenantId?: string | undefined; after: string | null; limit: number },
  ) {
    const filter: Record<string, unknown> = { userId }
    if (options.tenantId !== undefined) filter.tenantId = options.tenantId
    if (options.after !== null) filter.workspaceId = { $gt: options.after }
    const rows = await Member.find(filter, { workspaceId: 1, tenantId: 1, role: 1 })
      .sort({ userId: 1, workspaceId: 1 })
      .limit(options.limit + 1)
      .lean()
    const page = rows.slice(0, options.limit)
    const live = await Workspace.find(
      { _id: { $in: page.map((row) => row.workspaceId) }, deletedAt: null },
      { name: 1 },
    ).lean()
    const names = new Map(live.map((workspace) => [workspace._id, workspace.name]))
    const items: MyWorkspace[] = page.flatMap((row) => {
      const name = names.get(row.workspaceId)
      return name === undefined
        ? []
        : [{ id: row.workspaceId, tenantId: row.tenantId, name, role: row.role }]
    })
    return { items, lastId: page.at(-1)?.workspaceId ?? null, more: rows.length > options.limit }
  }

  async function rename(workspace: WorkspaceDocument, name: string, actor: Actor) {
    if (workspace.name === name) return { ...workspace }
    return connection.transaction(async (session) => {
      const updated = await Workspace.findOneAndUpdate(
        { _id: workspace._id, deletedAt: null },
        { $set: { name } },
        { session, returnDocument: 'after' },
      ).lean()
      if (updated === null) throw new NotFound(`Workspace ${workspace._id} not found`)
      await audit.record(
        actor,
        {
          action: 'workspace.renamed',
          target: { type: 'workspace', id: workspace._id },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          before: { name: workspace.name },
          after: { name },
        },
        session,
      )
      return updated
    })
  }

  /** Soft delete: gone for everyone at once, restorable by an owner until `purgeAt`. */
  async function softDelete(workspace: WorkspaceDocument, actor: Actor) {
    const deletedAt = new Date()
    const purgeAt = new Date(deletedAt.getTime() + options.retentionDays * DAY_MS)
    await connection.transaction(async (session) => {
      const result = await Workspace.updateOne(
        { _id: workspace._id, deletedAt: null },
        { $set: { deletedAt, deletedBy: actor.userId, purgeAt } },
        { session },
      )
      if (result.modifiedCount === 0) throw new NotFound(`Workspace ${workspace._id} not found`)
      await Invitation.updateMany(
        { workspaceId: workspace._id, status: 'pending' },
        { $set: { status: 'revoked' } },
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'workspace.deleted',
          target: { type: 'workspace', id: workspace._id },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          before: { name: workspace.name },
          after: { purgeAt: purgeAt.toISOString() },
        },
        session,
      )
    })
    await options.invalidatePolicy(workspace._id, workspace.policyVersion)
    return { deletedAt, purgeAt }
  }

  /** Undoes a soft delete; only an owner of the workspace, only before its purge. */
  async function restore(workspaceId: string, actor: Actor) {
    const restored = await connection.transaction(async (session) => {
      const owner = await Member.findOne({ workspaceId, userId: actor.userId, role: 'owner' })
        .session(session)
        .lean()
      const workspace = await Workspace.findOne({
        _id: workspaceId,
        deletedAt: { $ne: null },
        purgeAt: { $gt: new Date() },
      })
        .session(session)
        .lean()
      // Non-owners may not learn that a deleted workspace exists.
      if (owner === null || workspace === null)
        throw new NotFound(`Deleted workspace ${workspaceId} not found`)
      await Workspace.updateOne(
        { _id: workspaceId },
        { $set: { deletedAt: null, deletedBy: null, purgeAt: null } },
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'workspace.restored',
          target: { type: 'workspace', id: workspaceId },
          tenantId: workspace.tenantId,
          workspaceId,
        },
        session,
      )
      return { ...workspace, deletedAt: null, deletedBy: null, purgeAt: null }
    })
    await options.invalidatePolicy(workspaceId, restored.policyVersion)
    return restored
  }

  /**
   * Removes every workspace whose retention has passed, with all its rows. The workspace row
   * goes last, so a purge cut short is finished by the next one.
   */
  async function purgeDue(now = new Date()) {
    const due = await Workspace.find({ purgeAt: { $lte: now } }, { _id: 1, tenantId: 1 }).lean()
    for (const workspace of due) {
      const scope = { workspaceId: workspace._id }
      await Promise.all([
        Member.deleteMany(scope),
        Invitation.deleteMany(scope),
        PolicyVersion.deleteMany(scope),
        models.Ledger.deleteMany(scope),
        models.Rollup.deleteMany(scope),
        models.Audit.deleteMany(scope),
      ])
      await connection.transaction(async (session) => {
        await Workspace.deleteOne({ _id: workspace._id }, { session })
        await audit.record(
          'service',
          {
            action: 'workspace.purged',
            target: { type: 'workspace', id: workspace._id },
            tenantId: workspace.tenantId,
            workspaceId: null,
          },
          session,
        )
      })
    }
    return due.length
  }

  return { insert, create, listMine, rename, softDelete, restore, purgeDue }
}

export type Workspaces = ReturnType<typeof createWorkspaces>
