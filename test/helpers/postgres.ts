import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { inject } from 'vitest'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'

/**
 * PostgreSQL for tests: the server of the run (test/setup/postgres.ts: POSTGRES_URL, or one
 * started from scripts/postgres-local.sh), a fresh schema per use. Without a server the suites
 * skip with one line saying how to run them; REQUIRE_POSTGRES=1 (CI) turns the skip into a failure.
 */
export function postgresUrl(): string {
  return inject('postgresUrl')
}

export function postgresTestsEnabled(what: string): boolean {
  if (process.env.REQUIRE_POSTGRES === '1') {
    if (!postgresUrl()) throw new Error(`REQUIRE_POSTGRES=1 but no PostgreSQL for ${what}: set POSTGRES_URL or install Debian's postgresql package`)
    return true
  }
  if (postgresUrl()) return true
  const marker = join(tmpdir(), `streamgate-postgres-skip-${process.ppid}`)
  try {
    writeFileSync(marker, what, { flag: 'wx' })
    console.warn(
      `\n!!! POSTGRESQL TESTS SKIPPED (${what} and the other PostgreSQL suites): no POSTGRES_URL and no PostgreSQL binaries to start one. ` +
        'Install Debian\'s postgresql package (apt-get install -y postgresql) or set POSTGRES_URL; REQUIRE_POSTGRES=1 turns this skip into a failure.\n',
    )
  } catch {
    // another worker said it already
  }
  return false
}

export interface TestSchema {
  state: PostgresState
  schema: string
  url: string
  /** Drop the schema with everything in it and end the pool. */
  drop(): Promise<void>
}

/** A pool on a schema of its own (`t_<random>`); the adapters create it at their migrations. */
export function testSchema(options: { poolSize?: number; statementTimeoutMs?: number; schema?: string } = {}): TestSchema {
  const url = postgresUrl()
  const schema = options.schema ?? `t_${randomBytes(6).toString('hex')}`
  const state = createPostgresState({ url, schema, poolSize: options.poolSize ?? 4, statementTimeoutMs: options.statementTimeoutMs ?? 10_000, connectTimeoutMs: 10_000, applicationName: 'streamgate-test' })
  return {
    state,
    schema,
    url,
    async drop() {
      try {
        await state.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      } finally {
        await state.end()
      }
    },
  }
}
