import { runServer } from '@platform/service-kit'
import { buildApp, SERVICE_NAME } from './app.js'
import { loadConfig } from './config.js'

await runServer({
  service: SERVICE_NAME,
  loadConfig,
  buildApp: (config) => buildApp(config),
  listenOn: (config) => ({ host: config.LISTEN_HOST, port: config.GATEWAY_PORT }),
  companions: (app, config) =>
    app.egress === undefined
      ? []
      : [{ app: app.egress, host: config.LISTEN_HOST, port: config.GATEWAY_EGRESS_PORT }],
})
