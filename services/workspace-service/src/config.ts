import {
  commonConfigShape,
  httpUrlEnv,
  mongoUrlEnv,
  parseConfig,
  portEnv,
  positiveIntEnv,
  redisUrlEnv,
  secretEnv,
  stringEnv,
} from '@platform/service-kit'
import { z } from 'zod'

const ConfigSchema = z.object({
  ...commonConfigShape,
  WORKSPACE_SERVICE_PORT: portEnv(4002),
  /** The gateway's public base URL: the issuer of the tokens this service accepts. */
  PUBLIC_URL: httpUrlEnv,
  /** Where the signing keys (JWKS) and the user lookups are. */
  AUTH_SERVICE_URL: httpUrlEnv,
  MONGO_URL: mongoUrlEnv,
  REDIS_URL: redisUrlEnv,
  SERVICE_SECRET_WORKSPACE: secretEnv,
  /**
   * Addresses (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` is believed: the
   * gateway's hop. Audit events record the client address it forwards.
   */
  TRUSTED_PROXIES: stringEnv('127.0.0.1,::1'),
  /** A deleted workspace can be restored for this long, then it is purged with its data. */
  WORKSPACE_RETENTION_DAYS: positiveIntEnv(30),
  /** How long an invitation can be accepted. */
  INVITATION_TTL_HOURS: positiveIntEnv(7 * 24),
  /** Audit events are kept this long unless the tenant sets its own retention. */
  AUDIT_RETENTION_DAYS: positiveIntEnv(365),
  /** An export with more rows (usage and audit together) is refused; narrow it with from/to. */
  EXPORT_MAX_ROWS: positiveIntEnv(5_000_000),
  /** How often deleted workspaces past their retention are purged. */
  PURGE_INTERVAL_SECONDS: positiveIntEnv(3600),
})

export type WorkspaceConfig = z.infer<typeof ConfigSchema>

export const loadConfig = (env: NodeJS.ProcessEnv): WorkspaceConfig =>
  parseConfig(ConfigSchema, env)
