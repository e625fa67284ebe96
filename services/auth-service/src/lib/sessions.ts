import { randomUUID } from 'node:crypto'
import {
  revokedSessionKey,
  type TokenPairResponse,
  TokenPairResponseSchema,
} from '@platform/shared-types'
import type { Redis } from 'ioredis'
import { type Connection, type Model, Schema } from 'mongoose'
import { hashToken, randomToken, type SecretBox } from './crypto.js'
import type { TokenScope } from './token-issuer.js'

/** The workspace a session is scoped to, with the name shown in token answers. */
export interface SessionScope extends TokenScope {
  workspaceName: string
}

export interface SessionDocument {
  _id: string
  userId: string
  scope: SessionScope | null
  /** How the session began: `password` or `oauth:<provider>`. */
  method: string
  ip: string | null
  userAgent: string | null
  createdAt: Date
  lastUsedAt: Date
  /** Idle expiry, never past `absoluteExpiresAt`; MongoDB removes the session then. */
  expiresAt: Date
  absoluteExpiresAt: Date
  revokedAt: Date | null
}

interface RefreshTokenDocument {
  /** SHA-256 of the token; the token itself is never stored. */
  _id: string
  sessionId: string
  status: 'current' | 'rotated'
  issuedAt: Date
  rotatedAt: Date | null
  expiresAt: Date
}

const scopeSchema = new Schema<SessionScope>(
  {
    tenantId: { type: String, required: true },
    workspaceId: { type: String, required: true },
    role: { type: String, required: true },
    workspaceName: { type: String, required: true },
  },
  { _id: false },
)

const sessionSchema = new Schema<SessionDocument>(
  {
    _id: { type: String },
    userId: { type: String, required: true, index: true },
    scope: { type: scopeSchema, default: null },
    method: { type: String, required: true },
    ip: { type: String, default: null },
    userAgent: { type: String, default: null },
    createdAt: { type: Date, required: true },
    lastUsedAt: { type: Date, required: true },
    expiresAt: { type: Date, required: true },
    absoluteExpiresAt: { type: Date, required: true },
    revokedAt: { type: Date, default: null },
  },
  { collection: 'sessions', versionKey: false },
)
sessionSchema.index({ expiresAt: 1 }, { expireAfterSeconds: 0 })

const refreshTokenSchema = new Schema<RefreshTokenDocument>(
  {
    _id: { type: String },
    sessionId: { type: String, required: true, index: true },
    status: { type: String, required: true, enum: ['current', 'rotated'] },
    issuedAt: { type: Date, required: true },
    rotatedAt: { type: Date, default: null },
    expiresAt: { type: Date, required: true },
  },
  { collection: 'refresh_tokens', versionKey: false },
)
refreshTokenSchema.index({ expiresAt: 1 }, { expireAfterSeconds: 0 })

/** What a refresh attempt found wrong; the routes turn these into coded errors. */
export class RefreshRejected extends Error {
  constructor(readonly reason: 'unknown' | 'revoked' | 'reused') {
    super(`refresh token ${reason}`)
    this.name = 'RefreshRejected'
  }
}

export interface SessionStoreOptions {
  connection: Connection
  redis: Redis
  /** Seals the answer a rotated token is replayed with during its grace period. */
  box: SecretBox
  idleSeconds: number
  maxSeconds: number
  /** Revocation marks outlive the longest access token of the session. */
  accessTokenSeconds: number
  /** How long a rotated refresh token still answers with the pair it was rotated into. */
  graceSeconds?: number
  now?: () => Date
}

export interface NewSession {
  userId: string
  scope: SessionScope | null
  method: string
  ip: string | null
  userAgent: string | null
}

/** Builds the answer for a session and its newly issued refresh token. */
export type PairBuilder = (
  session: SessionDocument,
  refreshToken: string,
) => Promise<TokenPairResponse>

export interface SessionStore {
  readonly sessions: Model<SessionDocument>
  create(session: NewSession): Promise<{ session: SessionDocument; refreshToken: string }>
  /** A live (not revoked, not expired) session, or null. */
  find(sessionId: string): Promise<SessionDocument | null>
  /**
   * Trades a refresh token for a new pair. A token rotated less than `graceSeconds` ago answers
   * with the pair it was rotated into (tabs refreshing at once); one rotated earlier ends the
   * whole session, because someone is replaying a stolen token.
   */
  refresh(
    refreshToken: string,
    build: PairBuilder,
    changes?: (session: SessionDocument) => Promise<Partial<Pick<SessionDocument, 'scope'>>>,
  ): Promise<TokenPairResponse>
  /** Rescopes the session and rotates its current refresh token (workspace switch). */
  reissue(
    sessionId: string,
    scope: SessionScope | null,
    build: PairBuilder,
  ): Promise<TokenPairResponse>
  /** The session a refresh token belongs to, whatever its state, or null. */
  sessionOfRefreshToken(refreshToken: string): Promise<SessionDocument | null>
  /** Ends a session: its access tokens fail at every verifier at once. True if it was live. */
  revoke(sessionId: string): Promise<boolean>
  revokeAllOfUser(userId: string, exceptSessionId?: string): Promise<string[]>
  listLive(userId: string): Promise<SessionDocument[]>
}

const REVOCATION_SKEW_SECONDS = 60
const graceKey = (tokenHash: string) => `auth:refresh-grace:${tokenHash}`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function createSessionStore(options: SessionStoreOptions): SessionStore {
  const sessions = options.connection.model<SessionDocument>('Session', sessionSchema)
  const refreshTokens = options.connection.model<RefreshTokenDocument>(
    'RefreshToken',
    refreshTokenSchema,
  )
  const now = options.now ?? (() => new Date())
  const graceMs = (options.graceSeconds ?? 30) * 1000

  const idleExpiry = (at: Date, absolute: Date) =>
    new Date(Math.min(at.getTime() + options.idleSeconds * 1000, absolute.getTime()))

  async function issueRefreshToken(session: SessionDocument, at: Date) {
    const token = randomToken()
    await refreshTokens.create({
      _id: hashToken(token),
      sessionId: session._id,
      status: 'current',
      issuedAt: at,
      rotatedAt: null,
      expiresAt: session.expiresAt,
    })
    return token
  }

  const isLive = (session: SessionDocument | null, at: Date): session is SessionDocument =>
    session !== null && session.revokedAt === null && session.expiresAt > at

  async function rememberAnswer(tokenHash: string, answer: TokenPairResponse) {
    await options.redis.set(
      graceKey(tokenHash),
      options.box.seal(JSON.stringify(answer)),
      'PX',
      graceMs,
    )
  }

  /** The answer a concurrent rotation of the same token produced; it may land a moment later. */
  async function answerOfRotation(tokenHash: string): Promise<TokenPairResponse | null> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const sealed = await options.redis.get(graceKey(tokenHash))
      if (sealed !== null)
        return TokenPairResponseSchema.parse(JSON.parse(options.box.open(sealed)))
      await sleep(100)
    }
    return null
  }

  async function revoke(sessionId: string) {
    // The mark goes first: once the caller is told "revoked", no verifier may accept the session.
    await options.redis.set(
      revokedSessionKey(sessionId),
      '1',
      'EX',
      options.accessTokenSeconds + REVOCATION_SKEW_SECONDS,
    )
    const at = now()
    const result = await sessions.updateOne(
      { _id: sessionId, revokedAt: null },
      // Kept a little while so a replayed refresh token still reads as "revoked", not "unknown".
      { revokedAt: at, expiresAt: new Date(at.getTime() + options.idleSeconds * 1000) },
    )
    return result.modifiedCount > 0
  }

  async function rotate(
    tokenHash: string,
    session: SessionDocument,
    build: PairBuilder,
    changes: Partial<Pick<SessionDocument, 'scope'>>,
  ) {
    const at = now()
    const updated = await sessions.findOneAndUpdate(
      { _id: session._id, revokedAt: null },
      { ...changes, lastUsedAt: at, expiresAt: idleExpiry(at, session.absoluteExpiresAt) },
      { returnDocument: 'after', lean: true },
    )
    if (updated === null) throw new RefreshRejected('revoked')
    const refreshToken = await issueRefreshToken(updated, at)
    try {
      const answer = await build(updated, refreshToken)
      await rememberAnswer(tokenHash, answer)
      return answer
    } catch (error) {
      // The caller never receives this pair (Redis is away, say), so the presented token is given
      // back: otherwise its retry would read as reuse and end the session.
      await refreshTokens.deleteOne({ _id: hashToken(refreshToken) })
      await refreshTokens.updateOne(
        { _id: tokenHash, status: 'rotated' },
        { status: 'current', rotatedAt: null },
      )
      throw error
    }
  }

  return {
    sessions,
    async create(input) {
      const at = now()
      const absoluteExpiresAt = new Date(at.getTime() + options.maxSeconds * 1000)
      const session: SessionDocument = {
        _id: randomUUID(),
        ...input,
        createdAt: at,
        lastUsedAt: at,
        expiresAt: idleExpiry(at, absoluteExpiresAt),
        absoluteExpiresAt,
        revokedAt: null,
      }
      await sessions.create(session)
      return { session, refreshToken: await issueRefreshToken(session, at) }
    },

    async find(sessionId) {
      const session = await sessions.findById(sessionId).lean()
      return isLive(session, now()) ? session : null
    },

    async refresh(refreshToken, build, changes) {
      const tokenHash = hashToken(refreshToken)
      const record = await refreshTokens.findById(tokenHash).lean()
      if (record === null) throw new RefreshRejected('unknown')
      const session = await sessions.findById(record.sessionId).lean()
      const at = now()
      if (!isLive(session, at)) throw new RefreshRejected('revoked')

      if (record.status === 'current') {
        // Slow work (asking the workspace-service) happens before the claim, so a tab racing
        // this one never waits on it for the pair it is owed.
        const sessionChanges = changes === undefined ? {} : await changes(session)
        const claimed = await refreshTokens.updateOne(
          { _id: tokenHash, status: 'current' },
          { status: 'rotated', rotatedAt: now() },
        )
        if (claimed.modifiedCount === 1) return rotate(tokenHash, session, build, sessionChanges)
      }
      // Rotated already, by an earlier call or by one racing this one.
      const rotatedAt = record.rotatedAt ?? at
      if (at.getTime() - rotatedAt.getTime() <= graceMs) {
        const answer = await answerOfRotation(tokenHash)
        if (answer !== null) return answer
        throw new RefreshRejected('unknown')
      }
      await revoke(session._id)
      throw new RefreshRejected('reused')
    },

    async reissue(sessionId, scope, build) {
      const session = await sessions.findById(sessionId).lean()
      const at = now()
      if (!isLive(session, at)) throw new RefreshRejected('revoked')
      const current = await refreshTokens.findOneAndUpdate(
        { sessionId, status: 'current' },
        { status: 'rotated', rotatedAt: at },
        { lean: true },
      )
      return rotate(current?._id ?? `reissue:${randomUUID()}`, session, build, { scope })
    },

    async sessionOfRefreshToken(refreshToken) {
      const record = await refreshTokens.findById(hashToken(refreshToken)).lean()
      if (record === null) return null
      return sessions.findById(record.sessionId).lean()
    },

    revoke,

    async revokeAllOfUser(userId, exceptSessionId) {
      const live = await sessions
        .find({ userId, revokedAt: null, expiresAt: { $gt: now() } }, { _id: 1 })
        .lean()
      const revoked: string[] = []
      for (const { _id } of live) {
        if (_id === exceptSessionId) continue
        if (await revoke(_id)) revoked.push(_id)
      }
      return revoked
    },

    listLive: (userId) =>
      sessions
        .find({ userId, revokedAt: null, expiresAt: { $gt: now() } })
        .sort({ lastUsedAt: -1 })
        .limit(100)
        .lean(),
  }
}
