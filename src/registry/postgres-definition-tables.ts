import type pg from 'pg'
import { GatewayError } from '../errors/catalogue.js'
import { inTransaction, type PostgresState, type Queryable } from '../postgres/pool.js'

/**
 * What PostgresRouteStore and PostgresAnalyticsStore share: tables of named JSON definitions
 * with one change counter per store. Table names come from the stores' closed sets, never from a
 * caller.
 */

export interface DefinitionRow {
  name: string
  definition: string
}

export type DefinitionTable = 'routing_endpoints' | 'routing_routes' | 'analytics_aggregates' | 'analytics_alert_rules'
export type CounterTable = 'routing_changes' | 'analytics_changes'

export async function definitionRows(client: Queryable, table: DefinitionTable): Promise<DefinitionRow[]> {
  return (await client.query<DefinitionRow>(`SELECT name, definition FROM ${table} ORDER BY name`)).rows
}

export async function definitionExists(client: Queryable, table: DefinitionTable, name: string): Promise<boolean> {
  return (await client.query(`SELECT 1 FROM ${table} WHERE name = $1`, [name])).rowCount !== 0
}

/** Create or replace; true when the row is new. Runs inside changeTransaction, so nothing races the read. */
export async function upsertDefinition(client: Queryable, table: DefinitionTable, name: string, definition: object): Promise<boolean> {
  const existed = await definitionExists(client, table, name)
  await client.query(
    `INSERT INTO ${table} (name, definition, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = EXCLUDED.updated_at`,
    [name, JSON.stringify(definition), new Date()],
  )
  return !existed
}

/** Rows deleted. */
export async function deleteDefinition(client: Queryable, table: DefinitionTable, name: string): Promise<number> {
  return (await client.query(`DELETE FROM ${table} WHERE name = $1`, [name])).rowCount ?? 0
}

export async function readCounter(client: Queryable, table: CounterTable): Promise<number> {
  const { rows } = await client.query<{ counter: string }>(`SELECT counter FROM ${table} WHERE id = 1`)
  return rows[0] ? Number(rows[0].counter) : 0
}

/**
 * A definition change: one transaction that counts itself first. Bumping the counter takes its
 * row lock, so the store's writers (this gateway, others on the schema, the CLI) run one at a time,
 * as SQLite's IMMEDIATE transactions do, and each later statement reads what the previous writer
 * committed (READ COMMITTED takes a snapshot per statement). That is what keeps the in-use checks
 * honest: a route cannot be written naming an endpoint whose removal is committing meanwhile. A
 * refused change rolls its count back with it.
 */
export async function changeTransaction<T>(state: PostgresState, counter: CounterTable, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(state, async (client) => {
    await client.query(`UPDATE ${counter} SET counter = counter + 1 WHERE id = 1`)
    return fn(client)
  })
}

/**
 * A consistent read of several tables: one REPEATABLE READ snapshot, so the counter and the
 * definitions belong together (a change committing halfway through the read is either wholly in
 * it or wholly out, and then the counter says so at the next poll).
 */
export async function snapshotRead<T>(state: PostgresState, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(state, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY')
    return fn(client)
  })
}

export function notStarted(what: string): GatewayError {
  return new GatewayError('E_REGISTRY_UNAVAILABLE', `the ${what} is not started`)
}
