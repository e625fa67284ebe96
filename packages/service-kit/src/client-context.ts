import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'

/** Who is on the other end of a request, as audit events record it. */
export interface ClientContext {
  ip: string
  userAgent: string | null
}

/**
 * The client's address (from `X-Forwarded-For` only when the gateway's hop sent it, per the app's
 * `trustProxy`) and user agent. A forwarded value that is not an address is the hop's mistake,
 * so the hop's own address stands in for it.
 */
export const clientOf = (request: FastifyRequest): ClientContext => ({
  ip: isIP(request.ip) !== 0 ? request.ip : (request.socket.remoteAddress ?? 'unknown'),
  userAgent: request.headers['user-agent']?.slice(0, 512) ?? null,
})
