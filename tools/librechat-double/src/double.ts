import Fastify, { type FastifyError } from 'fastify'
import { authenticate } from './auth.js'
import { type DoubleContext, requestIp } from './context.js'
import { isBrowserUserAgent, sendSseTextDenial } from './http-helpers.js'
import { JobRegistry } from './jobs.js'
import { McpConnector } from './mcp.js'
import { accountRoutes } from './routes/account.js'
import { agentRoutes } from './routes/agents.js'
import { chatRoutes } from './routes/chat.js'
import { discoveryRoutes } from './routes/discovery.js'
import { historyRoutes } from './routes/history.js'
import { openStore } from './store.js'
import type { LibreChatDouble, LibreChatDoubleOptions } from './types.js'

/** LibreChat's `uaParser` guards these routers (chat, stream and CRUD alike). */
const BROWSER_ONLY_PATH = /^\/api\/(?:agents|files|assistants|permissions)(?:\/|$)/

const DEFAULT_FIRST_SUBSCRIBER_GRACE_MS = 1000

/** LibreChat's `express.json({ limit: '3mb' })`. */
const BODY_LIMIT_BYTES = 3 * 1024 * 1024

/**
 * Starts a server that answers like an unmodified LibreChat (v0.8.7 by default, or v0.8.1's
 * single-request SSE chat) on a free loopback port, with its data in `dbName`.
 */
export async function startLibreChatDouble(
  options: LibreChatDoubleOptions,
): Promise<LibreChatDouble> {
  const version = options.version ?? '0.8.7'
  const store = await openStore(options.mongoUrl, options.dbName)
  const registry = new JobRegistry(
    options.keepCompletedStreamsMs ?? 0,
    options.firstSubscriberGraceMs ?? DEFAULT_FIRST_SUBSCRIBER_GRACE_MS,
  )
  let serverUrl = ''
  const context: DoubleContext = {
    version,
    endpoints: options.endpoints,
    modelSpecs: options.modelSpecs ?? [],
    balanceEnabled: options.balanceEnabled ?? false,
    jwtKey: new TextEncoder().encode(options.jwtSecret),
    store,
    registry,
    mcp: new McpConnector(options.mcpServers ?? []),
    violations: [],
    aborts: [],
    turns: new Set(),
    activeTurns: new Map(),
    authenticatedUsers: new WeakMap(),
    serverUrl: () => serverUrl,
  }
  const requests: LibreChatDouble['requests'] = []

  const app = Fastify({ bodyLimit: BODY_LIMIT_BYTES, forceCloseConnections: true })
  // Like express.json(): an empty JSON body is {}, not an error.
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') return done(null, {})
    try {
      done(null, JSON.parse(text))
    } catch {
      done(Object.assign(new Error('Invalid JSON body'), { statusCode: 400 }), undefined)
    }
  })

  app.addHook('onRequest', async (request, reply) => {
    requests.push({ method: request.method, url: request.url, headers: { ...request.headers } })
    const path = request.url.split('?')[0] ?? ''
    if (!requiresAuthentication(path, version)) return
    const outcome = await authenticate(request.headers.authorization, context.jwtKey, store)
    if ('failure' in outcome) {
      // v0.8.1 used plain passport.authenticate: a text body.
      if (version === '0.8.1') return reply.code(401).type('text/plain').send('Unauthorized')
      return reply.code(401).send({ message: outcome.failure })
    }
    context.authenticatedUsers.set(request, outcome.user)
    if (BROWSER_ONLY_PATH.test(path) && !isBrowserUserAgent(request.headers['user-agent'])) {
      context.violations.push({
        type: 'non_browser',
        userId: outcome.user.id,
        ip: requestIp(request),
      })
      return sendSseTextDenial(reply, { message: 'Illegal request' })
    }
  })

  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500
    return reply
      .code(status)
      .send({ message: status < 500 ? error.message : 'Internal Server Error' })
  })
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type('text/html; charset=utf-8')
      .send(`Cannot ${request.method} ${request.url.split('?')[0]}`),
  )

  await app.register(async (scope) => {
    await accountRoutes(scope, context)
    await discoveryRoutes(scope, context)
    await historyRoutes(scope, context)
    await agentRoutes(scope, context)
    await chatRoutes(scope, context)
  })

  serverUrl = await app.listen({ port: 0, host: '127.0.0.1' })

  return {
    url: serverUrl,
    requests,
    violations: context.violations,
    aborts: context.aborts,
    streamStats: (streamId) => registry.snapshot(streamId),
    async close() {
      for (const job of registry.allRunning()) job.abortController.abort()
      await Promise.allSettled([...context.turns])
      registry.close()
      await app.close()
      await store.close()
    },
  }
}

function requiresAuthentication(path: string, version: LibreChatDoubleOptions['version']): boolean {
  if (!path.startsWith('/api/')) return false
  if (path === '/api/config') return false
  // v0.8.1 served the endpoints config without authentication.
  if (path === '/api/endpoints' && version === '0.8.1') return false
  return true
}
