import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto'

/** What a secret box protects; each purpose gets its own key derived from the master secret. */
export type SecretPurpose = 'signing-key' | 'totp-secret' | 'refresh-grace' | 'backup-code'

/** Encrypts small secrets at rest with AES-256-GCM under a key only this purpose uses. */
export interface SecretBox {
  seal(plaintext: string): string
  open(sealed: string): string
}

const VERSION = 'v1'

/**
 * A key derived with HKDF-SHA256 from `AUTH_KEY_ENCRYPTION_KEY`, so a leak of one purpose's
 * ciphertexts and keys says nothing about another's.
 */
export function deriveKey(masterSecret: string, purpose: SecretPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', masterSecret, 'ai-platform/auth-service', purpose, 32))
}

export function createSecretBox(masterSecret: string, purpose: SecretPurpose): SecretBox {
  const key = deriveKey(masterSecret, purpose)
  // The purpose is authenticated data, so a ciphertext moved to another field does not open.
  const aad = Buffer.from(purpose)
  return {
    seal(plaintext) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(aad)
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
      const tag = cipher.getAuthTag()
      return [
        VERSION,
        iv.toString('base64url'),
        body.toString('base64url'),
        tag.toString('base64url'),
      ].join('.')
    },
    open(sealed) {
      const [version, iv, body, tag] = sealed.split('.')
      if (version !== VERSION || iv === undefined || body === undefined || tag === undefined)
        throw new Error('not a sealed secret of this version')
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
        .setAAD(aad)
        .setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([
        decipher.update(Buffer.from(body, 'base64url')),
        decipher.final(),
      ]).toString('utf8')
    },
  }
}

/** An unguessable opaque token (256 bits). */
export const randomToken = () => randomBytes(32).toString('base64url')

/** How opaque tokens are stored: never the token, only its SHA-256. */
export const hashToken = (token: string) => createHash('sha256').update(token).digest('base64url')

/** A keyed hash for low-entropy secrets (backup codes) so a database dump cannot brute-force them offline. */
export const keyedHash = (key: Buffer, value: string) =>
  createHmac('sha256', key).update(value).digest('base64url')

/** Compares secrets without leaking where they differ (or their length) through timing. */
export function constantTimeEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
