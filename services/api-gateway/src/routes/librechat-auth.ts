import {
  PlatformTokenClaimsSchema,
  REFRESH_COOKIE_NAME,
  type TokenPairResponse,
  TokenPairResponseSchema,
} from '@platform/shared-types'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { decodeJwt } from 'jose'
import { request as upstreamRequest } from 'undici'
import { z } from 'zod'
import { DependencyUnavailable, RouteDisabled } from '../errors.js'
import { forwardedHeaders } from '../lib/forwarding.js'

export interface LibreChatAuthOptions {
  authServiceUrl: string
}

/**
 * LibreChat's own sign-in routes, answered from the platform session (API.md §5) in the shapes
 * and texts LibreChat's unmodified web UI expects, so it signs in, refreshes and signs out
 * against the auth-service and always shows the current workspace's LibreChat user.
 */
export async function libreChatAuthRoutes(app: FastifyInstance, options: LibreChatAuthOptions) {
  const { libreChat } = app

  /** Calls the auth-service as the client: its cookie and forwarded address, the gateway's word. */
  async function authService(request: FastifyRequest, path: string, body: unknown) {
    const headers = forwardedHeaders(request, {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(request.headers.cookie === undefined ? {} : { cookie: request.headers.cookie }),
      ...(request.headers.authorization === undefined
        ? {}
        : { authorization: request.headers.authorization }),
      ...(request.headers['user-agent'] === undefined
        ? {}
        : { 'user-agent': request.headers['user-agent'] }),
    })
    try {
      const response = await upstreamRequest(new URL(path, options.authServiceUrl), {
        method: 'POST',
        headers: headers as Record<string, string>,
        body: JSON.stringify(body),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      })
      const text = await response.body.text()
      return { status: response.statusCode, headers: response.headers, text }
    } catch (error) {
      throw new DependencyUnavailable('auth service', { cause: error })
    }
  }

  const passCookies = (
    reply: FastifyReply,
    headers: Record<string, string | string[] | undefined>,
  ) => {
    const cookies = headers['set-cookie']
    if (cookies !== undefined) reply.header('set-cookie', cookies)
  }

  /** `{token, user}`: the platform access token and the member's LibreChat user, as `/api/user` shows it. */
  async function sessionAnswer(request: FastifyRequest, pair: TokenPairResponse) {
    const scope = PlatformTokenClaimsSchema.parse(decodeJwt(pair.accessToken))
    if (scope.wid === undefined || scope.tid === undefined)
      return { token: pair.accessToken, user: null }
    const identity = await libreChat.bridge.identityFor({
      tenantId: scope.tid,
      workspaceId: scope.wid,
      userId: scope.sub,
    })
    const answer = await libreChat.requestAs(identity.libreChatUserId, {
      method: 'GET',
      path: '/api/user',
      clientIp: request.ip,
    })
    const user: unknown = answer.status === 200 ? JSON.parse(answer.text) : null
    return { token: pair.accessToken, user }
  }

  app.post('/api/auth/refresh', async (request, reply) => {
    if (request.headers.cookie?.includes(`${REFRESH_COOKIE_NAME}=`) !== true)
      return reply.code(200).type('text/plain').send('Refresh token not provided')
    const answer = await authService(request, '/auth/v1/token/refresh', {})
    if (answer.status >= 500) throw new DependencyUnavailable('auth service')
    passCookies(reply, answer.headers)
    if (answer.status !== 200)
      return reply.code(403).type('text/plain').send('Invalid refresh token')
    const pair = TokenPairResponseSchema.parse(JSON.parse(answer.text))
    return reply.send(await sessionAnswer(request, pair))
  })

  app.post(
    '/api/auth/login',
    {
      bodyLimit: 16 * 1024,
      schema: {
        body: z
          .object({ email: z.string().max(320), password: z.string().max(1024) })
          .passthrough(),
      },
    },
    async (request, reply) => {
      const { email, password } = request.body as { email: string; password: string }
      const answer = await authService(request, '/auth/v1/login', { email, password })
      if (answer.status >= 500) throw new DependencyUnavailable('auth service')
      if (answer.status === 429) {
        const retryAfter = answer.headers['retry-after']
        if (typeof retryAfter === 'string') reply.header('retry-after', retryAfter)
        return reply.code(429).send({ message: 'Too many login attempts, please try again later.' })
      }
      if (answer.status !== 200) {
        const code = (JSON.parse(answer.text) as { code?: string }).code
        const message =
          code === 'AUTH_MFA_REQUIRED'
            ? 'Two-factor authentication is on for this account: sign in from the platform console.'
            : 'Email or password is incorrect.'
        return reply.code(404).send({ message })
      }
      passCookies(reply, answer.headers)
      const pair = TokenPairResponseSchema.parse(JSON.parse(answer.text))
      return reply.send(await sessionAnswer(request, pair))
    },
  )

  app.post('/api/auth/logout', async (request, reply) => {
    const answer = await authService(request, '/auth/v1/logout', null)
    if (answer.status >= 500) throw new DependencyUnavailable('auth service')
    passCookies(reply, answer.headers)
    return reply.send({ message: 'Logout successful' })
  })

  app.post('/api/auth/register', async (_request, reply) =>
    reply.code(403).send({ message: 'Registration is not allowed.' }),
  )

  const disabled = async (request: FastifyRequest) => {
    throw new RouteDisabled(`${request.method} ${request.url.split('?')[0]}`)
  }
  app.all('/api/auth/*', disabled)
  app.all('/oauth', disabled)
  app.all('/oauth/*', disabled)
  app.delete('/api/user/delete', disabled)
}
