import { existsSync } from 'node:fs'
import { join } from 'node:path'

/** A platform service the launcher knows how to start. */
export interface ServiceDefinition {
  name: string
  /** The variable that holds its port (API.md §9), and the port when it is unset. */
  portVariable: string
  defaultPort: number
  /** The variable through which the other services find it, if they need to. */
  urlVariable?: string
  /** Node flags it runs with (its package's `start` script has the same). */
  nodeFlags?: string[]
  /** Further listeners of the same process (the gateway's egress), each with its variable. */
  extraListeners?: { portVariable: string; defaultPort: number }[]
}

/**
 * Every service of the platform, in start order: the gateway last, once what it proxies to is
 * ready. A service joins `npm start` when its `services/<name>/src/server.ts` exists.
 */
export const SERVICES: ServiceDefinition[] = [
  {
    name: 'auth-service',
    portVariable: 'AUTH_SERVICE_PORT',
    defaultPort: 4001,
    urlVariable: 'AUTH_SERVICE_URL',
  },
  {
    name: 'workspace-service',
    portVariable: 'WORKSPACE_SERVICE_PORT',
    defaultPort: 4002,
    urlVariable: 'WORKSPACE_SERVICE_URL',
  },
  {
    name: 'code-runtime',
    portVariable: 'CODE_RUNTIME_PORT',
    defaultPort: 4003,
    urlVariable: 'CODE_RUNTIME_URL',
  },
  {
    name: 'api-gateway',
    portVariable: 'GATEWAY_PORT',
    defaultPort: 8080,
    // Thousands of idle chat streams: V8's young generation grows to tens of MiB under the
    // garbage opening them makes, and that memory stays committed. 4 MiB semi-spaces keep 2 000
    // open streams under 100 MB (npm run bench:gateway); 1 MiB saved a little more but promoted
    // so much that a steady 1 000 req/s queued for seconds.
    nodeFlags: ['--max-semi-space-size=4'],
    // The egress LibreChat calls for every model and MCP call (API.md §6); not public.
    extraListeners: [{ portVariable: 'GATEWAY_EGRESS_PORT', defaultPort: 8081 }],
  },
]

export const serverEntry = (repoRoot: string, service: ServiceDefinition) =>
  join(repoRoot, 'services', service.name, 'src', 'server.ts')

export const existingServices = (repoRoot: string) =>
  SERVICES.filter((service) => existsSync(serverEntry(repoRoot, service)))
