import {
  commonConfigShape,
  httpUrlEnv,
  mongoUrlEnv,
  optionalEnv,
  parseConfig,
  portEnv,
  positiveIntEnv,
  redisUrlEnv,
} from '@platform/service-kit'
import { z } from 'zod'

const ConfigSchema = z.object({
  ...commonConfigShape,
  GATEWAY_PORT: portEnv(8080),
  PUBLIC_URL: optionalEnv(httpUrlEnv),
  MONGO_URL: mongoUrlEnv,
  REDIS_URL: redisUrlEnv,
  AUTH_SERVICE_URL: optionalEnv(httpUrlEnv),
  WORKSPACE_SERVICE_URL: optionalEnv(httpUrlEnv),
  CODE_RUNTIME_URL: optionalEnv(httpUrlEnv),
  /** How long an upstream may take to start answering before the gateway gives up (ms). */
  UPSTREAM_TIMEOUT_MS: positiveIntEnv(30_000),
})

export type GatewayConfig = z.infer<typeof ConfigSchema>

export const loadConfig = (env: NodeJS.ProcessEnv): GatewayConfig => parseConfig(ConfigSchema, env)
