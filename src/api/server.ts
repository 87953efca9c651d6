import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { bearerAuth } from './auth.js'
import type { ApiDeps } from './deps.js'
import { registerDeviceRoutes } from './devices.js'
import { registerCommandRoutes } from './commands.js'
import { registerRoutingRoutes } from './routing.js'
import { registerAnalyticsRoutes } from './analytics.js'
import { registerStreamRoutes } from './streams.js'
import { registerConsoleRoutes } from './ui.js'
import { registerClusterRoutes } from './cluster.js'
import { clientErrorHandler, frameworkErrorHandler, registerErrorHandlers } from './errors.js'
import { registerHealthRoutes } from './health.js'
import { registerRequestObservers } from './http-metrics.js'

export type { ApiDeps, CommandsApi, DeviceChange, LiveConnection, ReadinessReport } from './deps.js'

const DEFAULT_BODY_LIMIT = 64 * 1024
/**
 * Ids may be long and percent-encoded (128 chars, each up to 3 when encoded); the router's
 * default of 100 would answer for a valid id before its route runs. Longer parameters are
 * answered by frameworkErrorHandler.
 */
const MAX_PARAM_LENGTH = 512

/**
 * Build the HTTP API without listening: the composition root listens on `app.server` and routes
 * its WebSocket upgrades (MQTT over WebSocket, the live tail) through broker/upgrade-router.ts,
 * so no @fastify/websocket here, and upgrade requests never reach Fastify's router or its 404.
 *
 * Routes: /healthz, /readyz, /metrics (no auth) and /api/... (bearer admin token).
 */
export async function createApiServer(deps: ApiDeps): Promise<FastifyInstance> {
  // Typed as Fastify's logger interface so the instance is the plain FastifyInstance that route
  // modules take (a pino Logger type parameter would make every signature carry it).
  const loggerInstance: FastifyBaseLogger = deps.logger.child({ component: 'api' })
  const app = Fastify({
    loggerInstance,
    // Fastify's own per-request lines are at info and would carry the request object; ours
    // (http-metrics.ts) are at debug and list chosen fields only.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: frameworkErrorHandler(MAX_PARAM_LENGTH),
    clientErrorHandler,
  })

  // Every body the API takes is JSON. Fastify also parses text/plain as a string, which would
  // reach the schemas as "expected object, received string"; without that parser a text body
  // gets the same clear "send Content-Type: application/json" as any other type (errors.ts).
  app.removeContentTypeParser('text/plain')
  registerErrorHandlers(app)
  registerRequestObservers(app, deps.metrics.registry)
  registerHealthRoutes(app, deps)
  registerConsoleRoutes(app)
  await app.register(
    async (api) => {
      api.addHook('onRequest', bearerAuth(deps.adminToken))
      registerDeviceRoutes(api, deps)
      if (deps.commands) registerCommandRoutes(api, deps.commands, deps.maxJsonDepth)
      if (deps.routing) registerRoutingRoutes(api, deps.routing)
      if (deps.analytics) registerAnalyticsRoutes(api, deps.analytics)
      if (deps.cluster) registerClusterRoutes(api, deps.cluster)
      if (deps.streams) registerStreamRoutes(api, deps.streams)
    },
    { prefix: '/api' },
  )
  await app.ready()
  return app
}
