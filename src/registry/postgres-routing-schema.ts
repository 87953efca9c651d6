/**
 * PostgreSQL migrations of the routing component (src/postgres/migrate.ts): endpoints, the
 * routes that name them, and the change counter the router polls; registry.db's v5 tables.
 * Append only. Names are `COLLATE "C"` so load() lists them in byte order, as SQLite does.
 * Definitions stay TEXT holding JSON: they are checked again on every read (definitions.ts),
 * and nothing queries into them.
 */
export const ROUTING_MIGRATIONS: readonly string[] = [
  // v1
  `CREATE TABLE routing_endpoints (
     name TEXT COLLATE "C" PRIMARY KEY,
     definition TEXT NOT NULL,
     updated_at TIMESTAMPTZ NOT NULL
   );
   CREATE TABLE routing_routes (
     name TEXT COLLATE "C" PRIMARY KEY,
     definition TEXT NOT NULL,
     updated_at TIMESTAMPTZ NOT NULL
   );
   CREATE TABLE routing_changes (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     counter BIGINT NOT NULL
   );
   INSERT INTO routing_changes (id, counter) VALUES (1, 0);`,
]
