import type { Database, Statement } from 'better-sqlite3'

/**
 * Prepared statements, each compiled once per connection. better-sqlite3's `prepare` parses and
 * plans the SQL every time it is called: on the connect path (a connection event, its outbox row,
 * the claim and the removal) that was an eighth of the gateway's CPU in a connect storm.
 * The SQL texts are the code's own constants, so the cache stays as small as the code.
 */
const cache = new WeakMap<Database, Map<string, Statement>>()

export function prepared<P extends unknown[] = unknown[], R = unknown>(db: Database, sql: string): Statement<P, R> {
  let statements = cache.get(db)
  if (!statements) cache.set(db, (statements = new Map()))
  let statement = statements.get(sql)
  if (!statement) statements.set(sql, (statement = db.prepare(sql)))
  return statement as unknown as Statement<P, R>
}
