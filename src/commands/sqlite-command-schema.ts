import BetterSqlite3, { type Database } from 'better-sqlite3'
import { GatewayError } from '../errors/catalogue.js'
import { createPrivateFile } from '../sqlite/private-file.js'

/**
 * Ordered migrations of `<dataDir>/commands.db` (PRAGMA user_version counts the applied ones).
 * Kept apart from the registry and the stream: C2D settles and subscription writes never wait on
 * telemetry group commits.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE subscriptions (
     device_id TEXT NOT NULL,
     filter TEXT NOT NULL,
     qos INTEGER NOT NULL,
     PRIMARY KEY (device_id, filter)
   ) STRICT;
   CREATE TABLE c2d_messages (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     message_id TEXT NOT NULL,
     device_id TEXT NOT NULL,
     payload BLOB NOT NULL,
     properties TEXT NOT NULL,
     content_type TEXT,
     content_encoding TEXT,
     ack TEXT NOT NULL,
     enqueued_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     delivery_count INTEGER NOT NULL DEFAULT 0,
     source_ref TEXT
   ) STRICT;
   CREATE INDEX c2d_by_device ON c2d_messages (device_id, seq);
   CREATE INDEX c2d_by_expiry ON c2d_messages (expires_at);
   -- Source refs of stream commands ever taken, so that a replayed record is not queued twice.
   CREATE TABLE c2d_sources (source_ref TEXT PRIMARY KEY NOT NULL, taken_at INTEGER NOT NULL) STRICT;
   -- Outbox: feedback is recorded in the transaction that ends the message, written to the
   -- stream afterwards, then deleted.
   -- claimed_until: a writer (one of several gateways on this file) holds the row until then.
   CREATE TABLE c2d_feedback (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     body TEXT NOT NULL,
     claimed_until INTEGER NOT NULL DEFAULT 0
   ) STRICT;`,
  // v2: a stream command is known by its position plus a digest of the record (source_ref
  // `stream:<topic>/<partition>/<offset>#<digest>`): a topic created again (Kafka topic deleted and
  // re-created, or stream.db deleted while commands.db stays) reuses offsets, and a new record at
  // an old offset is a new command. Each ref is kept until keep_until (ms: the queued message's
  // expiry, or for a refused command the latest expiry its record could have had), then pruned:
  // a replay after that could only queue an expired message. v1 refs name a position only and can
  // never equal a v2 ref, so they are not carried over.
  `DROP TABLE c2d_sources;
   CREATE TABLE c2d_sources (source_ref TEXT PRIMARY KEY NOT NULL, keep_until INTEGER NOT NULL) STRICT;
   CREATE INDEX c2d_sources_by_keep ON c2d_sources (keep_until);`,
]

export const COMMAND_STORE_SCHEMA_VERSION = MIGRATIONS.length

/** Apply the migrations not applied yet, under BEGIN IMMEDIATE (two processes opening a fresh file apply each once). */
export function migrateCommandStore(db: Database, file: string): void {
  db.transaction(() => {
    const current = db.pragma('user_version', { simple: true }) as number
    if (current > MIGRATIONS.length) throw new GatewayError('E_INTERNAL', `${file} was written by a newer streamgate`)
    for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v]!)
    // PRAGMA takes no bound parameters; the value is our own integer.
    if (current !== MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`)
  }).immediate()
}

/**
 * Open `<dataDir>/commands.db` (created private, migrated). The queue and the sessions each open
 * their own connection to it (SqliteCommandQueue, SqliteSessionStore).
 */
export function openCommandsFile(file: string): Database {
  createPrivateFile(file)
  const db = new BetterSqlite3(file)
  try {
    db.pragma('busy_timeout = 5000')
    db.pragma('journal_mode = WAL')
    // NORMAL in WAL survives a killed gateway, which is the promise for queued messages (README, "Commands to devices").
    db.pragma('synchronous = NORMAL')
    migrateCommandStore(db, file)
    return db
  } catch (err) {
    db.close()
    throw err
  }
}
