import { createHash, randomBytes } from 'node:crypto'

/** An opaque id with a prefix that says what it names (`wsp_…`), 96 random bits. */
export const newId = (prefix: 'tnt' | 'wsp' | 'inv' | 'evt') =>
  `${prefix}_${randomBytes(12).toString('base64url')}`

/** A secret for a link (invitation tokens): 256 random bits. */
export const newSecretToken = () => randomBytes(32).toString('base64url')

export const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')
