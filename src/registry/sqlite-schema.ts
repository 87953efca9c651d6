import BetterSqlite3, { type Database } from 'better-sqlite3'
import { createPrivateFile } from '../sqlite/private-file.js'
import { sqliteCode } from './sqlite-rows.js'
import { GatewayError } from '../errors/catalogue.js'

/**
 * The registry's SQLite schema as an ordered list of migrations. `PRAGMA user_version` holds the
 * number of migrations applied; a new feature (device twins, modules) appends a migration and never
 * edits an old one, so a registry file written by any earlier build upgrades in place.
 */
const MIGRATIONS: readonly string[] = [
  // v1: device identities, credentials, status and connection state.
  // STRICT tables reject values of the wrong type; the CHECKs keep the enums honest even when
  // another tool writes the file. device_id uses the default BINARY collation, so list order is
  // plain byte order (ids are ASCII), which is what a PostgreSQL backend gets with COLLATE "C".
  `CREATE TABLE devices (
     device_id TEXT PRIMARY KEY NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
     auth_method TEXT NOT NULL CHECK (auth_method IN ('sas', 'password')),
     primary_key TEXT NOT NULL,
     secondary_key TEXT NOT NULL,
     password_hash TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     last_activity_at TEXT,
     connection_state TEXT NOT NULL DEFAULT 'disconnected'
       CHECK (connection_state IN ('connected', 'disconnected')),
     connection_state_updated_at TEXT,
     connection_seq INTEGER NOT NULL DEFAULT 0
   ) STRICT;
   CREATE INDEX devices_connected ON devices (connection_state) WHERE connection_state = 'connected';`,
  // v2: device twins (IoT Hub device twins: desired and reported properties). Both sections start
  // empty at version 1, as in IoT Hub.
  `ALTER TABLE devices ADD COLUMN twin_desired TEXT NOT NULL DEFAULT '{}';
   ALTER TABLE devices ADD COLUMN twin_desired_version INTEGER NOT NULL DEFAULT 1;
   ALTER TABLE devices ADD COLUMN twin_reported TEXT NOT NULL DEFAULT '{}';
   ALTER TABLE devices ADD COLUMN twin_reported_version INTEGER NOT NULL DEFAULT 1;`,
  // v3: X.509 device authentication (`x509-thumbprint`, `x509-ca`). SQLite cannot change a CHECK
  // in place, so the table is rebuilt (the documented 12-step procedure, inside the migration's
  // transaction; no other table refers to devices).
  `CREATE TABLE devices_v3 (
     device_id TEXT PRIMARY KEY NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
     auth_method TEXT NOT NULL CHECK (auth_method IN ('sas', 'password', 'x509-thumbprint', 'x509-ca')),
     primary_key TEXT NOT NULL,
     secondary_key TEXT NOT NULL,
     password_hash TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     last_activity_at TEXT,
     connection_state TEXT NOT NULL DEFAULT 'disconnected'
       CHECK (connection_state IN ('connected', 'disconnected')),
     connection_state_updated_at TEXT,
     connection_seq INTEGER NOT NULL DEFAULT 0,
     twin_desired TEXT NOT NULL DEFAULT '{}',
     twin_desired_version INTEGER NOT NULL DEFAULT 1,
     twin_reported TEXT NOT NULL DEFAULT '{}',
     twin_reported_version INTEGER NOT NULL DEFAULT 1,
     x509_thumbprint TEXT
   ) STRICT;
   INSERT INTO devices_v3 (device_id, status, auth_method, primary_key, secondary_key, password_hash, created_at, updated_at,
       last_activity_at, connection_state, connection_state_updated_at, connection_seq,
       twin_desired, twin_desired_version, twin_reported, twin_reported_version)
     SELECT device_id, status, auth_method, primary_key, secondary_key, password_hash, created_at, updated_at,
       last_activity_at, connection_state, connection_state_updated_at, connection_seq,
       twin_desired, twin_desired_version, twin_reported, twin_reported_version FROM devices;
   DROP TABLE devices;
   ALTER TABLE devices_v3 RENAME TO devices;
   CREATE INDEX devices_connected ON devices (connection_state) WHERE connection_state = 'connected';`,
  // v4: the outbox of the `device-events` topic. Every change that is a device event inserts its
  // row in the change's own transaction; DeviceEventWriter appends rows to the stream, then deletes
  // them. No foreign key: a device's `deleted` event outlives the device. AUTOINCREMENT never
  // reuses an id, so id order is the order of the changes. claimed_until (ms since the epoch):
  // a writer (one of several gateways on this file) holds the row until then; 0 = free.
  `CREATE TABLE device_event_outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device_id TEXT NOT NULL,
     body TEXT NOT NULL,
     claimed_until INTEGER NOT NULL DEFAULT 0
   ) STRICT;
   CREATE INDEX device_event_outbox_by_device ON device_event_outbox (device_id, id);`,
  // v5: twin tags (set by the back end, read by routing) and message routing: endpoints and the
  // routes that name them, shared by every gateway on this registry. Definitions are JSON
  // documents checked by src/routing/definitions.ts; `changes` counts every write so that a
  // gateway notices another process's change with one cheap read.
  `ALTER TABLE devices ADD COLUMN twin_tags TEXT NOT NULL DEFAULT '{}';
   ALTER TABLE devices ADD COLUMN twin_tags_version INTEGER NOT NULL DEFAULT 1;
   CREATE TABLE routing_endpoints (
     name TEXT PRIMARY KEY NOT NULL,
     definition TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE routing_routes (
     name TEXT PRIMARY KEY NOT NULL,
     definition TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE routing_changes (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     counter INTEGER NOT NULL
   ) STRICT;
   INSERT INTO routing_changes (id, counter) VALUES (1, 0);`,
  // v6: windowed aggregates and alert rules (JSON documents checked by src/analytics/definitions.ts),
  // their change counter, and the checkpoints of their processors: per processor and source
  // partition the next offset, the state after it, and outputs decided but maybe not yet written
  // (src/analytics/processor-runner.ts).
  `CREATE TABLE analytics_aggregates (
     name TEXT PRIMARY KEY NOT NULL,
     definition TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE analytics_alert_rules (
     name TEXT PRIMARY KEY NOT NULL,
     definition TEXT NOT NULL,
     updated_at TEXT NOT NULL
   ) STRICT;
   CREATE TABLE analytics_changes (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     counter INTEGER NOT NULL
   ) STRICT;
   INSERT INTO analytics_changes (id, counter) VALUES (1, 0);
   CREATE TABLE analytics_checkpoints (
     processor TEXT NOT NULL,
     partition INTEGER NOT NULL,
     next_offset INTEGER NOT NULL,
     fingerprint TEXT NOT NULL,
     state TEXT NOT NULL,
     pending TEXT NOT NULL,
     marks TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (processor, partition)
   ) STRICT;`,
  // v7: the device's current connection (its id), so that the end of a replaced connection,
  // recorded after the new one began, leaves the state connected (DeviceRegistry.recordConnection).
  `ALTER TABLE devices ADD COLUMN connection_id TEXT;`,
]

export const REGISTRY_SCHEMA_VERSION = MIGRATIONS.length

/**
 * Bring the file up to REGISTRY_SCHEMA_VERSION. Runs under BEGIN IMMEDIATE and re-reads the version
 * inside the transaction, so a gateway and a CLI process opening a fresh file at the same moment
 * cannot both apply a migration (the second waits on busy_timeout, then sees it done).
 */
export function migrate(db: Database, file: string): void {
  const apply = db.transaction(() => {
    const current = db.pragma('user_version', { simple: true }) as number
    if (current > MIGRATIONS.length) {
      throw new GatewayError(
        'E_REGISTRY_UNAVAILABLE',
        `registry ${file} has schema version ${current}, newer than this build knows (${MIGRATIONS.length}); upgrade streamgate`,
        { file, schemaVersion: current },
      )
    }
    for (let version = current; version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]!)
    }
    // PRAGMA does not take bound parameters; the value is our own integer.
    if (current !== MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`)
  })
  apply.immediate()
}

/**
 * Open (creating it owner-only) and migrate the registry file. The device registry and the route
 * store each hold a connection of their own to it; `guard` maps SQLite's failures to the caller's
 * E_REGISTRY_UNAVAILABLE.
 */
export function openRegistryDatabase(file: string, guard: <T>(fn: () => T) => T): Database {
  createPrivateFile(file)
  const db = guard(() => new BetterSqlite3(file))
  try {
    guard(() => {
      // busy_timeout first: switching a fresh file to WAL takes a lock that a gateway or CLI
      // process opening the same file at the same moment may hold.
      db.pragma('busy_timeout = 5000')
      db.pragma('journal_mode = WAL')
      // NORMAL in WAL mode survives a killed process; a power cut may lose the last registry
      // write, which an admin can repeat. The stream's own durability setting is separate.
      db.pragma('synchronous = NORMAL')
      db.pragma('foreign_keys = ON')
      migrate(db, file)
    })
  } catch (err) {
    db.close()
    throw err
  }
  return db
}

/** SQLITE_BUSY after busy_timeout, locks, open/I-O failures, a full disk, a damaged file. */
const UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|CANTOPEN|IOERR|CORRUPT|NOTADB|READONLY|FULL|PERM)/

/**
 * Only failures of the file itself become E_REGISTRY_UNAVAILABLE (a 503 the caller may retry);
 * anything else is a bug and stays an internal error.
 */
export function guardRegistryFile<T>(file: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof GatewayError) throw err
    const code = sqliteCode(err)
    if (code === undefined || !UNAVAILABLE.test(code)) throw err
    throw new GatewayError('E_REGISTRY_UNAVAILABLE', `device registry ${file}: ${(err as Error).message}`, { file, sqliteCode: code }, { cause: err })
  }
}
