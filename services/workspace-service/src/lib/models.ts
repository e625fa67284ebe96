import type {
  AuditActor,
  AuditTarget,
  TenantRole,
  UsageRecord,
  WorkspacePolicy,
  WorkspaceRole,
} from '@platform/shared-types'
import { type Connection, type Model, Schema } from 'mongoose'

export interface Branding {
  displayName: string | null
  logoUrl: string | null
  accentColor: string | null
}

export interface TenantDocument {
  _id: string
  name: string
  timeZone: string
  branding: Branding
  /** Domains whose addresses may be added or invited; empty allows any. */
  allowedEmailDomains: string[]
  /** Caps every workspace's budget (`null`: no cap). */
  limits: { monthlyTokens: number | null }
  /** Audit events of this tenant are kept this long (`null`: the service's default). */
  auditRetentionDays: number | null
  /** Kept equal to the number of `owner` rows, so the last one can be refused atomically. */
  ownerCount: number
  createdBy: string
  createdAt: Date
  updatedAt: Date
}

export interface TenantMemberDocument {
  tenantId: string
  userId: string
  role: TenantRole
  addedAt: Date
}

export interface WorkspaceDocument {
  _id: string
  tenantId: string
  name: string
  policy: WorkspacePolicy
  policyVersion: number
  /** Kept equal to the number of `owner` members, so the last one can be refused atomically. */
  ownerCount: number
  createdBy: string
  createdAt: Date
  updatedAt: Date
  /** Set by a soft delete; the workspace is gone for everyone but a restoring owner. */
  deletedAt: Date | null
  deletedBy: string | null
  /** When a deleted workspace and everything in it is purged. */
  purgeAt: Date | null
}

export interface MemberDocument {
  workspaceId: string
  tenantId: string
  userId: string
  /** As the auth-service knew them when they joined; shown in member lists. */
  email: string
  name: string
  role: WorkspaceRole
  addedAt: Date
  addedBy: string
  lastUsedAt: Date | null
}

export type InvitationStatus = 'pending' | 'accepted' | 'revoked'

export interface InvitationDocument {
  _id: string
  /** SHA-256 of the token the invitee presents; the token itself is never stored. */
  tokenHash: string
  workspaceId: string
  tenantId: string
  email: string
  role: WorkspaceRole
  status: InvitationStatus
  invitedBy: string
  createdAt: Date
  expiresAt: Date
  acceptedBy: string | null
  acceptedAt: Date | null
}

export interface PolicyChange {
  path: string
  before: unknown
  after: unknown
}

export interface PolicyVersionDocument {
  workspaceId: string
  version: number
  policy: WorkspacePolicy
  changedBy: string
  changedAt: Date
  diff: PolicyChange[]
}

/** A settled call as the ledger keeps it: the record with real dates, keyed by its call id. */
export type LedgerDocument = Omit<UsageRecord, 'callId' | 'startedAt' | 'endedAt'> & {
  _id: string
  startedAt: Date
  endedAt: Date
  recordedAt: Date
}

/** What a rollup row adds up; the grouping it belongs to is in `dimension` and `key`. */
export type RollupDimension = 'total' | 'model' | 'tool' | 'member' | 'member-model' | 'member-tool'

export interface RollupDocument {
  workspaceId: string
  dimension: RollupDimension
  /** '' for totals, `provider:model`, `server/tool`, the user id, or user id + NUL + either. */
  key: string
  /** Start of the 15-minute bucket (UTC); every zone's offset is a multiple of 15 minutes. */
  bucket: Date
  inputTokens: number
  outputTokens: number
  costUsd: number
  calls: number
}

export interface AuditDocument {
  _id: string
  at: Date
  action: string
  actor: AuditActor
  target: AuditTarget
  tenantId: string | null
  workspaceId: string | null
  ip: string | null
  userAgent: string | null
  before: Record<string, unknown> | null
  after: Record<string, unknown> | null
  receivedAt: Date
  /** When retention removes the event (a TTL index). */
  expiresAt: Date
}

const tenantSchema = new Schema<TenantDocument>(
  {
    _id: { type: String },
    name: { type: String, required: true },
    timeZone: { type: String, required: true },
    branding: {
      displayName: { type: String, default: null },
      logoUrl: { type: String, default: null },
      accentColor: { type: String, default: null },
    },
    allowedEmailDomains: { type: [String], default: [] },
    limits: { monthlyTokens: { type: Number, default: null } },
    auditRetentionDays: { type: Number, default: null },
    ownerCount: { type: Number, required: true },
    createdBy: { type: String, required: true },
  },
  { collection: 'tenants', versionKey: false, timestamps: true },
)

const tenantMemberSchema = new Schema<TenantMemberDocument>(
  {
    tenantId: { type: String, required: true },
    userId: { type: String, required: true },
    role: { type: String, required: true },
    addedAt: { type: Date, required: true },
  },
  { collection: 'tenant_members', versionKey: false },
)
tenantMemberSchema.index({ tenantId: 1, userId: 1 }, { unique: true })
tenantMemberSchema.index({ userId: 1 })

const workspaceSchema = new Schema<WorkspaceDocument>(
  {
    _id: { type: String },
    tenantId: { type: String, required: true },
    name: { type: String, required: true },
    policy: { type: Schema.Types.Mixed, required: true },
    policyVersion: { type: Number, required: true },
    ownerCount: { type: Number, required: true },
    createdBy: { type: String, required: true },
    deletedAt: { type: Date, default: null },
    deletedBy: { type: String, default: null },
    purgeAt: { type: Date, default: null },
  },
  { collection: 'workspaces', versionKey: false, timestamps: true, minimize: false },
)
workspaceSchema.index({ tenantId: 1, _id: 1 })
workspaceSchema.index({ purgeAt: 1 }, { partialFilterExpression: { purgeAt: { $type: 'date' } } })

const memberSchema = new Schema<MemberDocument>(
  {
    workspaceId: { type: String, required: true },
    tenantId: { type: String, required: true },
    userId: { type: String, required: true },
    email: { type: String, required: true },
    name: { type: String, required: true },
    role: { type: String, required: true },
    addedAt: { type: Date, required: true },
    addedBy: { type: String, required: true },
    lastUsedAt: { type: Date, default: null },
  },
  { collection: 'members', versionKey: false },
)
memberSchema.index({ workspaceId: 1, userId: 1 }, { unique: true })
memberSchema.index({ userId: 1, workspaceId: 1 })

const invitationSchema = new Schema<InvitationDocument>(
  {
    _id: { type: String },
    tokenHash: { type: String, required: true, unique: true },
    workspaceId: { type: String, required: true },
    tenantId: { type: String, required: true },
    email: { type: String, required: true },
    role: { type: String, required: true },
    status: { type: String, required: true },
    invitedBy: { type: String, required: true },
    createdAt: { type: Date, required: true },
    expiresAt: { type: Date, required: true },
    acceptedBy: { type: String, default: null },
    acceptedAt: { type: Date, default: null },
  },
  { collection: 'invitations', versionKey: false },
)
// One open invitation per address and workspace; expired ones are closed before a new one.
invitationSchema.index(
  { workspaceId: 1, email: 1 },
  { unique: true, partialFilterExpression: { status: 'pending' } },
)
invitationSchema.index({ workspaceId: 1, createdAt: -1, _id: -1 })
invitationSchema.index({ email: 1, status: 1 })
// Gone 30 days after they stop being acceptable.
invitationSchema.index({ expiresAt: 1 }, { expireAfterSeconds: 30 * 24 * 3600 })

const policyVersionSchema = new Schema<PolicyVersionDocument>(
  {
    workspaceId: { type: String, required: true },
    version: { type: Number, required: true },
    policy: { type: Schema.Types.Mixed, required: true },
    changedBy: { type: String, required: true },
    changedAt: { type: Date, required: true },
    diff: { type: Schema.Types.Mixed, required: true },
  },
  { collection: 'policy_versions', versionKey: false, minimize: false },
)
policyVersionSchema.index({ workspaceId: 1, version: -1 }, { unique: true })

const ledgerSchema = new Schema<LedgerDocument>(
  {
    _id: { type: String },
    kind: { type: String, required: true },
    tenantId: { type: String, required: true },
    workspaceId: { type: String, required: true },
    userId: { type: String, required: true },
    provider: { type: String },
    model: { type: String },
    server: { type: String },
    tool: { type: String },
    inputTokens: { type: Number, required: true },
    outputTokens: { type: Number, required: true },
    costUsd: { type: Number, required: true },
    durationMs: { type: Number, required: true },
    startedAt: { type: Date, required: true },
    endedAt: { type: Date, required: true },
    status: { type: String, required: true },
    recordedAt: { type: Date, required: true },
  },
  { collection: 'usage_ledger', versionKey: false },
)
ledgerSchema.index({ workspaceId: 1, startedAt: 1, _id: 1 })
ledgerSchema.index({ workspaceId: 1, userId: 1, startedAt: 1 })

const rollupSchema = new Schema<RollupDocument>(
  {
    workspaceId: { type: String, required: true },
    dimension: { type: String, required: true },
    key: { type: String, default: '' },
    bucket: { type: Date, required: true },
    inputTokens: { type: Number, required: true },
    outputTokens: { type: Number, required: true },
    costUsd: { type: Number, required: true },
    calls: { type: Number, required: true },
  },
  { collection: 'usage_rollups', versionKey: false },
)
rollupSchema.index({ workspaceId: 1, dimension: 1, key: 1, bucket: 1 }, { unique: true })
rollupSchema.index({ workspaceId: 1, dimension: 1, bucket: 1 })

const auditSchema = new Schema<AuditDocument>(
  {
    _id: { type: String },
    at: { type: Date, required: true },
    action: { type: String, required: true },
    actor: { type: Schema.Types.Mixed, required: true },
    target: { type: Schema.Types.Mixed, required: true },
    tenantId: { type: String, default: null },
    workspaceId: { type: String, default: null },
    ip: { type: String, default: null },
    userAgent: { type: String, default: null },
    before: { type: Schema.Types.Mixed, default: null },
    after: { type: Schema.Types.Mixed, default: null },
    receivedAt: { type: Date, required: true },
    expiresAt: { type: Date, required: true },
  },
  { collection: 'audit_events', versionKey: false, minimize: false },
)
auditSchema.index({ workspaceId: 1, at: -1, _id: -1 })
auditSchema.index({ tenantId: 1, workspaceId: 1, at: -1, _id: -1 })
auditSchema.index({ expiresAt: 1 }, { expireAfterSeconds: 0 })

export interface WorkspaceModels {
  Tenant: Model<TenantDocument>
  TenantMember: Model<TenantMemberDocument>
  Workspace: Model<WorkspaceDocument>
  Member: Model<MemberDocument>
  Invitation: Model<InvitationDocument>
  PolicyVersion: Model<PolicyVersionDocument>
  Ledger: Model<LedgerDocument>
  Rollup: Model<RollupDocument>
  Audit: Model<AuditDocument>
}

/** Every collection of the `workspace` database, with the indexes its queries rely on. */
export function createWorkspaceModels(connection: Connection): WorkspaceModels {
  return {
    Tenant: connection.model<TenantDocument>('Tenant', tenantSchema),
    TenantMember: connection.model<TenantMemberDocument>('TenantMember', tenantMemberSchema),
    Workspace: connection.model<WorkspaceDocument>('Workspace', workspaceSchema),
    Member: connection.model<MemberDocument>('Member', memberSchema),
    Invitation: connection.model<InvitationDocument>('Invitation', invitationSchema),
    PolicyVersion: connection.model<PolicyVersionDocument>('PolicyVersion', policyVersionSchema),
    Ledger: connection.model<LedgerDocument>('Ledger', ledgerSchema),
    Rollup: connection.model<RollupDocument>('Rollup', rollupSchema),
    Audit: connection.model<AuditDocument>('Audit', auditSchema),
  }
}
