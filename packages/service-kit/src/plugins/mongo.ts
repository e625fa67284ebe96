import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import mongoose, { type Connection } from 'mongoose'

export interface MongoOptions {
  url: string
  /** Each service keeps its own database on the one MONGO_URL (`auth`, `workspace`, …). */
  dbName: string
  serverSelectionTimeoutMS?: number
}

/** Decorates `mongo`, this service's own mongoose connection, and closes it with the app. */
async function mongo(app: FastifyInstance, options: MongoOptions) {
  const connection = mongoose.createConnection(options.url, {
    dbName: options.dbName,
    serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 10_000,
  })
  // A service that cannot reach its database at boot exits; its supervisor starts it again.
  await connection.asPromise()
  app.decorate('mongo', connection)
  app.readiness.add('mongo', async () => {
    const db = connection.db
    if (db === undefined) throw new Error('not connected')
    await db.admin().command({ ping: 1 })
  })
  app.addHook('onClose', async () => {
    await connection.close()
  })
}

/** Whether a write failed on a unique index (E11000): the value is taken, often by a racing write. */
export const isDuplicateKeyError = (error: unknown) =>
  typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 11000

export const mongoPlugin = fp(mongo, { name: 'mongo', fastify: '5.x', dependencies: ['health'] })

declare module 'fastify' {
  interface FastifyInstance {
    mongo: Connection
  }
}
