/**
 * The floor of bench:gateway's latency figures: the least a Node.js proxy can do on the same
 * path, run as its own process like the gateway. It rewrites the identity headers as the gateway
 * does (the client's credentials out, one fixed LibreChat token and a browser User-Agent in,
 * `X-Forwarded-For` set) and streams LibreChat's answer back through an undici pool, with no
 * framework, no checks and no logging. What the gateway adds above this is the price of its
 * work; what this adds above a direct call is the price of one more hop on this machine.
 *
 * Environment: RELAY_PORT, UPSTREAM_URL, LIBRECHAT_TOKEN, USER_AGENT.
 */
import { createServer } from 'node:http'
import { Pool } from 'undici'

const upstream = new Pool(String(process.env.UPSTREAM_URL), { connections: null })
const authorization = `Bearer ${process.env.LIBRECHAT_TOKEN}`
const userAgent = String(process.env.USER_AGENT)

const server = createServer((request, response) => {
  const { authorization: _clientCredentials, cookie: _cookie, ...headers } = request.headers
  upstream
    .request({
      // The benchmark sends only GETs.
      method: 'GET',
      path: request.url ?? '/',
      headers: {
        ...headers,
        authorization,
        'user-agent': userAgent,
        'x-forwarded-for': request.socket.remoteAddress ?? '',
      },
    })
    .then(
      (answer) => {
        const { connection: _connection, 'keep-alive': _keepAlive, ...kept } = answer.headers
        response.writeHead(answer.statusCode, kept)
        answer.body.pipe(response)
      },
      () => {
        response.writeHead(502).end()
      },
    )
})
server.listen(Number(process.env.RELAY_PORT), '127.0.0.1', () => {
  process.send?.('listening')
})
