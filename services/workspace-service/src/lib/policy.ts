import {
  type EffectivePolicy,
  POLICY_INVALIDATE_CHANNEL,
  type PolicyInvalidation,
  type WorkspacePolicy,
} from '@platform/shared-types'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Connection } from 'mongoose'
import { NotFound, PreconditionFailed } from '../errors.js'
import type { Actor, AuditLog } from './audit-log.js'
import type { TenantDocument, WorkspaceDocument, WorkspaceModels } from './models.js'
import { policyDiff } from './policy-diff.js'

export interface PoliciesOptions {
  connection: Connection
  models: WorkspaceModels
  audit: AuditLog
  redis: Redis
  log: FastifyBaseLogger
}

/** The smaller of two limits, where `null` is no limit. */
const capped = (own: number | null, cap: number | null) =>
  own === null ? cap : cap === null ? own : Math.min(own, cap)

/** The policy the gateway enforces: the workspace's own, under its tenant's caps. */
export function effectivePolicy(
  workspace: WorkspaceDocument,
  tenant: TenantDocument,
): EffectivePolicy {
  const { policy } = workspace
  return {
    ...policy,
    quota: {
      ...policy.quota,
      monthlyTokens: capped(policy.quota.monthlyTokens, tenant.limits.monthlyTokens),
    },
    workspaceId: workspace._id,
    workspaceName: workspace.name,
    tenantId: tenant._id,
    timeZone: tenant.timeZone,
    version: workspace.policyVersion,
  }
}

/**
 * Workspace policy: every write is a new version (who, when, what changed) stored with the
 * change in one transaction, then announced on `policy.invalidate` so gateways drop their copy.
 */
export function createPolicies(options: PoliciesOptions) {
  const { connection, models, audit, redis, log } = options
  const { Workspace, PolicyVersion, Tenant } = models

  /**
   * Announces a change. A lost message leaves a gateway on its cached copy until that copy's
   * own expiry, so a failure is logged loudly but does not undo the committed change.
   */
  async function invalidate(workspaceId: string, version: number) {
    const message: PolicyInvalidation = { workspaceId, version }
    try {
      await redis.publish(POLICY_INVALIDATE_CHANNEL, JSON.stringify(message))
    } catch (error) {
      log.error({ err: error, workspaceId, version }, 'policy invalidation not published')
    }
  }

  async function invalidateTenant(tenantId: string) {
    const workspaces = await Workspace.find(
      { tenantId, deletedAt: null },
      { policyVersion: 1 },
    ).lean()
    await Promise.all(workspaces.map((w) => invalidate(w._id, w.policyVersion)))
  }

  /** Replaces the policy; with `expectedVersion`, only if nobody changed it since (If-Match). */
  async function replace(
    workspace: WorkspaceDocument,
    policy: WorkspacePolicy,
    actor: Actor,
    expectedVersion: number | null,
  ) {
    const written = await connection.transaction(async (session) => {
      const current = await Workspace.findOne({ _id: workspace._id, deletedAt: null })
        .session(session)
        .lean()
      if (current === null) throw new NotFound(`Workspace ${workspace._id} not found`)
      if (expectedVersion !== null && current.policyVersion !== expectedVersion)
        throw new PreconditionFailed(
          `The policy is at version ${current.policyVersion}, not ${expectedVersion}; reload it`,
        )
      const diff = policyDiff(current.policy, policy)
      if (diff.length === 0) return { ...current, changed: false }
      const version = current.policyVersion + 1
      const now = new Date()
      const result = await Workspace.updateOne(
        { _id: workspace._id, policyVersion: current.policyVersion },
        { $set: { policy, policyVersion: version } },
        { session },
      )
      if (result.modifiedCount === 0) throw new Error('policy version moved inside a transaction')
      await PolicyVersion.create(
        [
          {
            workspaceId: workspace._id,
            version,
            policy,
            changedBy: actor.userId,
            changedAt: now,
            diff,
          },
        ],
        { session },
      )
      await audit.record(
        actor,
        {
          action: 'workspace.policy.updated',
          target: { type: 'policy', id: workspace._id },
          tenantId: workspace.tenantId,
          workspaceId: workspace._id,
          before: { version: current.policyVersion },
          after: { version, changes: diff },
        },
        session,
      )
      return { ...current, policy, policyVersion: version, changed: true }
    })
    if (written.changed) await invalidate(workspace._id, written.policyVersion)
    return written
  }

  async function versions(workspaceId: string, before: number | null, limit: number) {
    const filter: Record<string, unknown> = { workspaceId }
    if (before !== null) filter.version = { $lt: before }
    return PolicyVersion.find(filter)
      .sort({ workspaceId: 1, version: -1 })
      .limit(limit + 1)
      .lean()
  }

  /** The effective policy of a live workspace, or null when it does not exist (or is deleted). */
  async function effective(workspaceId: string): Promise<EffectivePolicy | null> {
    const workspace = await Workspace.findOne({ _id: workspaceId, deletedAt: null }).lean()
    if (workspace === null) return null
    const tenant = await Tenant.findById(workspace.tenantId).lean()
    if (tenant === null) return null
    return effectivePolicy(workspace, tenant)
  }

  return { invalidate, invalidateTenant, replace, versions, effective }
}

export type Policies = ReturnType<typeof createPolicies>
