import { errorResponses } from '@platform/service-kit'
import {
  InternalUserSchema,
  SERVICE_SECRET_VARIABLES,
  ServiceTokenRequestSchema,
  ServiceTokenResponseSchema,
} from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { AuthConfig } from '../config.js'
import { InvalidCredentials, UserNotFound } from '../errors.js'
import { constantTimeEqual } from '../lib/crypto.js'
import { InvalidEmailError, normalizeEmail } from '../lib/email.js'
import { internalUser } from '../lib/users.js'

export interface InternalRoutesOptions {
  config: AuthConfig
}

/** Between services only, never routed by the gateway (API.md §7). */
export const internalRoutes: FastifyPluginAsyncZod<InternalRoutesOptions> = async (
  app,
  options,
) => {
  const { models, tokens, keys, audit } = app.identity
  const lookupCallers = app.requireService('workspace-service', 'api-gateway', 'code-runtime')

  app.post(
    '/service-token',
    {
      schema: {
        body: ServiceTokenRequestSchema,
        response: { 200: ServiceTokenResponseSchema, ...errorResponses(400, 401) },
      },
    },
    async (request) => {
      const { service, secret } = request.body
      const expected = options.config[SERVICE_SECRET_VARIABLES[service]]
      if (!constantTimeEqual(secret, expected)) {
        request.log.warn({ service }, 'service token refused: wrong secret')
        throw new InvalidCredentials()
      }
      return { token: await tokens.serviceToken(service), expiresIn: tokens.serviceTokenSeconds }
    },
  )

  app.get(
    '/users/by-email',
    {
      preHandler: lookupCallers,
      schema: {
        querystring: z.strictObject({ email: z.string().min(1).max(320) }),
        response: { 200: InternalUserSchema, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      let email: string
      try {
        email = normalizeEmail(request.query.email)
      } catch (error) {
        if (error instanceof InvalidEmailError) throw new UserNotFound('with that email')
        throw error
      }
      const user = await models.users.findOne({ email }).lean()
      if (user === null) throw new UserNotFound('with that email')
      return internalUser(user)
    },
  )

  app.get(
    '/users/:id',
    {
      preHandler: lookupCallers,
      schema: {
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: InternalUserSchema, ...errorResponses(401, 403, 404) },
      },
    },
    async (request) => {
      const user = await models.users.findById(request.params.id).lean()
      if (user === null) throw new UserNotFound(request.params.id)
      return internalUser(user)
    },
  )

  app.post(
    '/keys/rotate',
    {
      // Operators obtain an auth-service token with SERVICE_SECRET_AUTH.
      preHandler: app.requireService('auth-service'),
      schema: {
        response: {
          200: z.object({ kid: z.string(), retiredKid: z.string().nullable() }),
          ...errorResponses(401, 403),
        },
      },
    },
    async (request) => {
      const rotated = await keys.rotate()
      await audit.record({
        action: 'auth.key.rotated',
        actor: { type: 'service', id: request.caller?.sub ?? null },
        target: { type: 'signing-key', id: rotated.kid },
        before: { kid: rotated.retiredKid },
        after: { kid: rotated.kid, reason: 'on-demand' },
        ip: request.ip,
      })
      return rotated
    },
  )
}
