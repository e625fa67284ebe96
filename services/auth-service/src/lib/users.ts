import type { InternalUser, User } from '@platform/shared-types'
import { type Connection, type Model, Schema, Types } from 'mongoose'

interface MfaState {
  enabled: boolean
  /** The TOTP secret, sealed with the `totp-secret` box. */
  sealedSecret: string | null
  /** A secret from `setup` waiting for its first valid code. */
  pendingSealedSecret: string | null
  pendingCreatedAt: Date | null
  /** The last TOTP time step accepted, so a code cannot be replayed within its window. */
  lastUsedStep: number | null
  /** Keyed hashes of the unused backup codes. */
  backupCodeHashes: string[]
}

/** MFA off, with nothing pending and nothing left of an earlier secret. */
export const NO_MFA: MfaState = {
  enabled: false,
  sealedSecret: null,
  pendingSealedSecret: null,
  pendingCreatedAt: null,
  lastUsedStep: null,
  backupCodeHashes: [],
}

export interface UserDocument {
  _id: string
  email: string
  name: string
  /** Null for accounts that only sign in through a provider. */
  passwordHash: string | null
  /** Whether someone proved they own `email` (a provider that verified it). */
  emailVerified: boolean
  mfa: MfaState
  lastWorkspaceId: string | null
  createdAt: Date
  updatedAt: Date
}

export interface IdentityDocument {
  _id: Types.ObjectId
  /** `google`, `github` or an OIDC provider's configured name. */
  provider: string
  /** The provider's stable id for the person (`sub`, or GitHub's numeric id). */
  subject: string
  userId: string
  email: string
  linkedAt: Date
}

const userSchema = new Schema<UserDocument>(
  {
    _id: { type: String, default: () => new Types.ObjectId().toHexString() },
    email: { type: String, required: true, unique: true },
    name: { type: String, required: true },
    passwordHash: { type: String, default: null },
    emailVerified: { type: Boolean, default: false },
    mfa: {
      enabled: { type: Boolean, default: false },
      sealedSecret: { type: String, default: null },
      pendingSealedSecret: { type: String, default: null },
      pendingCreatedAt: { type: Date, default: null },
      lastUsedStep: { type: Number, default: null },
      backupCodeHashes: { type: [String], default: [] },
    },
    lastWorkspaceId: { type: String, default: null },
  },
  { collection: 'users', versionKey: false, timestamps: true },
)

const identitySchema = new Schema<IdentityDocument>(
  {
    provider: { type: String, required: true },
    subject: { type: String, required: true },
    userId: { type: String, required: true, index: true },
    email: { type: String, required: true },
    linkedAt: { type: Date, required: true },
  },
  { collection: 'identities', versionKey: false },
)
identitySchema.index({ provider: 1, subject: 1 }, { unique: true })

export interface UserModels {
  users: Model<UserDocument>
  identities: Model<IdentityDocument>
}

export function createUserModels(connection: Connection): UserModels {
  return {
    users: connection.model<UserDocument>('User', userSchema),
    identities: connection.model<IdentityDocument>('Identity', identitySchema),
  }
}

/** The user as API.md §3 shows it to the user itself. */
export const publicUser = (user: UserDocument): User => ({
  id: user._id,
  email: user.email,
  name: user.name,
  mfaEnabled: user.mfa.enabled,
  createdAt: user.createdAt.toISOString(),
})

/** The user as other services may see it (API.md §7). */
export const internalUser = (user: UserDocument): InternalUser => ({
  id: user._id,
  email: user.email,
  name: user.name,
})
