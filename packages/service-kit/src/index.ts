export {
  formatInZone,
  isTimeZone,
  localDateStart,
  offsetMinutes,
  startOfDay,
  startOfMonth,
  startOfNextDay,
  startOfNextMonth,
  zonedDayKey,
  zonedMonthKey,
} from './calendar.js'
export { type ClientContext, clientOf } from './client-context.js'
export {
  booleanEnv,
  ConfigError,
  type ConfigIssue,
  commonConfigShape,
  httpUrlEnv,
  mongoUrlEnv,
  optionalEnv,
  parseConfig,
  portEnv,
  positiveIntEnv,
  redisUrlEnv,
  secretEnv,
  stringEnv,
} from './config.js'
export { createServiceApp, type ServiceApp, type ServiceAppOptions } from './create-app.js'
export {
  createInternalClient,
  createServiceTokenSource,
  type InternalClient,
  type InternalClientOptions,
  InternalRequestRefusedError,
  InternalServiceUnavailableError,
  type ServiceTokenSourceOptions,
} from './internal-client.js'
export { REDACTED_LOG_PATHS } from './logger.js'
export {
  type AuthenticateOptions,
  type AuthenticationErrors,
  authenticatePlugin,
  userOf,
} from './plugins/authenticate.js'
export {
  type ErrorBody,
  type ErrorHandlerOptions,
  errorHandlerPlugin,
  errorResponses,
  type LimitExceeded,
} from './plugins/error-handler.js'
export { healthPlugin, type Readiness, type ReadinessCheck } from './plugins/health.js'
export { metricsPlugin } from './plugins/metrics.js'
export { isDuplicateKeyError, type MongoOptions, mongoPlugin } from './plugins/mongo.js'
export { type RedisOptions, redisClientOptions, redisPlugin } from './plugins/redis.js'
export { type RunServerOptions, runServer } from './run-server.js'
export {
  createRevocationWatch,
  type RevocationWatch,
  type RevocationWatchOptions,
} from './tokens/revocation-watch.js'
export {
  bearerToken,
  createTokenVerifier,
  KeySetUnavailableError,
  RevocationCheckUnavailableError,
  TokenRejectedError,
  type TokenRejection,
  type TokenVerifier,
  type TokenVerifierOptions,
} from './tokens/token-verifier.js'
