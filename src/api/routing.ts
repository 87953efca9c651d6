import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { GatewayError } from '../errors/catalogue.js'
import { nestingExceeds } from '../protocol/json-depth.js'
import { endpointView, type EndpointDefinition, type RouteDefinition } from '../routing/definitions.js'
import { resolveRouteTest, routeTestBody, runRouteTest, type RouteTestResult } from '../routing/route-test.js'
import type { EndpointStatus, RouteStatus, RoutingService } from '../routing/router.js'
import type { TwinDocument } from '../routing/twin-cache.js'
import type { RouteStore } from '../routing/types.js'
import { parseWith } from './errors.js'

/** Routing as the API uses it (handed in by the composition root). */
export interface RoutingApi {
  store: RouteStore
  service: Pick<RoutingService, 'checkEndpoint' | 'checkRoute' | 'reload' | 'status' | 'routeStatus' | 'query' | 'hubName'>
  /** A device's twin as conditions read it (undefined: unknown device). */
  twin(deviceId: string): Promise<TwinDocument | undefined>
  maxJsonDepth: number
}

const nameParams = z.strictObject({ name: z.string().min(1).max(64) })

/**
 * /api/routes and /api/endpoints (IoT Hub's model: named endpoints, routes naming them), behind
 * the /api bearer-token hook. A PUT or DELETE is in force when it answers: the routes are reloaded
 * before the reply. Webhook Authorization headers are never shown (`hasAuthHeader`).
 */
export function registerRoutingRoutes(api: FastifyInstance, routing: RoutingApi): void {
  const { store, service } = routing

  api.get('/routes', async () => {
    const [definitions, status] = await Promise.all([store.load(), service.status()])
    return { routes: definitions.routes.map((r) => routeView(r, service.routeStatus(r.name))), endpoints: endpointsView(definitions.endpoints, status) }
  })

  api.post('/routes/test', async (request): Promise<RouteTestResult> => {
    if (nestingExceeds(request.body, routing.maxJsonDepth)) throw new GatewayError('E_BAD_REQUEST', `request body nests objects or arrays more than ${routing.maxJsonDepth} levels deep (http.maxJsonDepth)`)
    const body = parseWith(routeTestBody, request.body, 'request body')
    const resolved = resolveRouteTest(body, await store.load())
    const query = service.query(resolved.condition)
    const twin = body.twin ?? (await routing.twin(body.message.deviceId))
    return runRouteTest(resolved.body, query, resolved.endpoints, twin, service.hubName)
  })

  api.get('/routes/:name', async (request) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const route = (await store.load()).routes.find((r) => r.name === name)
    if (!route) throw routeNotFound(name)
    return routeView(route, service.routeStatus(name))
  })

  api.put('/routes/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const route = service.checkRoute(withName(request.body, name))
    const { created } = await store.putRoute(route)
    await service.reload()
    return reply.code(created ? 201 : 200).send(routeView(route, service.routeStatus(name)))
  })

  api.delete('/routes/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    await store.removeRoute(name)
    await service.reload()
    return reply.code(204).send()
  })

  api.get('/endpoints', async () => {
    const [definitions, status] = await Promise.all([store.load(), service.status()])
    return { endpoints: endpointsView(definitions.endpoints, status) }
  })

  api.get('/endpoints/:name', async (request) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const [definitions, status] = await Promise.all([store.load(), service.status()])
    const endpoint = definitions.endpoints.find((e) => e.name === name)
    if (!endpoint) throw new GatewayError('E_ENDPOINT_NOT_FOUND', `endpoint "${name}" not found`, { endpoint: name })
    return endpointsView([endpoint], status)[0]
  })

  api.put('/endpoints/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    const endpoint = service.checkEndpoint(withName(request.body, name))
    const { created } = await store.putEndpoint(endpoint)
    await service.reload()
    return reply.code(created ? 201 : 200).send(endpointView(endpoint))
  })

  api.delete('/endpoints/:name', async (request, reply) => {
    const { name } = parseWith(nameParams, request.params, 'path')
    await store.removeEndpoint(name)
    await service.reload()
    return reply.code(204).send()
  })
}

/** The body may leave the name out; when it gives one, it is the one in the path. */
/** The path names the definition; a body naming another is refused rather than silently renamed. */
export function withName(body: unknown, name: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('E_BAD_REQUEST', 'the request body must be a JSON object')
  const given = (body as { name?: unknown }).name
  if (given !== undefined && given !== name) throw new GatewayError('E_BAD_REQUEST', `the body names "${String(given)}", the path "${name}"`, { field: 'name' })
  return { ...body, name }
}

function routeView(route: RouteDefinition, status: RouteStatus): Record<string, unknown> {
  return { ...route, ...status }
}

function endpointsView(endpoints: EndpointDefinition[], status: EndpointStatus[]): Array<Record<string, unknown>> {
  return endpoints.map((endpoint) => {
    const s = status.find((x) => x.name === endpoint.name)
    const { name: _name, type: _type, ...live } = s ?? { health: 'healthy', lastError: null, lag: {}, routes: [], delivered: 0, failedAttempts: 0, deadLettered: 0 }
    return { ...endpointView(endpoint), ...live }
  })
}

function routeNotFound(name: string): GatewayError {
  return new GatewayError('E_ROUTE_NOT_FOUND', `route "${name}" not found`, { route: name })
}
