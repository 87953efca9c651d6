import pg from 'pg'
import { GatewayError, type ErrorCode } from '../errors/catalogue.js'

/**
 * One pg (node-postgres) pool per process, shared by every PostgreSQL adapter of the state ports
 * (registry, command queue, sessions, routes, analytics, cluster). The adapters do not own it: the
 * gateway (or a CLI command, or a test) creates it, hands it to each, and ends it last.
 *
 * Every connection of the pool works in `settings.schema` (search_path) with the statement timeout
 * set, so a hung PostgreSQL costs a caller at most that long and an E_REGISTRY_UNAVAILABLE.
 */
export interface PostgresSettings {
  url: string
  schema: string
  poolSize: number
  statementTimeoutMs: number
  connectTimeoutMs: number
  /** Shown in pg_stat_activity (instance id, `streamgate-cli`). */
  applicationName?: string
}

export interface PostgresState {
  readonly pool: pg.Pool
  readonly schema: string
  /** Where it points, without the password: for messages and logs. */
  readonly where: string
  end(): Promise<void>
}

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/

export function createPostgresState(settings: PostgresSettings): PostgresState {
  if (!settings.url) {
    throw new GatewayError('E_CONFIG_INVALID', 'state.backend is postgres but state.postgres.url (env STREAMGATE_POSTGRES_URL) is empty')
  }
  if (!SCHEMA.test(settings.schema)) throw new GatewayError('E_CONFIG_INVALID', `state.postgres.schema "${settings.schema}" is not a lower-case SQL identifier`)
  const where = describeUrl(settings.url)
  const pool = new pg.Pool({
    connectionString: settings.url,
    max: settings.poolSize,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: settings.statementTimeoutMs,
    // Locks wait no longer than a statement may run.
    lock_timeout: settings.statementTimeoutMs,
    application_name: settings.applicationName ?? 'streamgate',
    // The schema is checked above: a plain identifier, no quoting needed.
    options: `-c search_path=${settings.schema}`,
  })
  // An idle connection that PostgreSQL drops (restart, admin kill) emits 'error' on the pool;
  // unhandled, that would end the process. The next checkout opens a fresh connection.
  pool.on('error', () => undefined)
  let ended = false
  return {
    pool,
    schema: settings.schema,
    where,
    async end() {
      if (ended) return
      ended = true
      await pool.end()
    },
  }
}

/** `postgres://user@host:port/db`: the URL without its password (and without query options). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url)
    const user = u.username ? `${decodeURIComponent(u.username)}@` : ''
    return `${u.protocol}//${user}${u.host}${u.pathname}`
  } catch {
    return 'postgres (unparsable URL)'
  }
}

/**
 * SQLSTATE classes and client errors that mean "PostgreSQL cannot serve this now" (a 503 the
 * caller may retry), as opposed to a bug: 08 connection exception, 53 insufficient resources,
 * 57 operator intervention (57014: statement timeout / cancel, 57P01: admin shutdown), 55P03
 * lock not available (lock_timeout), 40 transaction rollback (serialization, deadlock), and
 * socket-level errors of the client.
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57|55P03|40)/
const SOCKET_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])

export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && (UNAVAILABLE_SQLSTATE.test(code) || SOCKET_ERRORS.has(code))) return true
  // pg's own messages for a pool timeout and a connection closed under a query.
  return /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|Cannot use a pool after calling end/i.test(err.message)
}

/** The SQLSTATE of a pg error (`23505` unique violation, ...), if it is one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/**
 * Run `fn`, turning PostgreSQL's availability failures into `code` (E_REGISTRY_UNAVAILABLE unless
 * told otherwise) with a message that names the server but never the password. GatewayErrors
 * pass as they are; anything else is a bug and stays what it is.
 */
export async function guardPostgres<T>(state: PostgresState, fn: () => Promise<T>, code: ErrorCode = 'E_REGISTRY_UNAVAILABLE'): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw mapPostgresError(state, err, code)
  }
}

export function mapPostgresError(state: PostgresState, err: unknown, code: ErrorCode = 'E_REGISTRY_UNAVAILABLE'): unknown {
  if (err instanceof GatewayError || !isUnavailable(err)) return err
  const sqlstate = sqlState(err)
  return new GatewayError(code, `PostgreSQL ${state.where}: ${(err as Error).message}`, { where: state.where, ...(sqlstate ? { sqlState: sqlstate } : {}) }, { cause: err })
}

export type Queryable = pg.Pool | pg.PoolClient

/**
 * One transaction on one pooled connection: BEGIN, `fn`, COMMIT; ROLLBACK on any failure. A
 * connection whose rollback failed too is destroyed rather than returned to the pool.
 */
export async function inTransaction<T>(state: PostgresState, fn: (client: pg.PoolClient) => Promise<T>, code: ErrorCode = 'E_REGISTRY_UNAVAILABLE'): Promise<T> {
  return guardPostgres(state, async () => {
    const client = await state.pool.connect()
    let broken: Error | undefined
    try {
      await client.query('BEGIN')
      const result = await fn(client)
      await client.query('COMMIT')
      return result
    } catch (err) {
      try {
        await client.query('ROLLBACK')
      } catch (rollbackErr) {
        broken = rollbackErr as Error
      }
      throw err
    } finally {
      client.release(broken)
    }
  }, code)
}
