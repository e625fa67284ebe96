import { createTokenVerifier, type TokenVerifier } from '@platform/service-kit'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AuthConfig } from '../config.js'
import { type AuditLog, createAuditLog } from '../lib/audit-log.js'
import { createSecretBox, deriveKey } from '../lib/crypto.js'
import { createLoginLimiter, type LoginLimiter } from '../lib/login-limiter.js'
import { createPasswordHasher, type PasswordHasher } from '../lib/passwords.js'
import { createSessionStore, type SessionStore } from '../lib/sessions.js'
import { createSigningKeyStore, type SigningKeyStore } from '../lib/signing-keys.js'
import { createTokenIssuer, type TokenIssuer } from '../lib/token-issuer.js'
import { createTotp, type Totp } from '../lib/totp.js'
import { createUserModels, type UserModels } from '../lib/users.js'
import { createWorkspaceDirectory, type WorkspaceDirectory } from '../lib/workspace-directory.js'

export interface IdentityOptions {
  config: AuthConfig
}

/** Everything the routes work with, built once on the app's MongoDB and Redis clients. */
export interface Identity {
  issuer: string
  models: UserModels
  keys: SigningKeyStore
  tokens: TokenIssuer
  verifier: TokenVerifier
  sessions: SessionStore
  passwords: PasswordHasher
  loginLimiter: LoginLimiter
  totp: Totp
  workspaces: WorkspaceDirectory
  audit: AuditLog
}

const KEY_ROTATION_CHECK_MS = 60_000

/** Decorates `identity`: users, keys, tokens, sessions, MFA, limits and the audit outbox. */
async function identity(app: FastifyInstance, options: IdentityOptions) {
  const { config } = options
  const issuer = config.PUBLIC_URL.replace(/\/+$/, '')
  const secret = config.AUTH_KEY_ENCRYPTION_KEY
  const keys = createSigningKeyStore({
    connection: app.mongo,
    redis: app.redis,
    box: createSecretBox(secret, 'signing-key'),
    rotationSeconds: config.SIGNING_KEY_ROTATION_SECONDS,
    longestTokenSeconds: Math.max(
      config.ACCESS_TOKEN_TTL_SECONDS,
      config.SERVICE_TOKEN_TTL_SECONDS,
    ),
    prePublishSeconds: Math.min(3600, Math.floor(config.SIGNING_KEY_ROTATION_SECONDS / 2)),
  })
  const tokens = createTokenIssuer({
    issuer,
    keys,
    accessTokenSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
    serviceTokenSeconds: config.SERVICE_TOKEN_TTL_SECONDS,
  })
  const ownServiceToken = () => tokens.serviceToken('auth-service')
  const models = createUserModels(app.mongo)
  const value: Identity = {
    issuer,
    models,
    keys,
    tokens,
    // The auth-service trusts its own keys directly, and the same revocation list as everyone.
    verifier: createTokenVerifier({ issuer, keys: keys.verificationKey, redis: app.redis }),
    sessions: createSessionStore({
      connection: app.mongo,
      redis: app.redis,
      box: createSecretBox(secret, 'refresh-grace'),
      idleSeconds: config.SESSION_IDLE_TTL_SECONDS,
      maxSeconds: config.SESSION_MAX_TTL_SECONDS,
      accessTokenSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
      graceSeconds: config.REFRESH_REUSE_GRACE_SECONDS,
    }),
    passwords: await createPasswordHasher({
      memoryKib: config.ARGON2_MEMORY_KIB,
      timeCost: config.ARGON2_TIME_COST,
      parallelism: config.ARGON2_PARALLELISM,
    }),
    loginLimiter: createLoginLimiter({
      redis: app.redis,
      maxPerAccount: config.LOGIN_MAX_FAILURES_PER_ACCOUNT,
      maxPerIp: config.LOGIN_MAX_FAILURES_PER_IP,
      windowSeconds: config.LOGIN_FAILURE_WINDOW_SECONDS,
    }),
    totp: createTotp({
      box: createSecretBox(secret, 'totp-secret'),
      backupCodeKey: deriveKey(secret, 'backup-code'),
      issuerName: new URL(issuer).host,
    }),
    workspaces: createWorkspaceDirectory({
      baseUrl: config.WORKSPACE_SERVICE_URL,
      serviceToken: ownServiceToken,
    }),
    audit: createAuditLog({
      connection: app.mongo,
      log: app.log,
      workspaceServiceUrl: config.WORKSPACE_SERVICE_URL,
      serviceToken: ownServiceToken,
    }),
  }
  // Unique and TTL indexes exist before the first request relies on them.
  await Promise.all(Object.values(app.mongo.models).map((model) => model.init()))
  await keys.current()
  app.decorate('identity', value)

  const rotationTimer = setInterval(() => {
    keys
      .rotateIfDue()
      .then(async (rotated) => {
        if (rotated === null) return
        app.log.info(rotated, 'signing key rotated on schedule')
        await value.audit.record({
          action: 'auth.key.rotated',
          actor: { type: 'service', id: 'auth-service' },
          target: { type: 'signing-key', id: rotated.kid },
          before: { kid: rotated.retiredKid },
          after: { kid: rotated.kid, reason: 'schedule' },
        })
      })
      .catch((error: unknown) => app.log.error({ err: error }, 'scheduled key rotation failed'))
  }, KEY_ROTATION_CHECK_MS)
  rotationTimer.unref()
  value.audit.start()
  app.addHook('onClose', async () => {
    clearInterval(rotationTimer)
    await value.audit.stop()
  })
}

export const identityPlugin = fp(identity, {
  name: 'identity',
  fastify: '5.x',
  dependencies: ['mongo', 'redis'],
})

declare module 'fastify' {
  interface FastifyInstance {
    identity: Identity
  }
}
