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
  { name: 'api-gateway', portVariable: 'GATEWAY_PORT', defaultPort: 8080 },
]

export const serverEntry = (repoRoot: string, service: ServiceDefinition) =>
  join(repoRoot, 'services', service.name, 'src', 'server.ts')

export const existingServices = (repoRoot: string) =>
  SERVICES.filter((service) => existsSync(serverEntry(repoRoot, service)))
