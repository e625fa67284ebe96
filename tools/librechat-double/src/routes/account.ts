import { randomUUID } from 'node:crypto'
import multipart from '@fastify/multipart'
import type { FastifyInstance } from 'fastify'
import { userView } from '../auth.js'
import { type DoubleContext, requestUser } from '../context.js'
import type { FileDoc } from '../store.js'

const MAX_UPLOAD_BYTES = 20 * 1024 * 1024

/** `/health`, `/api/user`, `/api/balance`, `POST /api/files`. */
export async function accountRoutes(app: FastifyInstance, context: DoubleContext): Promise<void> {
  await app.register(multipart, { limits: { fileSize: MAX_UPLOAD_BYTES, files: 1 } })

  app.get('/health', async (_request, reply) => reply.type('text/plain').send('OK'))

  app.get('/api/user', async (request) => userView(requestUser(context, request).doc))

  app.get('/api/balance', async (request, reply) => {
    const user = requestUser(context, request)
    if (!context.balanceEnabled && context.version === '0.8.7') return reply.code(204).send()
    const balance = await context.store.balances.findOne({ user: user.doc._id })
    if (!balance) return reply.code(404).send({ error: 'Balance not found' })
    return { tokenCredits: balance.tokenCredits, autoRefillEnabled: false }
  })

  app.post('/api/files', async (request, reply) => {
    const user = requestUser(context, request)
    if (!request.isMultipart()) return reply.code(400).send({ message: 'No file uploaded' })
    const fields: Record<string, string> = {}
    let upload: { filename: string; mimetype: string; bytes: number } | undefined
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const content = await part.toBuffer()
        if (part.fieldname === 'file') {
          upload = { filename: part.filename, mimetype: part.mimetype, bytes: content.length }
        }
      } else if (typeof part.value === 'string') {
        fields[part.fieldname] = part.value
      }
    }
    if (!upload) return reply.code(400).send({ message: 'No file uploaded' })
    if (!fields.file_id) return reply.code(400).send({ message: 'No file_id provided' })
    if (!fields.endpoint) return reply.code(400).send({ message: 'No endpoint provided' })

    const fileId = randomUUID()
    const now = new Date()
    const file: FileDoc = {
      file_id: fileId,
      temp_file_id: fields.file_id,
      user: user.doc._id,
      filename: upload.filename,
      filepath: `/uploads/${user.id}/${fileId}__${upload.filename}`,
      bytes: upload.bytes,
      type: upload.mimetype,
      source: 'local',
      context: 'message_attachment',
      endpoint: fields.endpoint,
      ...(fields.conversationId ? { conversationId: fields.conversationId } : {}),
      createdAt: now,
      updatedAt: now,
    }
    await context.store.files.insertOne({ ...file })
    return {
      message: 'File uploaded and processed successfully',
      ...file,
      user: user.id,
      object: 'file',
      usage: 0,
      embedded: false,
    }
  })
}
