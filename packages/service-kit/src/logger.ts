import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { DestinationStream, LoggerOptions } from 'pino'

/** Credentials never reach a log line, wherever a request's headers are logged. */
export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'res.headers["set-cookie"]',
]

export interface LoggingOptions {
  service: string
  level: string
  pretty: boolean
  /** Where log lines go instead of stdout (tests read them). */
  destination?: DestinationStream | undefined
}

export function loggerOptions(
  options: LoggingOptions,
): LoggerOptions & { stream?: DestinationStream } {
  const base: LoggerOptions = {
    level: options.level,
    base: { service: options.service },
    redact: { paths: REDACTED_LOG_PATHS, censor: '[Redacted]' },
  }
  if (options.destination !== undefined) return { ...base, stream: options.destination }
  if (options.pretty) {
    return {
      ...base,
      transport: {
        target: 'pino-pretty',
        options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,service' },
      },
    }
  }
  return base
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Keeps an incoming `x-request-id` (the gateway's, so one id follows a request across services)
 * when it is well formed; otherwise makes a new one.
 */
export function requestIdFor(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id']
  return typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : randomUUID()
}
