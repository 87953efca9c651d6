/**
 * PostgreSQL migrations of the analytics component (src/postgres/migrate.ts): aggregates, alert
 * rules, their change counter, and their processors' checkpoints; registry.db's v6 tables.
 * Append only. Names are `COLLATE "C"` (byte order in load(), as SQLite); documents stay TEXT
 * holding JSON, as in SQLite: a checkpoint's state is read back whole, never queried into, and
 * JSONB would refuse a `\u0000` that a device put in a string.
 */
export const ANALYTICS_MIGRATIONS: readonly string[] = [
  // v1
  `CREATE TABLE analytics_aggregates (
     name TEXT COLLATE "C" PRIMARY KEY,
     definition TEXT NOT NULL,
     updated_at TIMESTAMPTZ NOT NULL
   );
   CREATE TABLE analytics_alert_rules (
     name TEXT COLLATE "C" PRIMARY KEY,
     definition TEXT NOT NULL,
     updated_at TIMESTAMPTZ NOT NULL
   );
   CREATE TABLE analytics_changes (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     counter BIGINT NOT NULL
   );
   INSERT INTO analytics_changes (id, counter) VALUES (1, 0);
   CREATE TABLE analytics_checkpoints (
     processor TEXT COLLATE "C" NOT NULL,
     partition INTEGER NOT NULL,
     next_offset BIGINT NOT NULL,
     fingerprint TEXT NOT NULL,
     state TEXT NOT NULL,
     pending TEXT NOT NULL,
     marks TEXT NOT NULL,
     updated_at TIMESTAMPTZ NOT NULL,
     PRIMARY KEY (processor, partition)
   );`,
]
