import { errors, jwtVerify } from 'jose'
import { mongo } from 'mongoose'
import { isObjectIdHex, type Store, type UserDoc } from './store.js'

export interface AuthUser {
  /** The users document's `_id` as a hex string: what LibreChat calls `req.user.id`. */
  id: string
  doc: UserDoc
  role: string
}

export type AuthOutcome = { user: AuthUser } | { failure: string }

/**
 * LibreChat's JWT strategy: the token comes only from `Authorization: Bearer …` (never a cookie or
 * the query string), is verified with JWT_SECRET, and only `payload.id` is read. Failures carry
 * passport-jwt's reason, which v0.8.7 answers as `{"message": reason}`.
 */
export async function authenticate(
  authorization: string | undefined,
  secret: Uint8Array,
  store: Store,
): Promise<AuthOutcome> {
  const match = /^(\S+)\s+(\S+)$/.exec(authorization ?? '')
  const token = match?.[1]?.toLowerCase() === 'bearer' ? match[2] : undefined
  if (!token) return { failure: 'No auth token' }

  let payload: Record<string, unknown>
  try {
    ;({ payload } = await jwtVerify(token, secret, { algorithms: ['HS256', 'HS384', 'HS512'] }))
  } catch (error) {
    return { failure: passportReason(error) }
  }
  if (!isObjectIdHex(payload.id)) return { failure: 'Unauthorized' }
  const doc = await store.users.findOne({ _id: new mongo.ObjectId(payload.id) })
  if (!doc) return { failure: 'Unauthorized' }
  if (!doc.role) {
    // LibreChat writes the default role back when it loads a user without one.
    await store.users.updateOne({ _id: doc._id }, { $set: { role: 'USER' } })
    doc.role = 'USER'
  }
  return { user: { id: doc._id.toHexString(), doc, role: doc.role } }
}

function passportReason(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'jwt expired'
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'invalid signature'
  if (error instanceof errors.JOSEAlgNotAllowed) return 'invalid algorithm'
  if (error instanceof errors.JWTClaimValidationFailed && error.claim === 'nbf') {
    return 'jwt not active'
  }
  return 'jwt malformed'
}

/** `GET /api/user`: the users document without secrets, plus `id`. */
export function userView(doc: UserDoc): Record<string, unknown> {
  const { password: _password, totpSecret: _totp, backupCodes: _codes, ...rest } = doc
  return { ...rest, _id: doc._id.toHexString(), id: doc._id.toHexString() }
}
