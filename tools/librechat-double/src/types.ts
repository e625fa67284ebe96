/** One `endpoints.custom[]` entry of `librechat.yaml` (models listed, `fetch: false`). */
export interface CustomEndpointConfig {
  name: string
  baseURL: string
  apiKey: string
  models: string[]
  /** Sent to the provider; `{{LIBRECHAT_USER_ID}}`, `{{LIBRECHAT_USER_EMAIL}}`, `{{LIBRECHAT_BODY_CONVERSATIONID}}` … resolved. */
  headers?: Record<string, string>
  titleConvo?: boolean
}

/** One `mcpServers` entry of type `streamable-http`. */
export interface McpServerConfig {
  name: string
  url: string
  headers?: Record<string, string>
}

export interface ModelSpecConfig {
  name: string
  label: string
  preset: { endpoint: string; model: string }
  mcpServers?: string[]
}

export type LibreChatVersion = '0.8.7' | '0.8.1'

export interface LibreChatDoubleOptions {
  /** Its own database, like LibreChat's: `users`, `conversations`, `messages`, `agents`, `files`, `balances`. */
  mongoUrl: string
  dbName: string
  /** LibreChat's JWT_SECRET: HS256/384/512 `{id}` access tokens. */
  jwtSecret: string
  /** `0.8.7` (default): POST then GET stream. `0.8.1`: the POST itself is the SSE stream. */
  version?: LibreChatVersion
  endpoints: CustomEndpointConfig[]
  mcpServers?: McpServerConfig[]
  modelSpecs?: ModelSpecConfig[]
  /** How long a finished job stays subscribable (LibreChat's default: dropped at once). */
  keepCompletedStreamsMs?: number
  /**
   * How long a job that finished before anyone subscribed still waits for its first subscriber
   * (default 1000 ms). LibreChat's own start-up (agent load, tools, DB) takes longer than a
   * client's subscribe, so a client subscribing right after the POST always sees the answer; the
   * double answers so fast that it needs this grace to behave the same.
   */
  firstSubscriberGraceMs?: number
  /** `balance.enabled` of `librechat.yaml` (default false: v0.8.7 answers `GET /api/balance` with 204). */
  balanceEnabled?: boolean
}

export interface RecordedRequest {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
}

export interface Violation {
  type: 'non_browser' | 'illegal_model_request'
  userId?: string
  /** `req.ip` as Express computes it with `trust proxy` = 1 hop. */
  ip: string
}

/** What an abort request named (its body), not which job it hit. */
export interface AbortRecord {
  userId: string
  streamId?: string
  conversationId?: string
}

export interface StreamStats {
  /** SSE responses attached right now. */
  subscribers: number
  /** Frames handed to `write()`, over every subscriber and turn of this stream id. */
  framesWritten: number
  bytesWritten: number
  /** Some subscriber's last `write()` returned false and its 'drain' has not come yet. */
  waitingForDrain: boolean
  /** How many times a write returned false and the double waited for 'drain'. */
  drainWaits: number
}

export interface LibreChatDouble {
  url: string
  /** Every request that reached it, in order. */
  requests: RecordedRequest[]
  violations: Violation[]
  aborts: AbortRecord[]
  /** Per stream id (v0.8.1: per conversation id); undefined when no stream had that id. */
  streamStats(streamId: string): StreamStats | undefined
  close(): Promise<void>
}
