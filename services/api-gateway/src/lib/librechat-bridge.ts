import { isDuplicateKeyError } from '@platform/service-kit'
import { SignJWT } from 'jose'
import { type Connection, Types } from 'mongoose'
import { createLoadingCache } from './loading-cache.js'

/** Who a LibreChat user is on the platform: one per (workspace, user) membership. */
export interface BridgedMember {
  tenantId: string
  workspaceId: string
  userId: string
}

export interface LibreChatIdentity extends BridgedMember {
  /** The LibreChat user's `_id` as a hex string: the `id` of the tokens minted for it. */
  libreChatUserId: string
  email: string
}

interface IdentityDocument {
  /** `<workspaceId>:<userId>`: the forward direction's unique key. */
  _id: string
  libreChatUserId: string
  tenantId: string
  workspaceId: string
  userId: string
  email: string
  createdAt: Date
}

export interface LibreChatBridgeOptions {
  /** The gateway's own database, which keeps the mapping. */
  gateway: Connection
  /** LibreChat's database, where the mapped users live (librechat-api.md §1.4). */
  libreChat: Connection
  jwtSecret: string
  tokenTtlSeconds: number
  now?: () => number
}

/**
 * A deterministic, undeliverable address (RFC 2606 `.invalid`) per membership: LibreChat requires
 * an email and keeps it unique, and the same membership always names the same user.
 */
export const bridgedEmail = (member: Pick<BridgedMember, 'workspaceId' | 'userId'>) =>
  `w${member.workspaceId}.u${member.userId}@members.invalid`.toLowerCase()

const MAX_CACHED = 50_000
/** Mappings never change once written; the bound on their cache is its size, not time. */
const MAPPING_TTL_MS = 24 * 3600_000

const IDENTITIES = 'librechat_identities'

const identityOf = (document: IdentityDocument): LibreChatIdentity => ({
  libreChatUserId: document.libreChatUserId,
  tenantId: document.tenantId,
  workspaceId: document.workspaceId,
  userId: document.userId,
  email: document.email,
})

/**
 * The bridge read backwards: the platform member behind a LibreChat user id, `null` for users
 * the bridge never made. Needs only the gateway's database, so the egress, which sees LibreChat
 * users and never provisions them, uses it alone.
 */
export function createMemberLookup(gateway: Connection, now: () => number = Date.now) {
  const identities = gateway.collection<IdentityDocument>(IDENTITIES)
  const reverse = createLoadingCache<LibreChatIdentity | null>({
    load: async (libreChatUserId) => {
      const document = await identities.findOne({ libreChatUserId })
      return document === null ? null : identityOf(document)
    },
    ttlMs: MAPPING_TTL_MS,
    maxEntries: MAX_CACHED,
    now,
  })
  return { memberOf: (libreChatUserId: string) => reverse.get(libreChatUserId) }
}
export type MemberLookup = ReturnType<typeof createMemberLookup>

/**
 * The LibreChat identity bridge (ARCHITECTURE §3). Each membership gets its own LibreChat user,
 * so LibreChat's per-user ownership isolates conversations, agents and files per workspace.
 * The mapping is written first, with the LibreChat id chosen up front, so concurrent first
 * requests converge on one mapping; the LibreChat user is then upserted by that `_id`, which its
 * unique index makes race-free too. Mappings never change once written, so they are cached.
 */
export function createLibreChatBridge(options: LibreChatBridgeOptions) {
  const now = options.now ?? Date.now
  const identities = options.gateway.collection<IdentityDocument>(IDENTITIES)
  const users = options.libreChat.collection('users')
  const secret = new TextEncoder().encode(options.jwtSecret)

  async function ensureIndexes() {
    await identities.createIndex({ libreChatUserId: 1 }, { unique: true })
  }

  /** Claims a mapping for the membership, or reads the one a concurrent request claimed. */
  async function mappingFor(member: BridgedMember): Promise<IdentityDocument> {
    const key = `${member.workspaceId}:${member.userId}`
    const existing = await identities.findOne({ _id: key })
    if (existing !== null) return existing
    const document: IdentityDocument = {
      _id: key,
      libreChatUserId: new Types.ObjectId().toHexString(),
      tenantId: member.tenantId,
      workspaceId: member.workspaceId,
      userId: member.userId,
      email: bridgedEmail(member),
      createdAt: new Date(now()),
    }
    try {
      await identities.insertOne(document)
      return document
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error
      const winner = await identities.findOne({ _id: key })
      if (winner === null) throw error
      return winner
    }
  }

  /** Makes sure LibreChat has the mapped user (fields as librechat-api.md §1.4 lists them). */
  async function provision(document: IdentityDocument): Promise<IdentityDocument> {
    const at = new Date(now())
    try {
      await users.updateOne(
        { _id: new Types.ObjectId(document.libreChatUserId) },
        {
          $setOnInsert: {
            email: document.email,
            emailVerified: true,
            provider: 'local',
            role: 'USER',
            username: `w${document.workspaceId}-u${document.userId}`.toLowerCase().slice(0, 80),
            name: 'Workspace member',
            createdAt: at,
            updatedAt: at,
          },
        },
        { upsert: true },
      )
      return document
    } catch (error) {
      // The email is taken: a user provisioned for this membership before the mapping was lost.
      // Adopt it rather than leave the member locked out of their conversations.
      if (!isDuplicateKeyError(error)) throw error
      const holder = await users.findOne({ email: document.email }, { projection: { _id: 1 } })
      if (holder === null) throw error
      const adopted = { ...document, libreChatUserId: String(holder._id) }
      await identities.updateOne(
        { _id: document._id },
        { $set: { libreChatUserId: adopted.libreChatUserId } },
      )
      return adopted
    }
  }

  /** Forward: concurrent first requests of one member share one claim and one upsert. */
  const forward = createLoadingCache<LibreChatIdentity>({
    load: async (key) => {
      const [tenantId = '', workspaceId = '', userId = ''] = key.split('\n')
      const mapping = await provision(await mappingFor({ tenantId, workspaceId, userId }))
      return identityOf(mapping)
    },
    ttlMs: MAPPING_TTL_MS,
    maxEntries: MAX_CACHED,
    now,
  })
  const reverse = createMemberLookup(options.gateway, now)
  /**
   * A LibreChat access token for the user (HS256 `{id}`, librechat-api.md §1.1), reused for half
   * its life so a busy member does not cost a signature per request.
   */
  const tokens = createLoadingCache<string>({
    load: async (libreChatUserId) => {
      const issuedAt = Math.floor(now() / 1000)
      return new SignJWT({ id: libreChatUserId })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + options.tokenTtlSeconds)
        .sign(secret)
    },
    ttlMs: (options.tokenTtlSeconds * 1000) / 2,
    maxEntries: MAX_CACHED,
    now,
  })

  const identityFor = (member: BridgedMember) =>
    forward.get(`${member.tenantId}\n${member.workspaceId}\n${member.userId}`)
  const memberOf = reverse.memberOf
  const tokenFor = (libreChatUserId: string) => tokens.get(libreChatUserId)

  return { ensureIndexes, identityFor, memberOf, tokenFor }
}

export type LibreChatBridge = ReturnType<typeof createLibreChatBridge>
