import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { mongo } from 'mongoose'
import { z } from 'zod'
import type { AuthUser } from '../auth.js'
import { type DoubleContext, requestUser } from '../context.js'
import { MCP_DELIMITER, parseToolKey } from '../mcp.js'
import type { AgentDoc } from '../store.js'

const AgentFieldsSchema = z.object({
  name: z.string().nullable().optional(),
  description: z.string().nullable().optional(),
  instructions: z.string().nullable().optional(),
  avatar: z.unknown().optional(),
  provider: z.string().min(1),
  model: z.string().min(1),
  model_parameters: z.record(z.string(), z.unknown()).optional(),
  tools: z.array(z.string()).optional(),
  tool_resources: z.record(z.string(), z.unknown()).optional(),
  agent_ids: z.array(z.string()).optional(),
  edges: z.array(z.record(z.string(), z.unknown())).optional(),
  subagents: z.unknown().optional(),
  artifacts: z.string().optional(),
  recursion_limit: z.number().optional(),
  conversation_starters: z.array(z.string()).optional(),
  category: z.string().optional(),
  support_contact: z.record(z.string(), z.unknown()).optional(),
})
const AgentCreateSchema = AgentFieldsSchema
const AgentUpdateSchema = AgentFieldsSchema.partial()

const ListQuerySchema = z.object({
  limit: z.coerce.number().int().optional(),
  cursor: z.string().optional(),
})

const CursorSchema = z.object({ updatedAt: z.string(), id: z.string() })

/** `/api/agents` CRUD. Visibility is LibreChat's ACL with nothing shared: an agent is its author's. */
export async function agentRoutes(app: FastifyInstance, context: DoubleContext): Promise<void> {
  const { agents } = context.store

  app.get('/api/agents', async (request) => {
    const user = requestUser(context, request)
    const query = ListQuerySchema.safeParse(request.query)
    const limit = Math.min(1000, Math.max(1, query.data?.limit ?? 100))
    const filter: mongo.Filter<AgentDoc> = { author: user.doc._id }
    const cursor = decodeCursor(query.data?.cursor)
    if (cursor) {
      const updatedAt = new Date(cursor.updatedAt)
      filter.$or = [{ updatedAt: { $lt: updatedAt } }, { updatedAt, id: { $lt: cursor.id } }]
    }
    const docs = await agents
      .find(filter)
      .sort({ updatedAt: -1, id: -1 })
      .limit(limit + 1)
      .toArray()
    const hasMore = docs.length > limit
    const page = docs.slice(0, limit)
    const last = page.at(-1)
    return {
      object: 'list',
      data: page.map(agentView),
      first_id: page[0]?.id ?? null,
      last_id: last?.id ?? null,
      has_more: hasMore,
      after: hasMore && last ? encodeCursor(last) : null,
    }
  })

  app.post('/api/agents', async (request, reply) => {
    const user = requestUser(context, request)
    const parsed = AgentCreateSchema.safeParse(request.body)
    if (!parsed.success) {
      return reply.code(400).send({ error: 'Invalid request data', details: parsed.error.issues })
    }
    const now = new Date()
    const doc: AgentDoc = {
      ...withoutNulls(parsed.data),
      _id: new mongo.ObjectId(),
      id: `agent_${randomBytes(16).toString('base64url').slice(0, 21)}`,
      author: user.doc._id,
      authorName: user.doc.name ?? user.doc.username ?? user.doc.email,
      provider: parsed.data.provider,
      model: parsed.data.model,
      tools: authorizedTools(context, parsed.data.tools ?? []),
      category: parsed.data.category ?? 'general',
      createdAt: now,
      updatedAt: now,
    }
    await agents.insertOne(doc)
    return reply.code(201).send(agentView(doc))
  })

  app.get('/api/agents/:id', async (request, reply) => {
    const agent = await viewable(context, requestUser(context, request), request.params, reply)
    return agent ? agentView(agent) : reply
  })

  app.patch('/api/agents/:id', async (request, reply) => {
    const agent = await viewable(context, requestUser(context, request), request.params, reply)
    if (!agent) return reply
    const parsed = AgentUpdateSchema.safeParse(request.body ?? {})
    if (!parsed.success) {
      return reply.code(400).send({ error: 'Invalid request data', details: parsed.error.issues })
    }
    const changes: Partial<AgentDoc> = { ...withoutNulls(parsed.data), updatedAt: new Date() }
    if (parsed.data.tools) changes.tools = authorizedTools(context, parsed.data.tools)
    const updated = await agents.findOneAndUpdate(
      { _id: agent._id },
      { $set: changes },
      { returnDocument: 'after' },
    )
    return updated ? agentView(updated) : reply.code(404).send(notFound)
  })

  app.delete('/api/agents/:id', async (request, reply) => {
    const agent = await viewable(context, requestUser(context, request), request.params, reply)
    if (!agent) return reply
    await agents.deleteOne({ _id: agent._id })
    return { message: 'Agent deleted' }
  })
}

const notFound = { error: 'Not Found', message: 'agent not found' }

/**
 * LibreChat's `canAccessResource`: unknown agent 404, another user's agent 403 (its ACL grants
 * the author only; role ADMIN passes everything). Sends the refusal and returns undefined.
 */
async function viewable(
  context: DoubleContext,
  user: AuthUser,
  params: unknown,
  reply: FastifyReply,
): Promise<AgentDoc | undefined> {
  const id = (params as { id?: string }).id ?? ''
  const agent = await context.store.agents.findOne({ id })
  if (!agent) {
    reply.code(404).send(notFound)
    return undefined
  }
  if (!agent.author.equals(user.doc._id) && user.role !== 'ADMIN') {
    reply
      .code(403)
      .send({ error: 'Forbidden', message: 'Insufficient permissions to access this agent' })
    return undefined
  }
  return agent
}

/** Drops MCP tool keys whose server is not configured (LibreChat's `filterAuthorizedTools`). */
function authorizedTools(context: DoubleContext, tools: string[]): string[] {
  return tools.filter((key) => {
    if (!key.includes(MCP_DELIMITER)) return true
    const parsed = parseToolKey(key)
    return parsed !== undefined && context.mcp.configured(parsed.server) !== undefined
  })
}

function agentView(agent: AgentDoc): Record<string, unknown> {
  return { ...agent, _id: agent._id.toHexString(), author: agent.author.toHexString() }
}

function withoutNulls<T extends Record<string, unknown>>(
  fields: T,
): { [K in keyof T]?: Exclude<T[K], null> } {
  return Object.fromEntries(
    Object.entries(fields).filter(([, value]) => value !== null && value !== undefined),
  ) as { [K in keyof T]?: Exclude<T[K], null> }
}

function encodeCursor(agent: AgentDoc): string {
  return Buffer.from(
    JSON.stringify({ updatedAt: agent.updatedAt.toISOString(), id: agent.id }),
  ).toString('base64url')
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
