import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http'
import type { ErrorResponse, ServiceErrorPrefix } from '@platform/shared-types'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify'
import {
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod'
import type { DestinationStream } from 'pino'
import { loggerOptions, requestIdFor } from './logger.js'
import { connectionClosePlugin } from './plugins/connection-close.js'
import { type ErrorBody, errorHandlerPlugin } from './plugins/error-handler.js'
import { healthPlugin } from './plugins/health.js'
import { metricsPlugin } from './plugins/metrics.js'

export interface ServiceAppOptions {
  /** The service's name, as in logs and metrics (`api-gateway`). */
  service: string
  /** The prefix of the service's error codes. */
  errorPrefix: ServiceErrorPrefix
  logLevel: string
  logPretty: boolean
  logDestination?: DestinationStream | undefined
  /** Whether X-Forwarded-For is trusted, and from which hops (fastify's `trustProxy`). */
  trustProxy?: FastifyServerOptions['trustProxy']
  bodyLimit?: number
  /** How error bodies are dressed (`ErrorHandlerOptions.shape`); the API.md §1 shape otherwise. */
  errorShape?: (body: ErrorBody) => unknown
}

/** A Fastify instance whose routes are typed from their zod schemas. */
export type ServiceApp = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  ZodTypeProvider
>

/**
 * The base every service's `buildApp` starts from: pino logging with redaction and a request id
 * that follows the request, zod validation and serialization, the one error shape, /healthz,
 * /readyz and /metrics, and a close that waits only for requests in flight. It never listens.
 */
export async function createServiceApp(options: ServiceAppOptions): Promise<ServiceApp> {
  const app = Fastify({
    logger: loggerOptions({
      service: options.service,
      level: options.logLevel,
      pretty: options.logPretty,
      destination: options.logDestination,
    }),
    genReqId: requestIdFor,
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
    trustProxy: options.trustProxy ?? false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    return503OnClosing: true,
    // The router refuses a malformed percent-encoding (400) or an over-long path parameter (414)
    // before any hook or error handler runs; without this they leave in Fastify's own shape,
    // with its code and the whole path echoed.
    frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      const statusCode = typeof error.statusCode === 'number' ? error.statusCode : 500
      const [suffix, message] =
        statusCode >= 500
          ? ['INTERNAL', 'Internal Server Error']
          : statusCode === 414
            ? ['REQUEST_ERROR', 'A path parameter is too long']
            : ['BAD_REQUEST', 'The URL is not valid']
      const body: ErrorResponse = {
        statusCode,
        code: `${options.errorPrefix}_${suffix}`,
        error: STATUS_CODES[statusCode] ?? 'Error',
        message,
      }
      return reply.code(statusCode).send(options.errorShape?.(body) ?? body)
    },
  }).withTypeProvider<ZodTypeProvider>()

  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  await app.register(connectionClosePlugin)
  await app.register(errorHandlerPlugin, {
    prefix: options.errorPrefix,
    ...(options.errorShape === undefined ? {} : { shape: options.errorShape }),
  })
  await app.register(healthPlugin, { prefix: options.errorPrefix })
  await app.register(metricsPlugin, { service: options.service })
  return app
}
