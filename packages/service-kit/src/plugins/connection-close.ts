import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/**
 * Lets a closing app close at once when its connections are only waiting. Node's
 * `closeIdleConnections()` (what Fastify runs on close) passes over a connection that has not
 * sent a request yet, such as a browser's preconnect, and `server.close()` then waits for that
 * connection's headers timeout: a minute. So when the app closes, every HTTP connection with no
 * request in flight is destroyed, and one whose last response ends after that is closed once
 * the response is flushed. Requests in flight finish; new ones on open connections get
 * Fastify's 503. A connection that sent bytes but never a whole request is left alone: it may
 * have been upgraded (a WebSocket, closed by its own handler with a close frame).
 */
async function connectionClose(app: FastifyInstance) {
  const connections = new Map<Socket, { inFlight: number; served: boolean }>()
  let closing = false

  app.server.on('connection', (socket: Socket) => {
    connections.set(socket, { inFlight: 0, served: false })
    socket.once('close', () => connections.delete(socket))
  })
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const { socket } = request
    const connection = connections.get(socket)
    if (connection === undefined) return
    connection.inFlight += 1
    connection.served = true
    response.once('close', () => {
      connection.inFlight -= 1
      // destroySoon: flushed first, and not held open by a peer that never sends its FIN.
      if (closing && connection.inFlight === 0 && !socket.destroyed) socket.destroySoon()
    })
  })
  app.addHook('preClose', async () => {
    closing = true
    for (const [socket, { inFlight, served }] of connections)
      if (inFlight === 0 && (served || socket.bytesRead === 0)) socket.destroy()
  })
}

export const connectionClosePlugin = fp(connectionClose, {
  name: 'connection-close',
  fastify: '5.x',
})
