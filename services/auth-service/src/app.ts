import cookie from '@fastify/cookie'
import {
  authenticatePlugin,
  createServiceApp,
  mongoPlugin,
  redisPlugin,
} from '@platform/service-kit'
import type { FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import type { AuthConfig } from './config.js'
import { DependencyUnavailable, Forbidden, SessionRevoked, Unauthenticated } from './errors.js'
import type { OAuthEndpointOverrides } from './lib/oauth-providers.js'
import { identityPlugin } from './plugins/identity.js'
import { authRoutes } from './routes/auth.js'
import { internalRoutes } from './routes/internal.js'
import { mfaRoutes } from './routes/mfa.js'
import { oauthRoutes } from './routes/oauth.js'
import { sessionRoutes } from './routes/sessions.js'
import { wellKnownRoutes } from './routes/well-known.js'

export const SERVICE_NAME = 'auth-service'

export interface BuildOptions {
  logDestination?: DestinationStream
  /** Test isolation: a database and a Redis key prefix of the test's own. */
  dbName?: string
  redisKeyPrefix?: string
  /**
   * Lets OAuth talk to `http://` issuers. Only tests set it (against a provider on localhost);
   * no environment variable reaches it, so a deployment cannot turn it on.
   */
  allowInsecureOAuthIssuers?: boolean
  /**
   * Test-only: GitHub's endpoints on a local server instead of github.com. Like the option
   * above, no environment variable reaches it.
   */
  oauthEndpointOverrides?: OAuthEndpointOverrides
}

/** The auth-service: accounts, sign-in, sessions, MFA and the keys every token is signed with. */
export async function buildApp(
  config: AuthConfig,
  options: BuildOptions = {},
): Promise<FastifyInstance> {
  const app = await createServiceApp({
    service: SERVICE_NAME,
    errorPrefix: 'AUTH',
    logLevel: config.LOG_LEVEL,
    logPretty: config.LOG_PRETTY,
    logDestination: options.logDestination,
    // The client address comes from X-Forwarded-For only on requests from the gateway's hop.
    trustProxy: config.TRUSTED_PROXIES,
    bodyLimit: 64 * 1024,
  })
  await app.register(mongoPlugin, { url: config.MONGO_URL, dbName: options.dbName ?? 'auth' })
  await app.register(redisPlugin, {
    url: config.REDIS_URL,
    ...(options.redisKeyPrefix === undefined ? {} : { keyPrefix: options.redisKeyPrefix }),
  })
  await app.register(cookie)
  await app.register(identityPlugin, { config })
  await app.register(authenticatePlugin, {
    verifier: app.identity.verifier,
    errors: {
      unauthenticated: (message, cause) => new Unauthenticated(message, { cause }),
      sessionRevoked: () => new SessionRevoked(),
      dependencyUnavailable: (what, cause) => new DependencyUnavailable(what, { cause }),
      serviceNotAllowed: (service) => new Forbidden(`The ${service} may not call this route`),
    },
  })

  const secureCookie = new URL(config.PUBLIC_URL).protocol === 'https:'
  await app.register(authRoutes, { prefix: '/auth/v1', secureCookie })
  await app.register(sessionRoutes, { prefix: '/auth/v1/sessions' })
  await app.register(mfaRoutes, { prefix: '/auth/v1/mfa' })
  await app.register(oauthRoutes, {
    prefix: '/auth/v1/oauth',
    config,
    secureCookie,
    allowInsecureIssuers: options.allowInsecureOAuthIssuers === true,
    endpointOverrides: options.oauthEndpointOverrides,
  })
  await app.register(wellKnownRoutes, { prefix: '/.well-known' })
  await app.register(internalRoutes, { prefix: '/internal/v1', config })
  return app
}
