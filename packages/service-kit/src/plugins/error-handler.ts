import { STATUS_CODES } from 'node:http'
import createError from '@fastify/error'
import {
  type ErrorDetail,
  type ErrorResponse,
  ErrorResponseSchema,
  type LimitErrorResponse,
  type ServiceErrorPrefix,
} from '@platform/shared-types'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
} from 'fastify-type-provider-zod'

/** An error body as the handler builds it, with a limit refusal's fields when there are any. */
export type ErrorBody = ErrorResponse & Partial<LimitExceeded>

export interface ErrorHandlerOptions {
  prefix: ServiceErrorPrefix
  /**
   * Dresses every error body for an audience that reads another shape (the gateway's egress
   * answers LibreChat in OpenAI's, API.md §6). The status, code and message stay the handler's.
   */
  shape?: (body: ErrorBody) => unknown
}

/** The response schemas of a route's error statuses: the one error shape for each. */
export const errorResponses = (...statusCodes: number[]) =>
  Object.fromEntries(statusCodes.map((statusCode) => [statusCode, ErrorResponseSchema]))

/** What a coded 429 error carries under `limit` so its body says which limit refused it. */
export type LimitExceeded = Pick<
  LimitErrorResponse,
  'limitName' | 'scope' | 'limit' | 'used' | 'resetAt'
>

/** Framework errors whose 400 means "your request body or parameters are wrong". */
const VALIDATION_FRAMEWORK_CODES = new Set([
  'FST_ERR_CTP_INVALID_JSON_BODY',
  'FST_ERR_CTP_EMPTY_JSON_BODY',
  'FST_ERR_VALIDATION',
  'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
])

const SUFFIX_BY_STATUS: Record<number, string> = {
  400: 'BAD_REQUEST',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
}

function dottedPath(context: string | undefined, instancePath: string): string {
  const inner = instancePath.split('/').filter(Boolean).join('.')
  if (context === undefined || context === 'body') return inner || '(body)'
  return inner === '' ? context : `${context}.${inner}`
}

function errorBody(statusCode: number, code: string, message: string, details?: ErrorDetail[]) {
  const body: ErrorResponse = {
    statusCode,
    code,
    error: STATUS_CODES[statusCode] ?? 'Error',
    message,
  }
  if (details !== undefined) body.details = details
  return body
}

/**
 * The service's one error handler and 404 handler: every failure, ours or the framework's,
 * leaves in the API.md §1 shape with the service's code prefix, and no 5xx carries internals.
 */
async function errorHandler(app: FastifyInstance, options: ErrorHandlerOptions) {
  const { prefix } = options
  const shape = options.shape ?? ((body: ErrorBody) => body)
  const ownCode = (code: unknown): code is string =>
    typeof code === 'string' && code.startsWith(`${prefix}_`)
  const RouteNotFound = createError(`${prefix}_NOT_FOUND`, 'Route %s %s not found', 404)

  app.setNotFoundHandler((request) => {
    throw new RouteNotFound(request.method, request.url.split('?')[0])
  })

  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const details = error.validation.map((issue) => ({
        path: dottedPath(error.validationContext, issue.instancePath),
        message: issue.message ?? 'is invalid',
      }))
      request.log.info({ details }, 'request failed validation')
      return reply
        .code(400)
        .send(shape(errorBody(400, `${prefix}_VALIDATION`, 'The request is not valid', details)))
    }
    if (isResponseSerializationError(error)) {
      request.log.error({ err: error }, 'reply did not match its response schema')
      return reply
        .code(500)
        .send(shape(errorBody(500, `${prefix}_INTERNAL`, 'Internal Server Error')))
    }

    const statusCode =
      typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode <= 599
        ? error.statusCode
        : 500
    const isOwn = ownCode(error.code)
    if (statusCode >= 500) {
      // Our own catalogue's 5xx are expected conditions with messages written for clients;
      // anything else is a fault whose message may hold internals.
      if (isOwn) {
        request.log.warn({ code: error.code, statusCode }, error.message)
        return reply.code(statusCode).send(shape(errorBody(statusCode, error.code, error.message)))
      }
      request.log.error({ err: error }, 'request failed')
      return reply
        .code(statusCode)
        .send(shape(errorBody(statusCode, `${prefix}_INTERNAL`, 'Internal Server Error')))
    }
    request.log.info({ code: error.code, statusCode }, error.message)
    if (isOwn) {
      const { details, limit } = error as FastifyError & {
        details?: ErrorDetail[]
        limit?: LimitExceeded
      }
      const body = errorBody(statusCode, error.code, error.message, details)
      if (statusCode === 429 && limit !== undefined) {
        const seconds = Math.ceil((Date.parse(limit.resetAt) - Date.now()) / 1000)
        reply.header('retry-after', String(Math.max(1, seconds)))
        return reply.code(statusCode).send(shape({ ...body, ...limit }))
      }
      return reply.code(statusCode).send(shape(body))
    }
    const suffix = VALIDATION_FRAMEWORK_CODES.has(error.code)
      ? 'VALIDATION'
      : (SUFFIX_BY_STATUS[statusCode] ?? 'REQUEST_ERROR')
    return reply
      .code(statusCode)
      .send(shape(errorBody(statusCode, `${prefix}_${suffix}`, error.message)))
  })
}

export const errorHandlerPlugin = fp(errorHandler, { name: 'error-handler', fastify: '5.x' })
