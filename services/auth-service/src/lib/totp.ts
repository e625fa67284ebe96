import { randomInt } from 'node:crypto'
import { Secret, TOTP } from 'otpauth'
import { keyedHash, type SecretBox } from './crypto.js'

const PERIOD_SECONDS = 30
const DIGITS = 6
const BACKUP_CODE_COUNT = 10
// No 0/O or 1/I/L, so a code read off paper is typed right the first time.
const BACKUP_CODE_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789'

export interface TotpOptions {
  /** Seals TOTP secrets at rest. */
  box: SecretBox
  /** Keys the hashes of backup codes. */
  backupCodeKey: Buffer
  /** Shown in the authenticator app. */
  issuerName: string
  now?: () => number
}

export interface NewTotpSecret {
  /** Base32, for typing into an app by hand. */
  secret: string
  otpauthUri: string
  sealedSecret: string
}

export interface Totp {
  newSecret(accountName: string): NewTotpSecret
  /**
   * The time step of a code that is valid now (±1 step for clock drift) and later than
   * `lastUsedStep`, or null: a code is accepted once.
   */
  acceptedStep(sealedSecret: string, code: string, lastUsedStep: number | null): number | null
  newBackupCodes(): { codes: string[]; hashes: string[] }
  /** The index in `hashes` of `code`, or -1. */
  backupCodeIndex(hashes: readonly string[], code: string): number
}

const normalizeBackupCode = (code: string) => code.toUpperCase().replace(/[^A-Z0-9]/g, '')

/** TOTP (RFC 6238: SHA-1, 6 digits, 30 s) with secrets sealed at rest, and one-time backup codes. */
export function createTotp(options: TotpOptions): Totp {
  const now = options.now ?? Date.now
  const totpFor = (secret: Secret, label = '') =>
    new TOTP({
      issuer: options.issuerName,
      label,
      algorithm: 'SHA1',
      digits: DIGITS,
      period: PERIOD_SECONDS,
      secret,
    })

  return {
    newSecret(accountName) {
      const secret = new Secret({ size: 20 })
      return {
        secret: secret.base32,
        otpauthUri: totpFor(secret, accountName).toString(),
        sealedSecret: options.box.seal(secret.base32),
      }
    },
    acceptedStep(sealedSecret, code, lastUsedStep) {
      if (!/^\d{6}$/.test(code)) return null
      const totp = totpFor(Secret.fromBase32(options.box.open(sealedSecret)))
      const timestamp = now()
      const delta = totp.validate({ token: code, timestamp, window: 1 })
      if (delta === null) return null
      const step = TOTP.counter({ period: PERIOD_SECONDS, timestamp }) + delta
      if (lastUsedStep !== null && step <= lastUsedStep) return null
      return step
    },
    newBackupCodes() {
      const codes = Array.from({ length: BACKUP_CODE_COUNT }, () => {
        const characters = Array.from(
          { length: 10 },
          () => BACKUP_CODE_ALPHABET[randomInt(BACKUP_CODE_ALPHABET.length)],
        ).join('')
        return `${characters.slice(0, 5)}-${characters.slice(5)}`
      })
      return {
        codes,
        hashes: codes.map((code) => keyedHash(options.backupCodeKey, normalizeBackupCode(code))),
      }
    },
    backupCodeIndex(hashes, code) {
      const normalized = normalizeBackupCode(code)
      if (normalized.length !== 10) return -1
      return hashes.indexOf(keyedHash(options.backupCodeKey, normalized))
    },
  }
}
