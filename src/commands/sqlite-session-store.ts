import type { Database } from 'better-sqlite3'
import { GatewayError } from '../errors/catalogue.js'
import { prepared } from '../sqlite/statements.js'
import { CachedSessionStore, type SessionRows } from './cached-session-store.js'
import { openCommandsFile } from './sqlite-command-schema.js'

/**
 * The SessionStore on `<dataDir>/commands.db` (table `subscriptions`), with its own connection to
 * the file the queue also uses. The broker's synchronous reads come from the cache in front
 * (CachedSessionStore); the statements behind it are synchronous too, run on the device's chain.
 */
export class SqliteSessionStore extends CachedSessionStore {
  private readonly table: SqliteSessionRows

  constructor(file: string, onWriteError: (deviceId: string, err: unknown) => void = () => undefined) {
    const rows = new SqliteSessionRows(file)
    super(rows, onWriteError)
    this.table = rows
  }

  start(): void {
    this.table.open()
  }

  async stop(): Promise<void> {
    await this.flush()
    this.table.close()
  }
}

class SqliteSessionRows implements SessionRows {
  private db: Database | null = null

  constructor(private readonly file: string) {}

  open(): void {
    this.db ??= openCommandsFile(this.file)
  }

  close(): void {
    this.db?.close()
    this.db = null
  }

  async load(deviceId: string): Promise<Array<[string, number]>> {
    return prepared<unknown[], { filter: string; qos: number }>(this.conn(), 'SELECT filter, qos FROM subscriptions WHERE device_id = ? ORDER BY filter')
      .all(deviceId)
      .map((r) => [r.filter, r.qos])
  }

  async put(deviceId: string, filter: string, qos: number): Promise<void> {
    prepared(this.conn(), 'INSERT INTO subscriptions (device_id, filter, qos) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET qos = excluded.qos').run(deviceId, filter, qos)
  }

  async remove(deviceId: string, filters: readonly string[]): Promise<void> {
    const db = this.conn()
    const del = prepared(db, 'DELETE FROM subscriptions WHERE device_id = ? AND filter = ?')
    db.transaction(() => filters.forEach((f) => del.run(deviceId, f)))()
  }

  async clear(deviceId: string): Promise<void> {
    // A read first: a clean-session connect of a device without subscriptions (the common case,
    // once per connect) then takes no write lock and commits nothing.
    const db = this.conn()
    if (!prepared(db, 'SELECT 1 FROM subscriptions WHERE device_id = ? LIMIT 1').get(deviceId)) return
    prepared(db, 'DELETE FROM subscriptions WHERE device_id = ?').run(deviceId)
  }

  private conn(): Database {
    if (!this.db) throw new GatewayError('E_SHUTTING_DOWN', 'the session store is closed')
    return this.db
  }
}
