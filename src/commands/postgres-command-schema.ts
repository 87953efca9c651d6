/**
 * PostgreSQL migrations of the command channel's state (src/postgres/migrate.ts, component
 * `commands`): the cloud-to-device queues with their source refs and feedback outbox, and the
 * device sessions. Append only. The tables follow commands.db (sqlite-command-schema.ts after its
 * v2) so that both adapters read as one; times are milliseconds since the epoch (BIGINT) as there,
 * except the feedback claims, which run on the database's clock (several gateways claim them).
 */
export const COMMAND_MIGRATIONS: readonly string[] = [
  `CREATE TABLE c2d_messages (
     seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     message_id TEXT NOT NULL,
     device_id TEXT COLLATE "C" NOT NULL,
     payload BYTEA NOT NULL,
     properties TEXT NOT NULL,
     content_type TEXT,
     content_encoding TEXT,
     ack TEXT NOT NULL,
     enqueued_at BIGINT NOT NULL,
     expires_at BIGINT NOT NULL,
     delivery_count INTEGER NOT NULL DEFAULT 0,
     source_ref TEXT
   );
   CREATE INDEX c2d_by_device ON c2d_messages (device_id, seq);
   CREATE INDEX c2d_by_expiry ON c2d_messages (expires_at);
   -- Refs of stream commands taken (stream:<topic>/<partition>/<offset>#<digest>), kept until
   -- keep_until (ms), so that a replayed record is queued once by whichever gateway reads it.
   CREATE TABLE c2d_sources (source_ref TEXT PRIMARY KEY, keep_until BIGINT NOT NULL);
   CREATE INDEX c2d_sources_by_keep ON c2d_sources (keep_until);
   -- Outbox of command-feedback, written in the transaction that ends the message.
   -- claimed_until: a writer (one of several gateways) holds the row until then; -infinity = free.
   CREATE TABLE c2d_feedback (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     body TEXT NOT NULL,
     claimed_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
   );
   CREATE TABLE subscriptions (
     device_id TEXT COLLATE "C" NOT NULL,
     filter TEXT COLLATE "C" NOT NULL,
     qos SMALLINT NOT NULL,
     PRIMARY KEY (device_id, filter)
   );`,
]
