import type { FastifyInstance } from 'fastify'
import { Counter, type Registry } from 'prom-client'

const NAME = 'streamgate_http_requests_total'

/**
 * Counts API requests by method, route template and status, on the gateway's own registry.
 * The route label is the template (`/api/devices/:id`), never the raw URL, so device ids do not
 * become label values; unmatched URLs share one `unmatched` label.
 */
export function requestCounter(registry: Registry): Counter<'method' | 'route' | 'status'> {
  // One counter per registry even when an API server is built twice on the same metrics object.
  const existing = registry.getSingleMetric(NAME)
  if (existing) return existing as Counter<'method' | 'route' | 'status'>
  return new Counter({
    name: NAME,
    help: 'HTTP API requests by method, route template and status code',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  })
}

/** Request log line at debug and the request counter, both after the response is sent. */
export function registerRequestObservers(app: FastifyInstance, registry: Registry): void {
  const counter = requestCounter(registry)
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    counter.inc({ method: request.method, route, status: String(reply.statusCode) })
    // No headers (Authorization lives there) and no body; the URL holds only ids and paging.
    request.log.debug(
      { method: request.method, url: request.url, route, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
      'request',
    )
  })
}
