import type pg from 'pg'
import { migratePostgres } from '../postgres/migrate.js'
import { guardPostgres, type PostgresState } from '../postgres/pool.js'
import { checkEndpoint, checkRoute, type EndpointDefinition, type RouteDefinition } from '../routing/definitions.js'
import type { RouteStore, RoutingDefinitions } from '../routing/types.js'
import { changeTransaction, definitionExists, definitionRows, deleteDefinition, notStarted, readCounter, snapshotRead, upsertDefinition } from './postgres-definition-tables.js'
import { endpointInUse, endpointNotFound, routeNotFound } from './definition-errors.js'
import { storable } from './postgres-rows.js'
import { ROUTING_MIGRATIONS } from './postgres-routing-schema.js'

/**
 * RouteStore on PostgreSQL: endpoints and routes shared by every gateway on the schema, written
 * as SqliteRouteStore writes them. Nothing is cached; each change is one transaction that bumps
 * routing_changes first (changeTransaction: writers in turn, so a route never names a missing
 * endpoint), and load() reads everything in one snapshot. The pool belongs to the caller.
 */
export class PostgresRouteStore implements RouteStore {
  private readonly state: PostgresState
  private started = false

  constructor(options: { state: PostgresState }) {
    this.state = options.state
  }

  async start(): Promise<void> {
    if (this.started) return
    await migratePostgres(this.state, 'routing', ROUTING_MIGRATIONS)
    this.started = true
  }

  async stop(): Promise<void> {
    this.started = false
  }

  async load(): Promise<RoutingDefinitions> {
    this.assertStarted()
    return snapshotRead(this.state, async (client) => ({
      version: await readCounter(client, 'routing_changes'),
      // Checked again on the way out: another tool may have written the table.
      endpoints: (await definitionRows(client, 'routing_endpoints')).map((row) => checkEndpoint(JSON.parse(row.definition))),
      routes: (await definitionRows(client, 'routing_routes')).map((row) => checkRoute(JSON.parse(row.definition))),
    }))
  }

  async version(): Promise<number> {
    this.assertStarted()
    return guardPostgres(this.state, () => readCounter(this.state.pool, 'routing_changes'))
  }

  async putEndpoint(endpoint: EndpointDefinition): Promise<{ created: boolean }> {
    const checked = checkEndpoint(endpoint)
    return this.write(async (client) => ({ created: await upsertDefinition(client, 'routing_endpoints', checked.name, checked) }))
  }

  async removeEndpoint(name: string): Promise<void> {
    await this.write(async (client) => {
      const user = (await definitionRows(client, 'routing_routes')).find((row) => (JSON.parse(row.definition) as RouteDefinition).endpoints.includes(name))
      if (user) throw endpointInUse(name, user.name)
      if (!storable(name) || (await deleteDefinition(client, 'routing_endpoints', name)) === 0) throw endpointNotFound(name)
    })
  }

  async putRoute(route: RouteDefinition): Promise<{ created: boolean }> {
    const checked = checkRoute(route)
    return this.write(async (client) => {
      for (const endpoint of checked.endpoints) {
        if (!(await definitionExists(client, 'routing_endpoints', endpoint))) throw endpointNotFound(endpoint, checked.name)
      }
      return { created: await upsertDefinition(client, 'routing_routes', checked.name, checked) }
    })
  }

  async removeRoute(name: string): Promise<void> {
    await this.write(async (client) => {
      if (!storable(name) || (await deleteDefinition(client, 'routing_routes', name)) === 0) {
        throw routeNotFound(name)
      }
    })
  }

  private async write<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.assertStarted()
    return changeTransaction(this.state, 'routing_changes', fn)
  }

  private assertStarted(): void {
    if (!this.started) throw notStarted('route store')
  }
}
