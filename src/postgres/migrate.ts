import { GatewayError } from '../errors/catalogue.js'
import { inTransaction, type PostgresState } from './pool.js'

/**
 * Versioned migrations for the PostgreSQL adapters. Each component (registry, commands, sessions,
 * cluster, ...) keeps its own ordered list next to its adapter and only ever appends to it; the
 * table `streamgate_migrations` records (component, version) for every migration applied.
 *
 * Safe when several instances start at once: the whole run holds a transaction-level advisory lock
 * on the schema, so the second instance waits, then finds the migrations applied and does nothing.
 * A migration and its record commit together (PostgreSQL's DDL is transactional).
 */
export async function migratePostgres(state: PostgresState, component: string, migrations: readonly string[]): Promise<void> {
  await inTransaction(state, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`streamgate-migrations:${state.schema}`])
    // The schema name is checked (createPostgresState): a plain identifier.
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${state.schema}`)
    await client.query(
      `CREATE TABLE IF NOT EXISTS streamgate_migrations (
         component TEXT NOT NULL,
         version INTEGER NOT NULL,
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
         PRIMARY KEY (component, version))`,
    )
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM streamgate_migrations WHERE component = $1', [component])
    const current = rows[0]?.v ?? 0
    if (current > migrations.length) {
      throw new GatewayError(
        'E_REGISTRY_UNAVAILABLE',
        `PostgreSQL ${state.where} schema ${state.schema}: ${component} is at version ${current}, newer than this build knows (${migrations.length}); upgrade streamgate`,
        { component, schemaVersion: current },
      )
    }
    for (let version = current; version < migrations.length; version++) {
      await client.query(migrations[version]!)
      await client.query('INSERT INTO streamgate_migrations (component, version) VALUES ($1, $2)', [component, version + 1])
    }
  })
}

/** The version of `component` applied in the schema (0 when none). */
export async function appliedVersion(state: PostgresState, component: string): Promise<number> {
  const exists = await state.pool.query<{ t: string | null }>("SELECT to_regclass('streamgate_migrations')::text AS t")
  if (!exists.rows[0]?.t) return 0
  const { rows } = await state.pool.query<{ v: number | null }>('SELECT max(version) AS v FROM streamgate_migrations WHERE component = $1', [component])
  return rows[0]?.v ?? 0
}
