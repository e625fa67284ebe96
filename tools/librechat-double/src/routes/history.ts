import type { FastifyInstance } from 'fastify'
import type { mongo } from 'mongoose'
import { z } from 'zod'
import { type DoubleContext, requestUser } from '../context.js'
import type { ConversationDoc } from '../store.js'

const ConvoQuerySchema = z.object({
  limit: z.coerce.number().int().optional(),
  cursor: z.string().optional(),
  isArchived: z.enum(['true', 'false']).optional(),
})

const CursorSchema = z.object({ updatedAt: z.string(), conversationId: z.string() })

/** `/api/convos` and `/api/messages`: always filtered by the requesting user. */
export async function historyRoutes(app: FastifyInstance, context: DoubleContext): Promise<void> {
  const { conversations, messages } = context.store

  app.get('/api/convos', async (request) => {
    const user = requestUser(context, request)
    const query = ConvoQuerySchema.safeParse(request.query)
    const limit = Math.min(100, Math.max(1, query.data?.limit ?? 25))
    const filter: mongo.Filter<ConversationDoc> = {
      user: user.id,
      isArchived: query.data?.isArchived === 'true',
    }
    const cursor = decodeCursor(query.data?.cursor)
    if (cursor) {
      const updatedAt = new Date(cursor.updatedAt)
      filter.$or = [
        { updatedAt: { $lt: updatedAt } },
        { updatedAt, conversationId: { $lt: cursor.conversationId } },
      ]
    }
    const docs = await conversations
      .find(filter, { projection: { _id: 0 } })
      .sort({ updatedAt: -1, conversationId: -1 })
      .limit(limit + 1)
      .toArray()
    const page = docs.slice(0, limit)
    const last = page.at(-1)
    return {
      conversations: page,
      nextCursor:
        docs.length > limit && last
          ? Buffer.from(
              JSON.stringify({
                updatedAt: last.updatedAt.toISOString(),
                conversationId: last.conversationId,
              }),
            ).toString('base64url')
          : null,
    }
  })

  app.get('/api/convos/:conversationId', async (request, reply) => {
    const user = requestUser(context, request)
    const { conversationId } = request.params as { conversationId: string }
    const convo = await conversations.findOne(
      { conversationId, user: user.id },
      { projection: { _id: 0 } },
    )
    // LibreChat ends a miss with an empty 404.
    return convo ?? reply.code(404).send()
  })

  app.get('/api/messages/:conversationId', async (request) => {
    const user = requestUser(context, request)
    const { conversationId } = request.params as { conversationId: string }
    return messages
      .find({ conversationId, user: user.id }, { projection: { _id: 0 } })
      .sort({ createdAt: 1, _id: 1 })
      .toArray()
  })
}

function decodeCursor(cursor: string | undefined): z.infer<typeof CursorSchema> | undefined {
  if (!cursor) return undefined
  try {
    const parsed = CursorSchema.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString()))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}
