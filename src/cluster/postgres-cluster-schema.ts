/**
 * PostgreSQL migrations of the cluster component (src/postgres/migrate.ts): the instance list, the
 * device → instance ownership with its per-device epoch, and the signal rows behind every
 * NOTIFY wake-up. Append only.
 */
export const CLUSTER_MIGRATIONS: readonly string[] = [
  // v1. Times are PostgreSQL's own (now()): liveness never depends on the instances' clocks.
  `CREATE TABLE cluster_instances (
     instance_id TEXT COLLATE "C" PRIMARY KEY,
     advertise_url TEXT NOT NULL,
     stream_backend TEXT NOT NULL,
     started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
     heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
     connections INTEGER NOT NULL DEFAULT 0,
     stopped_at TIMESTAMPTZ
   );
   -- One row per device that ever connected: the epoch only grows, so a late write from an
   -- instance that lost the device (epoch too old) can never take it back. instance_id NULL: the
   -- device is connected nowhere.
   CREATE TABLE device_owners (
     device_id TEXT COLLATE "C" PRIMARY KEY,
     instance_id TEXT COLLATE "C",
     connection_id TEXT,
     epoch BIGINT NOT NULL,
     since TIMESTAMPTZ NOT NULL DEFAULT now()
   );
   CREATE INDEX device_owners_by_instance ON device_owners (instance_id) WHERE instance_id IS NOT NULL;
   -- A signal for one instance; NOTIFY only says "look". The target deletes what it handles.
   CREATE TABLE cluster_signals (
     id BIGSERIAL PRIMARY KEY,
     instance_id TEXT COLLATE "C" NOT NULL,
     kind TEXT NOT NULL,
     device_id TEXT COLLATE "C",
     body JSONB NOT NULL DEFAULT '{}'::jsonb,
     created_at TIMESTAMPTZ NOT NULL DEFAULT now()
   );
   CREATE INDEX cluster_signals_by_instance ON cluster_signals (instance_id, id);`,
]
