import {
  booleanEnv,
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
import { jsonOrFileEnv, LlmProvidersSchema, McpServersSchema } from './lib/egress-config.js'

/** A Chrome on Linux: what LibreChat's `uaParser` must see on every bridged call (librechat-api.md §8.1). */
const BROWSER_USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'

const ConfigSchema = z
  .object({
    ...commonConfigShape,
    GATEWAY_PORT: portEnv(8080),
    /** The public base URL: the issuer of the platform tokens the gateway accepts. */
    PUBLIC_URL: httpUrlEnv,
    MONGO_URL: mongoUrlEnv,
    REDIS_URL: redisUrlEnv,
    AUTH_SERVICE_URL: httpUrlEnv,
    WORKSPACE_SERVICE_URL: httpUrlEnv,
    CODE_RUNTIME_URL: optionalEnv(httpUrlEnv),
    /** Presented to the auth-service for the service token the gateway's internal calls carry. */
    SERVICE_SECRET_GATEWAY: secretEnv,
    /** LibreChat's address, its MongoDB and its JWT_SECRET: all three or none (API.md §9). */
    LIBRECHAT_URL: optionalEnv(httpUrlEnv),
    LIBRECHAT_MONGO_URL: optionalEnv(mongoUrlEnv),
    LIBRECHAT_JWT_SECRET: optionalEnv(z.string().min(16, 'must be at least 16 characters')),
    /** Lifetime of the LibreChat tokens minted per call; LibreChat cannot revoke them. */
    LIBRECHAT_TOKEN_TTL_SECONDS: positiveIntEnv(300),
    LIBRECHAT_USER_AGENT: stringEnv(BROWSER_USER_AGENT),
    /**
     * How long a chat stream whose client went away before the final frame may wait for a
     * reconnect before the gateway aborts its generation (ARCHITECTURE §6).
     */
    STREAM_ABANDON_GRACE_MS: positiveIntEnv(10_000),
    /** How long a membership (and so a role) read from the workspace-service is reused. */
    MEMBERSHIP_CACHE_MS: positiveIntEnv(10_000),
    /**
     * How long a month's budget standing read from the workspace-service is reused by the check
     * before a chat starts (the egress counts every token; this only spares LibreChat requests
     * that cannot run).
     */
    BUDGET_CHECK_CACHE_MS: positiveIntEnv(5_000),
    /**
     * How long an open stream holds its `maxConcurrentStreams` slot without a renewal: how long a
     * crashed replica's streams keep counting. Renewed every third of it.
     */
    STREAM_SLOT_LEASE_MS: positiveIntEnv(30_000),
    /** How long an upstream may take to start answering before the gateway gives up (ms). */
    UPSTREAM_TIMEOUT_MS: positiveIntEnv(30_000),
    /** The egress listener LibreChat calls for every model and MCP call (API.md §6). */
    GATEWAY_EGRESS_PORT: portEnv(8081),
    /**
     * What LibreChat presents on the egress. Unset: no egress listener (a gateway in front of
     * no LibreChat, or one whose models are not yet wired through the platform).
     */
    EGRESS_SECRET: optionalEnv(secretEnv),
    LLM_PROVIDERS: jsonOrFileEnv(LlmProvidersSchema),
    /**
     * How long a model call's quota reservation counts if the call never settles (a replica
     * crashed mid-call): longer than any generation, short enough to give the budget back.
     */
    EGRESS_RESERVATION_TTL_MS: positiveIntEnv(15 * 60_000),
    /**
     * Whether a member calling back to back is admitted from a small lease reserved ahead,
     * without a round trip to Redis. Off: every call reserves for itself, and the quota view's
     * `reserved` is the sum of the calls running.
     */
    EGRESS_QUOTA_LEASES: booleanEnv(true),
    /**
     * The output a call without any `max_tokens` (from LibreChat or the policy) is reserved
     * for. Such a call can outrun its reservation; a workspace policy cap removes the guess.
     */
    EGRESS_DEFAULT_OUTPUT_TOKENS: positiveIntEnv(4096),
    /**
     * How long a model provider may take to answer a call's head: a whole (non-streamed) answer
     * of a reasoning model comes only when it is done thinking.
     */
    EGRESS_PROVIDER_TIMEOUT_MS: positiveIntEnv(10 * 60_000),
    MCP_SERVERS: jsonOrFileEnv(McpServersSchema),
  })
  .superRefine((config, ctx) => {
    const group = ['LIBRECHAT_URL', 'LIBRECHAT_MONGO_URL', 'LIBRECHAT_JWT_SECRET'] as const
    const set = group.filter((name) => config[name] !== undefined)
    if (set.length > 0 && set.length < group.length) {
      for (const name of group.filter((variable) => config[variable] === undefined))
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: `is required when ${set.join(', ')} ${set.length === 1 ? 'is' : 'are'} set (all three or none)`,
        })
    }
  })

export type GatewayConfig = z.infer<typeof ConfigSchema>

/** LibreChat's settings when the gateway fronts one. */
export interface LibreChatSettings {
  url: string
  mongoUrl: string
  jwtSecret: string
  tokenTtlSeconds: number
  userAgent: string
}

export function libreChatSettingsOf(config: GatewayConfig): LibreChatSettings | undefined {
  const { LIBRECHAT_URL, LIBRECHAT_MONGO_URL, LIBRECHAT_JWT_SECRET } = config
  if (
    LIBRECHAT_URL === undefined ||
    LIBRECHAT_MONGO_URL === undefined ||
    LIBRECHAT_JWT_SECRET === undefined
  )
    return undefined
  return {
    url: LIBRECHAT_URL,
    mongoUrl: LIBRECHAT_MONGO_URL,
    jwtSecret: LIBRECHAT_JWT_SECRET,
    tokenTtlSeconds: config.LIBRECHAT_TOKEN_TTL_SECONDS,
    userAgent: config.LIBRECHAT_USER_AGENT,
  }
}

export const loadConfig = (env: NodeJS.ProcessEnv): GatewayConfig => parseConfig(ConfigSchema, env)
