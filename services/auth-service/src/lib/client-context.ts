import type { FastifyRequest } from 'fastify'
import type { ClientContext } from './sign-in.js'

/**
 * The client's address (from `X-Forwarded-For` only when the gateway's hop sent it, per the app's
 * `trustProxy`) and user agent.
 */
export const clientOf = (request: FastifyRequest): ClientContext => ({
  ip: request.ip,
  userAgent: request.headers['user-agent']?.slice(0, 512) ?? null,
})
