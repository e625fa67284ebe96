import {
  commonConfigShape,
  httpUrlEnv,
  mongoUrlEnv,
  optionalEnv,
  parseConfig,
  portEnv,
  positiveIntEnv,
  redisUrlEnv,
  secretEnv,
  stringEnv,
} from '@platform/service-kit'
import { z } from 'zod'

/** A JSON array variable, parsed and checked by `schema`. */
const jsonEnv = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => {
    if (value === undefined || value === '') return []
    if (typeof value !== 'string') return value
    try {
      return JSON.parse(value)
    } catch {
      return value
    }
  }, schema)

/** An OIDC issuer a deployment allows sign-in with (`OIDC_PROVIDERS`). */
const OidcProviderSchema = z.strictObject({
  /** The name in `/auth/v1/oauth/:provider/…`. */
  name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be lowercase letters, digits or -'),
  /** Shown on the sign-in button. */
  displayName: z.string().min(1).max(64).optional(),
  issuer: z.url({ protocol: /^https?$/ }),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/))
    .default(['openid', 'email', 'profile']),
})
export type OidcProviderConfig = z.infer<typeof OidcProviderSchema>

const RESERVED_PROVIDER_NAMES = new Set(['google', 'github'])

const ConfigSchema = z
  .object({
    ...commonConfigShape,
    AUTH_SERVICE_PORT: portEnv(4001),
    /** The gateway's public base URL: the tokens' issuer, the cookie's scope, OAuth redirects. */
    PUBLIC_URL: httpUrlEnv,
    MONGO_URL: mongoUrlEnv,
    REDIS_URL: redisUrlEnv,
    WORKSPACE_SERVICE_URL: optionalEnv(httpUrlEnv),
    /** Encrypts signing keys and TOTP secrets at rest. */
    AUTH_KEY_ENCRYPTION_KEY: secretEnv,
    SERVICE_SECRET_AUTH: secretEnv,
    SERVICE_SECRET_WORKSPACE: secretEnv,
    SERVICE_SECRET_GATEWAY: secretEnv,
    SERVICE_SECRET_RUNTIME: secretEnv,
    /**
     * Addresses (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` is believed: the
     * gateway's hop. Anyone else's is ignored.
     */
    TRUSTED_PROXIES: stringEnv('127.0.0.1,::1'),
    ACCESS_TOKEN_TTL_SECONDS: positiveIntEnv(15 * 60),
    SERVICE_TOKEN_TTL_SECONDS: positiveIntEnv(5 * 60),
    /** A session ends this long after its last refresh. */
    SESSION_IDLE_TTL_SECONDS: positiveIntEnv(30 * 24 * 3600),
    /** …and at the latest this long after sign-in. */
    SESSION_MAX_TTL_SECONDS: positiveIntEnv(90 * 24 * 3600),
    /**
     * A refresh token used again this soon after its rotation answers with the pair it was
     * rotated into (browser tabs refreshing at once); later reuse ends the session.
     */
    REFRESH_REUSE_GRACE_SECONDS: positiveIntEnv(30),
    /** A signing key is replaced after this long. */
    SIGNING_KEY_ROTATION_SECONDS: positiveIntEnv(30 * 24 * 3600),
    /** Failed sign-ins allowed per account, and per client IP, within the window. */
    LOGIN_MAX_FAILURES_PER_ACCOUNT: positiveIntEnv(10),
    LOGIN_MAX_FAILURES_PER_IP: positiveIntEnv(50),
    LOGIN_FAILURE_WINDOW_SECONDS: positiveIntEnv(15 * 60),
    /** Argon2id cost (RFC 9106 second recommendation: 64 MiB, 3 passes, 4 lanes). */
    ARGON2_MEMORY_KIB: positiveIntEnv(64 * 1024),
    ARGON2_TIME_COST: positiveIntEnv(3),
    ARGON2_PARALLELISM: positiveIntEnv(4),
    GOOGLE_CLIENT_ID: optionalEnv(z.string().min(1)),
    GOOGLE_CLIENT_SECRET: optionalEnv(z.string().min(1)),
    GITHUB_CLIENT_ID: optionalEnv(z.string().min(1)),
    GITHUB_CLIENT_SECRET: optionalEnv(z.string().min(1)),
    /** JSON: `[{"name","issuer","clientId","clientSecret","scopes"?,"displayName"?}]`. */
    OIDC_PROVIDERS: jsonEnv(z.array(OidcProviderSchema).max(20)),
  })
  .superRefine((config, context) => {
    for (const [id, secret] of [
      ['GOOGLE_CLIENT_ID', 'GOOGLE_CLIENT_SECRET'],
      ['GITHUB_CLIENT_ID', 'GITHUB_CLIENT_SECRET'],
    ] as const) {
      if ((config[id] === undefined) !== (config[secret] === undefined))
        context.addIssue({
          code: 'custom',
          path: [id],
          message: `is set without ${secret}, or the other way round`,
        })
    }
    const names = new Set<string>()
    for (const [index, provider] of config.OIDC_PROVIDERS.entries()) {
      if (RESERVED_PROVIDER_NAMES.has(provider.name) || names.has(provider.name))
        context.addIssue({
          code: 'custom',
          path: ['OIDC_PROVIDERS', index, 'name'],
          message: `${provider.name} is taken (google, github and each name once)`,
        })
      names.add(provider.name)
    }
  })

export type AuthConfig = z.infer<typeof ConfigSchema>

export const loadConfig = (env: NodeJS.ProcessEnv): AuthConfig => parseConfig(ConfigSchema, env)
