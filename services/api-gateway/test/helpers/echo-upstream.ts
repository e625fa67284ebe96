import Fastify, { type FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'

export interface EchoedRequest {
  service: string
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  body: string
}

/**
 * A real HTTP upstream on a free port that answers with what it received, so a test sees exactly
 * what the gateway forwarded. `/slow` answers after `slowMs`; `/conflict` answers a coded 409.
 */
export async function startEchoUpstream(service: string, slowMs = 2000) {
  const received: EchoedRequest[] = []
  const app: FastifyInstance = Fastify()
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body))
  app.get('/v1/slow', async () => {
    await new Promise((resolve) => setTimeout(resolve, slowMs))
    return { late: true }
  })
  app.post('/v1/conflict', async (_request, reply) => {
    return reply.code(409).send({
      statusCode: 409,
      code: 'WSP_CONFLICT',
      error: 'Conflict',
      message: 'Already a member',
    })
  })
  app.all('*', async (request) => {
    const echoed: EchoedRequest = {
      service,
      method: request.method,
      url: request.url,
      headers: request.headers,
      body: typeof request.body === 'string' ? request.body : '',
    }
    received.push(echoed)
    return echoed
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  onTestFinished(() => app.close())
  return { url, received }
}
