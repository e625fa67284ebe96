import type { Model } from 'mongoose'
import type { Totp } from './totp.js'
import type { UserDocument } from './users.js'

/**
 * Checks a TOTP code or a backup code for a user with MFA on, and uses it up: the TOTP step is
 * recorded and a backup code removed by conditional updates, so two requests racing with the
 * same code cannot both pass.
 */
export async function consumeSecondFactor(
  users: Model<UserDocument>,
  totp: Totp,
  user: UserDocument,
  code: string,
): Promise<'totp' | 'backup-code' | null> {
  const sealedSecret = user.mfa.sealedSecret
  if (!user.mfa.enabled || sealedSecret === null) return null
  const step = totp.acceptedStep(sealedSecret, code.trim(), user.mfa.lastUsedStep)
  if (step !== null) {
    const recorded = await users.updateOne(
      {
        _id: user._id,
        $or: [{ 'mfa.lastUsedStep': null }, { 'mfa.lastUsedStep': { $lt: step } }],
      },
      { 'mfa.lastUsedStep': step },
    )
    return recorded.modifiedCount === 1 ? 'totp' : null
  }
  const index = totp.backupCodeIndex(user.mfa.backupCodeHashes, code)
  const hash = user.mfa.backupCodeHashes[index]
  if (hash === undefined) return null
  const used = await users.updateOne(
    { _id: user._id, 'mfa.backupCodeHashes': hash },
    { $pull: { 'mfa.backupCodeHashes': hash } },
  )
  return used.modifiedCount === 1 ? 'backup-code' : null
}
