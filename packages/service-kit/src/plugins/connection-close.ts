import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/**
 * Lets a closing app close at once when its connections are only waiting. Node's
 * `closeIdleConnections()` (what Fastify runs on close) passes over a connection that has not
 * sent a request yet, such as a browser's preconnect, and `server.close()` then waits for that
 * connection's headers timeout: a minute. So when the app closes, every connection with no
 * request in flight is destroyed, and one whose last response ends after that is ended.
 * Requests in flight finish; new ones on open connections get Fastify's 503.
 */
async function connectionClose(app: FastifyInstance) {
  /** Requests in flight per open connection; 0 = waiting for the next request. */
  const inFlight = new Map<Socket, number>()
  let closing = false

  app.server.on('connection', (socket: Socket) => {
    inFlight.set(socket, 0)
    socket.once('close', () => inFlight.delete(socket))
  })
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const { socket } = request
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    response.once('close', () => {
      const left = (inFlight.get(socket) ?? 1) - 1
      if (socket.destroyed) return
      inFlight.set(socket, left)
      // Ended, not destroyed: the response's last bytes may still be in the socket's buffer.
      if (closing && left === 0) socket.end()
    })
  })
  app.addHook('preClose', async () => {
    closing = true
    for (const [socket, requests] of inFlight) if (requests === 0) socket.destroy()
  })
}

export const connectionClosePlugin = fp(connectionClose, {
  name: 'connection-close',
  fastify: '5.x',
})
