import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'
import type { ClientContext } from './sign-in.js'

/**
 * The client's address (from `X-Forwarded-For` only when the gateway's hop sent it, per the app's
 * `trustProxy`) and user agent. A forwarded value that is not an address is the hop's mistake,
 * so the hop's own address stands in for it.
 */
export const clientOf = (request: FastifyRequest): ClientContext => ({
  ip: isIP(request.ip) !== 0 ? request.ip : (request.socket.remoteAddress ?? 'unknown'),
  userAgent: request.headers['user-agent']?.slice(0, 512) ?? null,
})
