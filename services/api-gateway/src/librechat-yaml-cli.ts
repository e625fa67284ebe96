import { ConfigError, httpUrlEnv, optionalEnv, parseConfig } from '@platform/service-kit'
import { z } from 'zod'
import { jsonOrFileEnv, LlmProvidersSchema, McpServersSchema } from './lib/egress-config.js'
import { libreChatYaml } from './lib/librechat-yaml.js'

/** The egress listener as LibreChat reaches it on the platform's network (API.md §6). */
const DEFAULT_EGRESS_URL = 'http://api-gateway:8081'

/** The gateway's own `LLM_PROVIDERS` and `MCP_SERVERS`, read the way the gateway reads them. */
const CliConfigSchema = z.object({
  EGRESS_URL: optionalEnv(httpUrlEnv),
  LLM_PROVIDERS: jsonOrFileEnv(LlmProvidersSchema),
  MCP_SERVERS: jsonOrFileEnv(McpServersSchema),
})

try {
  const config = parseConfig(CliConfigSchema, process.env)
  process.stdout.write(
    libreChatYaml({
      egressUrl: config.EGRESS_URL ?? DEFAULT_EGRESS_URL,
      providers: config.LLM_PROVIDERS,
      mcpServers: config.MCP_SERVERS,
    }),
  )
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  // The message names the bad variables and why, never their values (they hold provider keys).
  process.stderr.write(`${error.message}\n`)
  process.exitCode = 1
}
