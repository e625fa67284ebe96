import { randomBytes } from 'node:crypto'
import { inject } from 'vitest'

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUrl: string
    redisUrl: string
  }
}

/** The run's MongoDB (a one-member replica set); give each test file its own database name. */
export const testMongoUrl = (): string => inject('mongoUrl')

/** The run's Redis; give each test file its own key prefix. */
export const testRedisUrl = (): string => inject('redisUrl')

/** A name no other test file uses: a database name or a Redis key prefix. */
export const uniqueTestName = (label: string): string =>
  `t_${label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 40)}_${randomBytes(4).toString('hex')}`
