import { TOKEN_SIGNING_ALGORITHM } from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'

const JwkSchema = z.looseObject({ kty: z.string(), kid: z.string(), alg: z.string() })

/** The public keys (active, next and recently retired) and the issuer's metadata. */
export const wellKnownRoutes: FastifyPluginAsyncZod = async (app) => {
  const { keys, issuer } = app.identity

  app.get(
    '/jwks.json',
    { schema: { response: { 200: z.object({ keys: z.array(JwkSchema) }) } } },
    async (_request, reply) => {
      // Short, so verifiers that honour it still see a rotation's next key well before it signs.
      reply.header('cache-control', 'public, max-age=60')
      const published = await keys.publishedKeys()
      return { keys: published.map((jwk) => JwkSchema.parse(jwk)) }
    },
  )

  app.get(
    '/openid-configuration',
    {
      schema: {
        response: {
          200: z.looseObject({
            issuer: z.string(),
            jwks_uri: z.string(),
            id_token_signing_alg_values_supported: z.array(z.string()),
          }),
        },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300')
      return {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks.json`,
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: [TOKEN_SIGNING_ALGORITHM],
        token_endpoint: `${issuer}/auth/v1/token/refresh`,
        claims_supported: ['iss', 'aud', 'sub', 'tid', 'wid', 'role', 'sid', 'jti', 'iat', 'exp'],
      }
    },
  )
}
