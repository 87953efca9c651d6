import type { FastifyInstance } from 'fastify'
import type { ApiDeps } from './deps.js'

/**
 * Probe and scrape routes, deliberately outside the bearer-token hook: load balancers,
 * orchestrators and Prometheus call them without credentials. They reveal nothing about devices:
 * readiness check names and details, and aggregate metrics. Bind the HTTP port to a private
 * interface (the default is 127.0.0.1) where that is too much.
 */
export function registerHealthRoutes(app: FastifyInstance, deps: ApiDeps): void {
  // Liveness: answers as long as the process serves HTTP at all.
  app.get('/healthz', async () => ({ status: 'ok' }))

  // Readiness: 503 until every check passes (stream reachable, registry open, listeners up...).
  app.get('/readyz', async (_request, reply) => {
    const report = deps.readiness()
    return reply.code(report.ready ? 200 : 503).send({ status: report.ready ? 'ready' : 'not-ready', checks: report.checks })
  })

  app.get('/metrics', async (_request, reply) => {
    const text = await deps.metrics.registry.metrics()
    return reply.type(deps.metrics.registry.contentType).send(text)
  })
}
