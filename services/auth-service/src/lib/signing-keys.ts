import { randomUUID } from 'node:crypto'
import { isDuplicateKeyError } from '@platform/service-kit'
import { TOKEN_SIGNING_ALGORITHM } from '@platform/shared-types'
import type { Redis } from 'ioredis'
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTVerifyGetKey,
  errors as joseErrors,
} from 'jose'
import { type Connection, Schema } from 'mongoose'
import type { SecretBox } from './crypto.js'

type KeyStatus = 'next' | 'active' | 'retired'

interface SigningKeyDocument {
  _id: string
  status: KeyStatus
  publicJwk: JWK
  sealedPrivateJwk: string
  createdAt: Date
  activatedAt: Date | null
  retiredAt: Date | null
  /** When a retired key leaves the JWKS: after the last token it signed has expired. */
  unpublishAt: Date | null
}

const signingKeySchema = new Schema<SigningKeyDocument>(
  {
    _id: { type: String },
    status: { type: String, required: true, enum: ['next', 'active', 'retired'] },
    publicJwk: { type: Schema.Types.Mixed, required: true },
    sealedPrivateJwk: { type: String, required: true },
    createdAt: { type: Date, required: true },
    activatedAt: { type: Date, default: null },
    retiredAt: { type: Date, default: null },
    unpublishAt: { type: Date, default: null },
  },
  { collection: 'signing_keys', versionKey: false },
)
// One active key and at most one waiting key, however many replicas rotate at once.
signingKeySchema.index(
  { status: 1 },
  { unique: true, partialFilterExpression: { status: { $in: ['active', 'next'] } } },
)
// A retired key's document goes a day after it leaves the JWKS; nothing can verify with it then.
signingKeySchema.index({ unpublishAt: 1 }, { expireAfterSeconds: 24 * 3600 })

export interface SigningKey {
  kid: string
  privateKey: CryptoKey
}

export interface SigningKeyStoreOptions {
  connection: Connection
  redis: Redis
  box: SecretBox
  /** A key signs for this long before it is replaced. */
  rotationSeconds: number
  /** How long tokens live: a retired key stays published this long (plus skew). */
  longestTokenSeconds: number
  /** How early the next key is published, so verifiers have it before it signs anything. */
  prePublishSeconds?: number
  /** How stale this replica's view of the keys may be. */
  refreshSeconds?: number
  now?: () => Date
}

export interface SigningKeyStore {
  /** The key tokens are signed with now. */
  current(): Promise<SigningKey>
  /** The public keys verifiers should know: waiting, active and recently retired. */
  publishedKeys(): Promise<JWK[]>
  /** Verifies this service's own tokens without a round trip through its JWKS endpoint. */
  verificationKey: JWTVerifyGetKey
  /** Replaces the active key now (on demand); the old one stays published until its tokens expire. */
  rotate(): Promise<{ kid: string; retiredKid: string | null }>
  /** Publishes the next key ahead of time and rotates when the active one is due. */
  rotateIfDue(): Promise<{ kid: string; retiredKid: string | null } | null>
}

const CLOCK_SKEW_SECONDS = 60

/** Another replica (or request) rotated first; this rotation's transaction was rolled back. */
class RotationRaced extends Error {
  constructor() {
    super('the active key changed during rotation')
    this.name = 'RotationRaced'
  }
}

// Deletes the lock only if it is still ours: one that outlived its expiry may be another's now.
const RELEASE_LOCK_SCRIPT =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
const DUE_LOCK_KEY = 'auth:signing-keys:rotation-lock'

/**
 * Ed25519 signing keys in MongoDB, private halves sealed with `AUTH_KEY_ENCRYPTION_KEY`. Every
 * replica reads the same keys; rotations are transactions guarded by unique indexes, so two
 * replicas rotating at once still leave exactly one active key.
 */
export function createSigningKeyStore(options: SigningKeyStoreOptions): SigningKeyStore {
  const model = options.connection.model<SigningKeyDocument>('SigningKey', signingKeySchema)
  const now = options.now ?? (() => new Date())
  const prePublishMs = (options.prePublishSeconds ?? 3600) * 1000
  const refreshMs = (options.refreshSeconds ?? 10) * 1000
  const retiredPublishMs = (options.longestTokenSeconds + CLOCK_SKEW_SECONDS) * 1000

  let loadedAt = 0
  let active: (SigningKey & { activatedAt: Date }) | null = null
  let published: JWK[] = []
  const privateKeys = new Map<string, CryptoKey>()
  const publicKeys = new Map<string, CryptoKey>()
  let loading: Promise<void> | null = null

  async function newKeyDocument(status: KeyStatus): Promise<SigningKeyDocument> {
    const { publicKey, privateKey } = await generateKeyPair(TOKEN_SIGNING_ALGORITHM, {
      crv: 'Ed25519',
      extractable: true,
    })
    const kid = randomUUID()
    const publicJwk = {
      ...(await exportJWK(publicKey)),
      kid,
      alg: TOKEN_SIGNING_ALGORITHM,
      use: 'sig',
    }
    const privateJwk = await exportJWK(privateKey)
    const at = now()
    return {
      _id: kid,
      status,
      publicJwk,
      sealedPrivateJwk: options.box.seal(JSON.stringify(privateJwk)),
      createdAt: at,
      activatedAt: status === 'active' ? at : null,
      retiredAt: null,
      unpublishAt: null,
    }
  }

  async function load() {
    // The unique index on status is what keeps replicas from each making a first key; mongoose
    // builds it in the background, so wait for it before anything may insert.
    await model.init()
    const at = now()
    let documents = await model
      .find({ $or: [{ status: { $in: ['active', 'next'] } }, { unpublishAt: { $gt: at } }] })
      .lean()
    if (!documents.some((document) => document.status === 'active')) {
      try {
        await model.create(await newKeyDocument('active'))
      } catch (error) {
        // Another replica made the first key at the same moment; use that one.
        if (!isDuplicateKeyError(error)) throw error
      }
      documents = await model
        .find({ $or: [{ status: { $in: ['active', 'next'] } }, { unpublishAt: { $gt: at } }] })
        .lean()
    }
    const nextPublished: JWK[] = []
    let nextActive: typeof active = null
    for (const document of documents) {
      nextPublished.push(document.publicJwk)
      if (!publicKeys.has(document._id))
        publicKeys.set(
          document._id,
          (await importJWK(document.publicJwk, TOKEN_SIGNING_ALGORITHM)) as CryptoKey,
        )
      if (document.status !== 'active') continue
      let privateKey = privateKeys.get(document._id)
      if (privateKey === undefined) {
        const jwk = JSON.parse(options.box.open(document.sealedPrivateJwk)) as JWK
        privateKey = (await importJWK(jwk, TOKEN_SIGNING_ALGORITHM)) as CryptoKey
        privateKeys.set(document._id, privateKey)
      }
      nextActive = {
        kid: document._id,
        privateKey,
        activatedAt: document.activatedAt ?? document.createdAt,
      }
    }
    if (nextActive === null) throw new Error('no active signing key after loading')
    for (const kid of publicKeys.keys())
      if (!documents.some((document) => document._id === kid)) publicKeys.delete(kid)
    for (const kid of privateKeys.keys()) if (kid !== nextActive.kid) privateKeys.delete(kid)
    active = nextActive
    published = nextPublished
    loadedAt = Date.now()
  }

  async function fresh(force = false) {
    if (!force && active !== null && Date.now() - loadedAt < refreshMs) return
    loading ??= load().finally(() => {
      loading = null
    })
    await loading
  }

  async function activate(promoteNext: boolean) {
    await fresh(true)
    const retiring = active
    const at = now()
    const session = await options.connection.startSession()
    let kid = ''
    try {
      await session.withTransaction(async () => {
        if (retiring !== null) {
          const retired = await model.updateOne(
            { _id: retiring.kid, status: 'active' },
            {
              status: 'retired',
              retiredAt: at,
              unpublishAt: new Date(at.getTime() + retiredPublishMs),
            },
            { session },
          )
          if (retired.modifiedCount === 0) throw new RotationRaced()
        }
        const promoted = promoteNext
          ? await model.findOneAndUpdate(
              { status: 'next' },
              { status: 'active', activatedAt: at },
              { session, returnDocument: 'after' },
            )
          : null
        if (promoted !== null) {
          kid = promoted._id
          return
        }
        const document = await newKeyDocument('active')
        await model.create([document], { session })
        kid = document._id
      })
    } finally {
      await session.endSession()
    }
    await fresh(true)
    return { kid, retiredKid: retiring?.kid ?? null }
  }

  const verificationKey: JWTVerifyGetKey = async (header) => {
    await fresh()
    let key = header.kid === undefined ? undefined : publicKeys.get(header.kid)
    if (key === undefined && header.kid !== undefined && Date.now() - loadedAt > 1000) {
      // A key made by another replica a moment ago; at most one reload a second, so tokens with
      // made-up key ids cannot turn into a query each.
      await fresh(true)
      key = publicKeys.get(header.kid)
    }
    if (key === undefined) throw new joseErrors.JWKSNoMatchingKey()
    return key
  }

  return {
    async current() {
      await fresh()
      if (active === null) throw new Error('no active signing key')
      return { kid: active.kid, privateKey: active.privateKey }
    },
    async publishedKeys() {
      await fresh()
      return published
    },
    verificationKey,
    async rotate() {
      // Two on-demand rotations at once: the loser rotates again from the winner's key, so each
      // caller gets a key made for its request.
      for (let attempt = 1; ; attempt++) {
        try {
          return await activate(false)
        } catch (error) {
          if (!(error instanceof RotationRaced) || attempt === 3) throw error
        }
      }
    },
    async rotateIfDue() {
      await fresh(true)
      if (active === null) return null
      const age = now().getTime() - active.activatedAt.getTime()
      const rotationMs = options.rotationSeconds * 1000
      if (age < rotationMs - prePublishMs) return null
      // One replica does the scheduled work; the others see its result on their next refresh.
      const lockToken = randomUUID()
      const lock = await options.redis.set(DUE_LOCK_KEY, lockToken, 'PX', 30_000, 'NX')
      if (lock === null) return null
      try {
        if ((await model.countDocuments({ status: 'next' })) === 0) {
          try {
            await model.create(await newKeyDocument('next'))
          } catch (error) {
            if (!isDuplicateKeyError(error)) throw error
          }
          await fresh(true)
        }
        if (age < rotationMs) return null
        return await activate(true)
      } catch (error) {
        if (error instanceof RotationRaced) return null
        throw error
      } finally {
        await options.redis.eval(RELEASE_LOCK_SCRIPT, 1, DUE_LOCK_KEY, lockToken)
      }
    },
  }
}
