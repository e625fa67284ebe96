import type { FastifyRequest } from 'fastify'
import type { AuthUser } from './auth.js'
import { expressClientIp } from './http-helpers.js'
import type { JobRegistry } from './jobs.js'
import type { McpConnector } from './mcp.js'
import type { Store } from './store.js'
import type {
  AbortRecord,
  CustomEndpointConfig,
  LibreChatVersion,
  ModelSpecConfig,
  Violation,
} from './types.js'

/** Everything the routes share. */
export interface DoubleContext {
  version: LibreChatVersion
  endpoints: readonly CustomEndpointConfig[]
  modelSpecs: readonly ModelSpecConfig[]
  balanceEnabled: boolean
  /** JWT_SECRET as key bytes. */
  jwtKey: Uint8Array
  store: Store
  registry: JobRegistry
  mcp: McpConnector
  violations: Violation[]
  aborts: AbortRecord[]
  /** Turns in flight (awaited on close so nothing writes to a closed database). */
  turns: Set<Promise<void>>
  /** Active turns per user, for LibreChat's per-user concurrency limit. */
  activeTurns: Map<string, number>
  authenticatedUsers: WeakMap<FastifyRequest, AuthUser>
  serverUrl(): string
}

/** The user the authentication hook attached; routes behind it always have one. */
export function requestUser(context: DoubleContext, request: FastifyRequest): AuthUser {
  const user = context.authenticatedUsers.get(request)
  if (!user) throw new Error(`no authenticated user on ${request.method} ${request.url}`)
  return user
}

export const requestIp = (request: FastifyRequest): string =>
  expressClientIp(request.headers['x-forwarded-for'], request.socket.remoteAddress)
