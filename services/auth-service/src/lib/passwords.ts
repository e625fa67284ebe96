import argon2 from 'argon2'

export interface PasswordHashingCost {
  memoryKib: number
  timeCost: number
  parallelism: number
}

export interface PasswordHasher {
  hash(password: string): Promise<string>
  /** True when `password` matches `hash`; with no hash it still spends the same time, then says no. */
  verify(hash: string | null, password: string): Promise<boolean>
  /** Whether `hash` was made with weaker settings than today's and should be replaced. */
  needsRehash(hash: string): boolean
}

/**
 * Argon2id password hashing. An unknown account is checked against a hash of a random password
 * made with the same cost, so "no such email" takes as long as "wrong password".
 */
export async function createPasswordHasher(cost: PasswordHashingCost): Promise<PasswordHasher> {
  const options = {
    type: argon2.argon2id,
    memoryCost: cost.memoryKib,
    timeCost: cost.timeCost,
    parallelism: cost.parallelism,
  } as const
  const decoyHash = await argon2.hash(crypto.randomUUID(), options)
  return {
    hash: (password) => argon2.hash(password.normalize('NFKC'), options),
    async verify(hash, password) {
      const normalized = password.normalize('NFKC')
      if (hash === null) {
        await argon2.verify(decoyHash, normalized)
        return false
      }
      try {
        return await argon2.verify(hash, normalized)
      } catch {
        return false
      }
    },
    needsRehash: (hash) => argon2.needsRehash(hash, options),
  }
}
