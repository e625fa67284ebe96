export { cacheRoot } from './cache.js'
export { findFreePort, isPortOpen, portEverOpened } from './free-port.js'
export {
  type Infrastructure,
  type InfrastructureOptions,
  provideInfrastructure,
} from './infrastructure.js'
export { REPLICA_SET_NAME } from './mongod.js'
export { hasExited, stopChild, waitUntilReady } from './processes.js'
export { type Report, reportToStderr } from './report.js'
