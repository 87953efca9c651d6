/**
 * PostgreSQL migrations of the registry component (src/postgres/migrate.ts): devices with their
 * twins, and the outbox of the `device-events` topic. Append only, as sqlite-schema.ts.
 *
 * The columns follow registry.db (sqlite-schema.ts after its v6) so that both adapters read as
 * one, with three deliberate differences:
 * - device_id is `COLLATE "C"`: byte order, as SQLite's BINARY collation, whatever the
 *   database's default locale (en_US would sort `B` after `a`).
 * - times are TIMESTAMPTZ (millisecond values written by the adapter, so they read back as the
 *   same ISO strings SQLite stores as text).
 * - twin sections and event bodies stay TEXT holding JSON, not JSONB: JSONB reorders keys and
 *   refuses `\u0000` in strings, and a twin or an event must come back as SQLite gives it.
 */
export const REGISTRY_MIGRATIONS: readonly string[] = [
  // v1: registry.db v1..v5 in one step (no PostgreSQL registry predates it).
  `CREATE TABLE devices (
     device_id TEXT COLLATE "C" PRIMARY KEY,
     status TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
     auth_method TEXT NOT NULL CHECK (auth_method IN ('sas', 'password', 'x509-thumbprint', 'x509-ca')),
     primary_key TEXT NOT NULL,
     secondary_key TEXT NOT NULL,
     password_hash TEXT,
     created_at TIMESTAMPTZ NOT NULL,
     updated_at TIMESTAMPTZ NOT NULL,
     last_activity_at TIMESTAMPTZ,
     connection_state TEXT NOT NULL DEFAULT 'disconnected'
       CHECK (connection_state IN ('connected', 'disconnected')),
     connection_state_updated_at TIMESTAMPTZ,
     connection_seq BIGINT NOT NULL DEFAULT 0,
     twin_desired TEXT NOT NULL DEFAULT '{}',
     twin_desired_version INTEGER NOT NULL DEFAULT 1,
     twin_reported TEXT NOT NULL DEFAULT '{}',
     twin_reported_version INTEGER NOT NULL DEFAULT 1,
     twin_tags TEXT NOT NULL DEFAULT '{}',
     twin_tags_version INTEGER NOT NULL DEFAULT 1,
     x509_thumbprint TEXT
   );
   CREATE INDEX devices_connected ON devices (device_id) WHERE connection_state = 'connected';
   -- The outbox: as registry.db's v4. No foreign key (a device's deleted event outlives it). An
   -- identity never reuses an id, and each event takes its id while its transaction holds the
   -- device's row lock, so per device id order is commit order. claimed_until: a writer (one of
   -- several gateways on this schema) holds the row until then, by the database's clock;
   -- -infinity = free.
   CREATE TABLE device_event_outbox (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     device_id TEXT COLLATE "C" NOT NULL,
     body TEXT NOT NULL,
     claimed_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
   );
   CREATE INDEX device_event_outbox_by_device ON device_event_outbox (device_id, id);`,
  // v2: as registry.db's v7, the device's current connection id (DeviceRegistry.recordConnection).
  `ALTER TABLE devices ADD COLUMN connection_id TEXT;`,
]
