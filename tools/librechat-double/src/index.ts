export { startLibreChatDouble } from './double.js'
export { NO_PARENT } from './generation.js'
export { isBrowserUserAgent } from './http-helpers.js'
export type {
  AbortRecord,
  CustomEndpointConfig,
  LibreChatDouble,
  LibreChatDoubleOptions,
  LibreChatVersion,
  McpServerConfig,
  ModelSpecConfig,
  RecordedRequest,
  StreamStats,
  Violation,
} from './types.js'
