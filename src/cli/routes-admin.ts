import type { z } from 'zod'
import { parseWith } from '../api/errors.js'
import { openToolStore } from '../app/backends.js'
import { topicNames } from '../config/load.js'
import type { GatewayConfig } from '../config/schema.js'
import { isGatewayError, type ErrorCode } from '../errors/catalogue.js'
import { checkRoute, endpointView, type EndpointInput, type RouteDefinition, type RouteInput, type StreamEndpointDefinition, type WebhookEndpointDefinition } from '../routing/definitions.js'
import { compileQuery } from '../routing/query/index.js'
import { resolveRouteTest, routeTestBody, runRouteTest, type RouteTestResult } from '../routing/route-test.js'
import { checkEndpointFor, type EndpointStatus, type RouteStatus } from '../routing/router.js'
import { twinDocument, type TwinDocument } from '../routing/twin-cache.js'
import type { RouteStore } from '../routing/types.js'
import { apiRequest, runningGateway } from './device-admin.js'

/** A route as listed; the counters come only from a running gateway (since it started). */
export type RouteRow = RouteDefinition & Partial<RouteStatus>

/** An endpoint as shown anywhere: a webhook's Authorization header is replaced by hasAuthHeader. */
export type EndpointShown = StreamEndpointDefinition | (Omit<WebhookEndpointDefinition, 'authHeader'> & { hasAuthHeader: boolean })
/** Health, lag and counters come only from a running gateway. */
export type EndpointRow = EndpointShown & Partial<Omit<EndpointStatus, 'name' | 'type'>>

export interface RoutingListing {
  routes: RouteRow[]
  endpoints: EndpointRow[]
}

export type RouteTestInput = z.input<typeof routeTestBody>

/**
 * What `streamgate routes` and `streamgate endpoints` need, in two implementations like
 * DeviceAdmin: through a running gateway's HTTP API (it validates with its own topic settings and
 * reloads its routes before answering), or on the registry file when no gateway runs on the data
 * dir. Both raise GatewayError with catalogue codes and never hand out a webhook's auth header.
 */
export interface RouteAdmin {
  readonly mode: 'http' | 'local'
  list(): Promise<RoutingListing>
  /** Create or replace. E_ROUTE_QUERY_INVALID, E_ENDPOINT_NOT_FOUND, E_BAD_REQUEST. */
  putRoute(route: RouteInput): Promise<{ created: boolean; route: RouteRow }>
  /** E_ROUTE_NOT_FOUND. */
  removeRoute(name: string): Promise<void>
  /** Create or replace. E_BAD_REQUEST (also for a stream endpoint into the gateway's own topics). */
  putEndpoint(endpoint: EndpointInput): Promise<{ created: boolean; endpoint: EndpointRow }>
  /** E_ENDPOINT_NOT_FOUND, E_ENDPOINT_IN_USE. */
  removeEndpoint(name: string): Promise<void>
  test(body: RouteTestInput): Promise<RouteTestResult>
  close(): Promise<void>
}

export class LocalRouteAdmin implements RouteAdmin {
  readonly mode = 'local'

  constructor(
    private readonly store: RouteStore,
    private readonly config: GatewayConfig,
    private readonly closeStore: () => Promise<void>,
  ) {}

  /** Open the routing tables on state.backend (SQLite: `<dataDir>/registry.db`, created on first use, as the gateway would). */
  static async open(config: GatewayConfig): Promise<LocalRouteAdmin> {
    const { store, close } = await openToolStore(config, (stores) => stores.routes())
    return new LocalRouteAdmin(store, config, close)
  }

  async list(): Promise<RoutingListing> {
    const definitions = await this.store.load()
    return { routes: definitions.routes, endpoints: definitions.endpoints.map(shown) }
  }

  async putRoute(input: RouteInput): Promise<{ created: boolean; route: RouteRow }> {
    const route = checkRoute(input)
    const { created } = await this.store.putRoute(route)
    return { created, route }
  }

  removeRoute(name: string): Promise<void> {
    return this.store.removeRoute(name)
  }

  /** The same check the gateway's API makes, with this config's topic prefix and topic names. */
  async putEndpoint(input: EndpointInput): Promise<{ created: boolean; endpoint: EndpointRow }> {
    const endpoint = checkEndpointFor(input, this.config.stream.topicPrefix, Object.values(topicNames(this.config)))
    const { created } = await this.store.putEndpoint(endpoint)
    return { created, endpoint: shown(endpoint) }
  }

  removeEndpoint(name: string): Promise<void> {
    return this.store.removeEndpoint(name)
  }

  /**
   * As `POST /api/routes/test` does it (api/routing.ts), on the stored definitions; the twin is
   * read from the registry file only when the sample names its device.
   */
  async test(input: RouteTestInput): Promise<RouteTestResult> {
    const body = parseWith(routeTestBody, input, 'route test')
    const resolved = resolveRouteTest(body, await this.store.load())
    const query = compileQuery(resolved.condition)
    const twin = body.twin ?? (input.message?.deviceId === undefined ? undefined : await this.twinOf(body.message.deviceId))
    return runRouteTest(resolved.body, query, resolved.endpoints, twin, this.config.hostname)
  }

  close(): Promise<void> {
    return this.closeStore()
  }

  private async twinOf(deviceId: string): Promise<TwinDocument | undefined> {
    const { store: registry, close } = await openToolStore(this.config, (stores) => stores.registry())
    try {
      return twinDocument(await registry.getTwin(deviceId))
    } finally {
      await close()
    }
  }
}

const REQUEST_TIMEOUT_MS = 15_000

export class HttpRouteAdmin implements RouteAdmin {
  readonly mode = 'http'

  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  list(): Promise<RoutingListing> {
    return this.request<RoutingListing>('GET', '/api/routes')
  }

  async putRoute(input: RouteInput): Promise<{ created: boolean; route: RouteRow }> {
    const created = !(await this.exists(routePath(input.name), 'E_ROUTE_NOT_FOUND'))
    return { created, route: await this.request<RouteRow>('PUT', routePath(input.name), input) }
  }

  async removeRoute(name: string): Promise<void> {
    await this.request<unknown>('DELETE', routePath(name))
  }

  async putEndpoint(input: EndpointInput): Promise<{ created: boolean; endpoint: EndpointRow }> {
    const created = !(await this.exists(endpointPath(input.name), 'E_ENDPOINT_NOT_FOUND'))
    return { created, endpoint: await this.request<EndpointRow>('PUT', endpointPath(input.name), input) }
  }

  async removeEndpoint(name: string): Promise<void> {
    await this.request<unknown>('DELETE', endpointPath(name))
  }

  test(body: RouteTestInput): Promise<RouteTestResult> {
    return this.request<RouteTestResult>('POST', '/api/routes/test', body)
  }

  async close(): Promise<void> {}

  /**
   * The PUT answers 201 or 200, but apiRequest hands back only the body, so "created" is asked
   * first: a concurrent writer can make the word printed wrong, never the stored definition.
   */
  private async exists(path: string, notFound: ErrorCode): Promise<boolean> {
    try {
      await this.request<unknown>('GET', path)
      return true
    } catch (err) {
      if (isGatewayError(err) && err.code === notFound) return false
      throw err
    }
  }

  private request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return apiRequest<T>(this.baseUrl, this.token, method, path, body, REQUEST_TIMEOUT_MS)
  }
}

function routePath(name: string): string {
  return `/api/routes/${encodeURIComponent(name)}`
}

function endpointPath(name: string): string {
  return `/api/endpoints/${encodeURIComponent(name)}`
}

function shown(endpoint: Parameters<typeof endpointView>[0]): EndpointShown {
  return endpointView(endpoint) as EndpointShown
}

/**
 * Through the gateway's API when one serves this data dir (it reloads at once), otherwise on the
 * registry file: a gateway that runs there but does not answer still picks the change up when it
 * next polls the registry (routing.reloadIntervalMs).
 */
export async function openRouteAdmin(config: GatewayConfig, warn: (message: string) => void): Promise<RouteAdmin> {
  const running = await runningGateway(config, warn, 'the gateway reloads its routes when it next polls the registry')
  return running ? new HttpRouteAdmin(running.httpUrl, running.token) : LocalRouteAdmin.open(config)
}
