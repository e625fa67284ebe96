import { runServer } from '@platform/service-kit'
import { buildApp, SERVICE_NAME } from './app.js'
import { loadConfig } from './config.js'

await runServer({
  service: SERVICE_NAME,
  loadConfig,
  buildApp: (config) => buildApp(config),
  listenOn: (config) => ({ host: config.LISTEN_HOST, port: config.WORKSPACE_SERVICE_PORT }),
})
