import { GatewayError } from '../errors/catalogue.js'
import { migratePostgres } from '../postgres/migrate.js'
import { guardPostgres, type PostgresState } from '../postgres/pool.js'
import { CachedSessionStore, type SessionRows } from './cached-session-store.js'
import { COMMAND_MIGRATIONS } from './postgres-command-schema.js'

/**
 * The SessionStore on PostgreSQL (table `subscriptions` of the `commands` component), shared by
 * every gateway: a device that reconnects to another instance finds its subscriptions there. The
 * broker reads from the cache in front (CachedSessionStore), filled before each CONNACK.
 */
export class PostgresSessionStore extends CachedSessionStore {
  private readonly table: PostgresSessionRows

  constructor(state: PostgresState, onWriteError: (deviceId: string, err: unknown) => void = () => undefined) {
    const rows = new PostgresSessionRows(state)
    super(rows, onWriteError)
    this.table = rows
  }

  async start(): Promise<void> {
    await migratePostgres(this.table.state, 'commands', COMMAND_MIGRATIONS)
    this.table.started = true
  }

  async stop(): Promise<void> {
    await this.flush()
    this.table.started = false
  }
}

class PostgresSessionRows implements SessionRows {
  started = false

  constructor(readonly state: PostgresState) {}

  async load(deviceId: string): Promise<Array<[string, number]>> {
    const { rows } = await this.run(() => this.state.pool.query<{ filter: string; qos: number }>('SELECT filter, qos FROM subscriptions WHERE device_id = $1 ORDER BY filter', [deviceId]))
    return rows.map((r) => [r.filter, r.qos])
  }

  async put(deviceId: string, filter: string, qos: number): Promise<void> {
    await this.run(() => this.state.pool.query('INSERT INTO subscriptions (device_id, filter, qos) VALUES ($1, $2, $3) ON CONFLICT (device_id, filter) DO UPDATE SET qos = excluded.qos', [deviceId, filter, qos]))
  }

  async remove(deviceId: string, filters: readonly string[]): Promise<void> {
    if (filters.length === 0) return
    await this.run(() => this.state.pool.query('DELETE FROM subscriptions WHERE device_id = $1 AND filter = ANY($2::text[])', [deviceId, [...filters]]))
  }

  async clear(deviceId: string): Promise<void> {
    await this.run(() => this.state.pool.query('DELETE FROM subscriptions WHERE device_id = $1', [deviceId]))
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.started) throw new GatewayError('E_SHUTTING_DOWN', 'the session store is closed')
    return guardPostgres(this.state, fn)
  }
}
