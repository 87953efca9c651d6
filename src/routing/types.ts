/**
 * The RouteStore port: endpoints and routes, kept in the registry's database so that every
 * gateway sharing the registry runs the same routes. SqliteRouteStore and PostgresRouteStore
 * (src/registry/) implement it; one contract suite (test/contract/route-store.contract.ts) runs
 * against every adapter.
 */

import type { EndpointDefinition, RouteDefinition } from './definitions.js'

export type { EndpointDefinition, RouteDefinition, RouteSource, StreamEndpointDefinition, WebhookEndpointDefinition, Enrichment } from './definitions.js'

export interface RoutingDefinitions {
  /** Grows with every change, from this process or another (the router polls it). */
  version: number
  endpoints: EndpointDefinition[]
  routes: RouteDefinition[]
}

export interface RouteStore {
  start(): Promise<void>
  stop(): Promise<void>
  /** Every endpoint and route, by name, with the version they were read at. */
  load(): Promise<RoutingDefinitions>
  /** The change counter alone (one small read). */
  version(): Promise<number>
  /** Create or replace; the definition is checked (checkEndpoint). Resolves whether it was new. */
  putEndpoint(endpoint: EndpointDefinition): Promise<{ created: boolean }>
  /** E_ENDPOINT_NOT_FOUND; E_ENDPOINT_IN_USE while a route names it. */
  removeEndpoint(name: string): Promise<void>
  /** Create or replace; E_ENDPOINT_NOT_FOUND when it names an endpoint that does not exist. */
  putRoute(route: RouteDefinition): Promise<{ created: boolean }>
  /** E_ROUTE_NOT_FOUND. */
  removeRoute(name: string): Promise<void>
}
