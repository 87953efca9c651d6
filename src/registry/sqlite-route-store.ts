import type { Database } from 'better-sqlite3'
import { GatewayError } from '../errors/catalogue.js'
import { checkEndpoint, checkRoute, type EndpointDefinition, type RouteDefinition } from '../routing/definitions.js'
import type { RouteStore, RoutingDefinitions } from '../routing/types.js'
import { prepared } from '../sqlite/statements.js'
import { guardRegistryFile, openRegistryDatabase } from './sqlite-schema.js'
import { endpointInUse, endpointNotFound, routeNotFound } from './definition-errors.js'

interface DefinitionRow {
  name: string
  definition: string
}

/**
 * Routes and endpoints in the registry file (tables of migration v5), on a connection of their
 * own. Like the registry, nothing is cached: the gateway, another gateway on the same file and
 * the CLI all write here, and each write is one IMMEDIATE transaction that also bumps
 * routing_changes, so a route never names a missing endpoint and readers see a change at once.
 */
export class SqliteRouteStore implements RouteStore {
  private db: Database | null = null

  constructor(private readonly options: { file: string }) {}

  async start(): Promise<void> {
    this.db ??= openRegistryDatabase(this.options.file, (fn) => guardRegistryFile(this.options.file, fn))
  }

  async stop(): Promise<void> {
    const db = this.db
    this.db = null
    db?.close()
  }

  async load(): Promise<RoutingDefinitions> {
    return this.run((db) =>
      db.transaction(() => ({
        version: version(db),
        // Checked again on the way out: another tool may have written the file.
        endpoints: rows(db, 'routing_endpoints').map((row) => checkEndpoint(JSON.parse(row.definition))),
        routes: rows(db, 'routing_routes').map((row) => checkRoute(JSON.parse(row.definition))),
      }))(),
    )
  }

  async version(): Promise<number> {
    return this.run(version)
  }

  async putEndpoint(endpoint: EndpointDefinition): Promise<{ created: boolean }> {
    const checked = checkEndpoint(endpoint)
    return this.write((db) => ({ created: upsert(db, 'routing_endpoints', checked.name, checked) }))
  }

  async removeEndpoint(name: string): Promise<void> {
    this.write((db) => {
      const user = rows(db, 'routing_routes').find((row) => (JSON.parse(row.definition) as RouteDefinition).endpoints.includes(name))
      if (user) throw endpointInUse(name, user.name)
      if (prepared(db, 'DELETE FROM routing_endpoints WHERE name = ?').run(name).changes === 0) throw endpointNotFound(name)
    })
  }

  async putRoute(route: RouteDefinition): Promise<{ created: boolean }> {
    const checked = checkRoute(route)
    return this.write((db) => {
      for (const endpoint of checked.endpoints) {
        if (!prepared(db, 'SELECT 1 FROM routing_endpoints WHERE name = ?').get(endpoint)) throw endpointNotFound(endpoint, checked.name)
      }
      return { created: upsert(db, 'routing_routes', checked.name, checked) }
    })
  }

  async removeRoute(name: string): Promise<void> {
    this.write((db) => {
      if (prepared(db, 'DELETE FROM routing_routes WHERE name = ?').run(name).changes === 0) {
        throw routeNotFound(name)
      }
    })
  }

  private run<T>(fn: (db: Database) => T): T {
    const db = this.db
    if (!db) throw new GatewayError('E_REGISTRY_UNAVAILABLE', 'the route store is not started')
    return guardRegistryFile(this.options.file, () => fn(db))
  }

  /** One IMMEDIATE transaction that also counts the change. */
  private write<T>(fn: (db: Database) => T): T {
    return this.run((db) =>
      db
        .transaction(() => {
          const result = fn(db)
          prepared(db, 'UPDATE routing_changes SET counter = counter + 1 WHERE id = 1').run()
          return result
        })
        .immediate(),
    )
  }
}

type Table = 'routing_endpoints' | 'routing_routes'

function rows(db: Database, table: Table): DefinitionRow[] {
  return prepared<[], DefinitionRow>(db, `SELECT name, definition FROM ${table} ORDER BY name`).all()
}

function version(db: Database): number {
  return prepared<[], { counter: number }>(db, 'SELECT counter FROM routing_changes WHERE id = 1').get()?.counter ?? 0
}

/** Returns true when the row is new. */
function upsert(db: Database, table: Table, name: string, definition: object): boolean {
  const existed = prepared(db, `SELECT 1 FROM ${table} WHERE name = ?`).get(name) !== undefined
  prepared(db, `INSERT INTO ${table} (name, definition, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at`).run(name, JSON.stringify(definition), new Date().toISOString())
  return !existed
}
