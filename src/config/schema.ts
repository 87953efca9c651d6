import { z } from 'zod'
import { endpointSchema, routeSchema } from '../routing/definitions.js'

/**
 * The one configuration schema. Every default lives here; config/default.yaml mirrors it with
 * comments for operators. Keys are grouped by component.
 */
const port = z.number().int().min(0).max(65535)
const positiveInt = z.number().int().positive()

const mqttSchema = z.strictObject({
  /** Address the MQTT TCP listener binds to. */
  host: z.string().min(1).default('127.0.0.1'),
  /** MQTT over TCP port; 0 picks a free port (tests). */
  port: port.default(1883),
  /**
   * Seconds a new connection may take to finish its TLS handshake and send CONNECT. Short: a
   * connection that has not authenticated holds a file descriptor and counts against
   * limits.maxPendingConnections.
   */
  connectTimeoutSeconds: positiveInt.default(10),
  /**
   * MQTT over TLS (what the Azure SDK's `Mqtt` transport dials: mqtts://host:8883). Empty
   * certFile/keyFile = `<dataDir>/certs/server.crt` and `server.key` (`streamgate certs init`).
   */
  tls: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** Empty = the same address as mqtt.host. */
      host: z.string().default(''),
      port: port.default(8883),
      /** PEM server certificate (chain) and key; empty = the `certs init` files in the data dir. */
      certFile: z.string().default(''),
      keyFile: z.string().default(''),
      /** Extra PEM CAs sent to devices as acceptable client-certificate issuers (X.509 devices). */
      caFile: z.string().default(''),
      minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    })
    .prefault({}),
})

const httpSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  /** HTTP API + MQTT over WebSocket (/mqtt and /$iothub/websocket). */
  port: port.default(8080),
  /**
   * MQTT over secure WebSocket on its own HTTPS port (the SDK's `MqttWs` transport always dials
   * wss://host:443/$iothub/websocket). Uses the certificate of mqtt.tls.
   */
  wss: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** Empty = the same address as http.host. */
      host: z.string().default(''),
      port: port.default(443),
    })
    .prefault({}),
  /** Bytes a live-tail WebSocket reader may fall behind before the tail pauses reading. */
  tailMaxBufferedBytes: positiveInt.default(1024 * 1024),
  /**
   * HTTP connections (API, health, metrics, WebSocket requests not yet upgraded) held at once;
   * more are closed at accept. Kept apart from limits.maxConnections, so /healthz and the API stay
   * reachable while device connections fill theirs.
   */
  maxConnections: positiveInt.default(128),
  /** Seconds an HTTP client may take to send its request headers. */
  headersTimeoutSeconds: positiveInt.default(10),
  /** Nesting levels of a JSON payload the API passes on to a device (C2D message, method call). */
  maxJsonDepth: z.number().int().min(1).max(1000).default(64),
})

const authSchema = z.strictObject({
  /**
   * Seconds of clock skew tolerated when checking SAS token expiry; a live connection is closed
   * this long after its token expires.
   */
  clockSkewSeconds: z.number().int().min(0).max(3600).default(30),
  /**
   * Failed CONNECTs from one source address within the window after which that address's password
   * checks are served after everyone else's. Nobody is refused for it.
   */
  maxFailuresPerAddress: positiveInt.default(20),
  /**
   * Failed password CONNECTs of one source address at one device within the window after which that
   * address's password attempts at that device are refused unchecked (CONNACK 3). Other addresses
   * and other devices are not affected; SAS tokens and certificates are always checked.
   */
  maxFailuresPerDevice: positiveInt.default(10),
  /** Window of the failed-attempt counters, in seconds. */
  failureWindowSeconds: positiveInt.default(60),
  /** Password checks (scrypt, ~50 ms of CPU each) running at once. */
  maxConcurrentHashes: z.number().int().min(1).max(64).default(2),
  /** Password checks waiting for a slot, across all addresses; more are refused (CONNACK 3). */
  maxQueuedHashes: positiveInt.default(64),
  /** Password checks waiting for a slot from one source address; more are refused (CONNACK 3). */
  maxQueuedHashesPerAddress: positiveInt.default(8),
  /** Intermediate CA certificates followed from an x509-ca device certificate to a registered CA. */
  x509MaxIntermediates: z.number().int().min(0).max(10).default(4),
})

const embeddedSchema = z.strictObject({
  /**
   * SQLite `synchronous` mode. NORMAL (default) survives a killed gateway process (WAL) but may
   * lose the last commits on power loss; FULL also survives power loss at roughly half the
   * commit throughput (bench/ingest --synchronous FULL shows the cost).
   */
  synchronous: z.enum(['NORMAL', 'FULL']).default('NORMAL'),
  /** Most records written in one group commit. */
  maxBatchRecords: positiveInt.default(2000),
  /** How long a record may wait for companions before a commit, in ms (0 = next tick). */
  lingerMs: z.number().int().min(0).max(1000).default(0),
  /** Records older than this are deleted (hours; 0 = keep by age forever). */
  retentionHours: z.number().min(0).default(168),
  /** Per-partition size cap in MiB (0 = unlimited); oldest records go first. */
  retentionMaxMiBPerPartition: z.number().min(0).default(1024),
  /** How often retention runs, in seconds. */
  retentionIntervalSeconds: positiveInt.default(60),
  /** How often a consumer with nothing to read polls for new records, in ms. */
  pollIntervalMs: positiveInt.default(100),
  /**
   * How long a commit waits for another process's write lock (a CLI committing group offsets)
   * before the append fails and is retried. SQLite waits synchronously, so keep it short.
   */
  busyTimeoutMs: z.number().int().min(0).max(10_000).default(1000),
  /**
   * Where SQLite commits run. auto (default): on the event loop while the load is light (no hop
   * between threads: the lowest PUBACK latency), on a writer thread of their own above 20,000
   * records/s (the event loop then only speaks MQTT and the second core writes), back below
   * 10,000/s for a second. true: always on the thread; false: always on the event loop (one core).
   */
  writerThread: z.union([z.boolean(), z.literal('auto')]).default('auto'),
  /**
   * Copy WAL pages into the database on a thread of its own (a PASSIVE checkpoint every 10 ms)
   * rather than in the commit that crosses SQLite's threshold, which held PUBACKs for milliseconds.
   */
  checkpointThread: z.boolean().default(true),
})

/** `host:port` list; the env form is one comma-separated string. */
const brokerList = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((b) => b.trim()).filter((b) => b !== '') : v),
  z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'a broker is host:port')).min(1),
)

const kafkaSchema = z.strictObject({
  /** Bootstrap brokers, `host:port`; env STREAMGATE_KAFKA_BROKERS=host:port,host:port. */
  brokers: brokerList.default(['127.0.0.1:9092']),
  clientId: z.string().min(1).default('streamgate'),
  /**
   * Replication factor of topics the gateway creates; 0 = the broker's default.replication.factor.
   * Existing topics are checked against it (when not 0) and never changed.
   */
  replicationFactor: z.number().int().min(0).max(32).default(0),
  ssl: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** PEM files; empty = the system trust store and no client certificate. */
      caFile: z.string().default(''),
      certFile: z.string().default(''),
      keyFile: z.string().default(''),
      rejectUnauthorized: z.boolean().default(true),
    })
    .prefault({}),
  sasl: z
    .strictObject({
      mechanism: z.enum(['none', 'plain', 'scram-sha-256', 'scram-sha-512']).default('none'),
      username: z.string().default(''),
      /** Never logged; prefer env STREAMGATE_KAFKA_SASL_PASSWORD over a file. */
      password: z.string().default(''),
    })
    .prefault({}),
  /** TCP connect timeout per broker, in ms. */
  connectionTimeoutMs: positiveInt.default(3000),
  /** Timeout of one Kafka request, in ms. */
  requestTimeoutMs: positiveInt.default(10_000),
  /**
   * A produce request unanswered this long marks the stream not ready (/readyz says why). The
   * request is not abandoned: it is sent again as it was until Kafka answers, so a hung broker that
   * comes back stores each record once (stream/kafka/appender.ts). Once shutdown has begun, the
   * longest the gateway waits for that answer before it gives the request up (unacknowledged).
   */
  appendTimeoutMs: positiveInt.default(15_000),
  /** Most records sent in one produce request (appends queued meanwhile are batched together). */
  maxBatchRecords: positiveInt.default(10_000),
  /** How long appended records wait for companions before a produce request, in ms (0 = next tick). */
  lingerMs: z.number().int().min(0).max(1000).default(0),
  /** Pause between attempts to connect and provision topics while the cluster is unreachable, in ms. */
  provisionRetryMs: positiveInt.default(2000),
  /** Consumer group session timeout, in ms (a dead consumer's partitions move after this). */
  sessionTimeoutMs: z.number().int().min(6000).default(10_000),
  /** Longest a consumer's fetch waits for new records, in ms (also bounds Consumer.stop()). */
  fetchMaxWaitMs: positiveInt.default(500),
  /**
   * Encode and send produce requests on a thread of their own (kafkajs's encoding took two thirds
   * of the event loop at saturation), so that the event loop only speaks MQTT. false = produce
   * on the event loop.
   */
  producerThread: z.boolean().default(true),
})

const topicsSchema = z.strictObject({
  telemetry: z.string().min(1).default('telemetry'),
  deviceEvents: z.string().min(1).default('device-events'),
  commands: z.string().min(1).default('commands'),
  commandFeedback: z.string().min(1).default('command-feedback'),
  /** Messages a routing endpoint refused maxAttempts times, with the error (routing/endpoint-worker.ts). */
  deadLetter: z.string().min(1).default('routing-deadletter'),
  /** alert-raised and alert-cleared records of the alert rules (analytics/alert-processor.ts). */
  alerts: z.string().min(1).default('alerts'),
})

const streamSchema = z.strictObject({
  /** `embedded` (SQLite file in dataDir, the default) or `kafka` (stream.kafka.*). */
  backend: z.enum(['embedded', 'kafka']).default('embedded'),
  /** Prefix put before every topic name (e.g. `plant1.` gives `plant1.telemetry`). */
  topicPrefix: z.string().default(''),
  /** Partitions of each topic created by the gateway. */
  partitions: z.number().int().min(1).max(1024).default(8),
  topics: topicsSchema.prefault({}),
  embedded: embeddedSchema.prefault({}),
  kafka: kafkaSchema.prefault({}),
})

const limitsSchema = z.strictObject({
  /** Largest telemetry payload accepted, in bytes (IoT Hub: 256 KiB); larger closes the connection. */
  maxPayloadBytes: positiveInt.default(256 * 1024),
  /**
   * Records accepted from devices but not yet durable, across the gateway. Past it the gateway
   * stops acknowledging and stops reading from device sockets until the stream catches up.
   */
  maxInFlightRecords: positiveInt.default(20000),
  /** Bytes accepted from devices but not yet durable (payloads), across the gateway. */
  maxInFlightBytes: positiveInt.default(64 * 1024 * 1024),
  /**
   * MQTT connections (authenticated or not, all listeners) held at once; more are closed at
   * accept. 0 = as many as the open-file limit allows: the soft RLIMIT_NOFILE minus
   * limits.fdReserve minus http.maxConnections. A larger value is lowered to that, with a warning.
   */
  maxConnections: z.number().int().min(0).default(0),
  /** File descriptors kept free for the stores, the stream client, logs and the process itself. */
  fdReserve: z.number().int().min(16).default(128),
  /**
   * MQTT connections not yet authenticated (TLS handshake, waiting for CONNECT, credentials being
   * checked). When full, the oldest such connection is closed to make room for the new one.
   */
  maxPendingConnections: positiveInt.default(1024),
  /** MQTT connections not yet authenticated from one source address (IPv6: per /64); more are closed at accept. */
  maxPendingConnectionsPerAddress: positiveInt.default(128),
  /** Largest packet before CONNACK (CONNECT and anything sent with it), in bytes. */
  maxConnectPacketBytes: z.number().int().min(512).default(8192),
  /** Packets a client may send before its CONNACK is written (they wait); one more closes it. */
  maxPacketsBeforeConnack: z.number().int().min(1).max(1000).default(8),
  /** Largest SUBSCRIBE or UNSUBSCRIBE packet, in bytes. */
  maxSubscribePacketBytes: z.number().int().min(64).default(8192),
  /**
   * Bytes waiting to be sent to one connection. Past it the gateway stops reading from the device
   * until they drain; past twice that, or not drained within outboundDrainSeconds, it disconnects
   * the device (E_SLOW_CONSUMER).
   */
  maxOutboundBytes: z.number().int().min(64 * 1024).default(2 * 1024 * 1024),
  /** Seconds a device's send buffer may stay over maxOutboundBytes before it is disconnected. */
  outboundDrainSeconds: positiveInt.default(30),
})

const commandsSchema = z.strictObject({
  /** Cloud-to-device messages queued per device; one more is refused (IoT Hub: 50). */
  maxQueueDepth: z.number().int().min(1).max(10_000).default(50),
  /** Default time to live of a cloud-to-device message, in seconds (IoT Hub: 1 h). */
  defaultTtlSeconds: z.number().int().min(60).max(172_800).default(3600),
  /** Longest TTL a sender may ask for, in seconds (IoT Hub: 48 h); the shortest is 60 s. */
  maxTtlSeconds: z.number().int().min(60).max(172_800).default(172_800),
  /** Deliveries of one message before it ends as `rejected` (IoT Hub: 10). */
  maxDeliveryCount: z.number().int().min(1).max(100).default(10),
  /** Largest cloud-to-device payload, in bytes (IoT Hub: 64 KiB). */
  maxMessageBytes: positiveInt.default(64 * 1024),
  /** Consumer group that reads the `commands` stream topic (one per deployment). */
  consumerGroup: z.string().min(1).default('streamgate-commands'),
  /** Largest direct-method request or response payload, in bytes (IoT Hub: 128 KiB). */
  maxMethodPayloadBytes: positiveInt.default(128 * 1024),
  /** Largest desired or reported twin section, in bytes (IoT Hub: 32 KiB). */
  maxTwinSectionBytes: positiveInt.default(32 * 1024),
  /** Nesting levels of objects and arrays below a twin section's root (IoT Hub: 10). */
  maxTwinDepth: z.number().int().min(1).max(64).default(10),
  /** How often expired messages are ended and other gateways' new messages picked up, in ms. */
  expiryCheckIntervalMs: z.number().int().min(50).max(60_000).default(1000),
})

const routingSchema = z.strictObject({
  /** Run the routes of the registry (off: they are kept, and still managed through the API). */
  enabled: z.boolean().default(true),
  /** How often the registry is checked for routes changed by another process (the CLI, another gateway). */
  reloadIntervalMs: z.number().int().min(100).max(300_000).default(5000),
  /** Longest a twin read by a condition or an enrichment is reused: a twin change shows this late at most. */
  twinCacheMs: z.number().int().min(0).max(3_600_000).default(10_000),
  /** Twins held in that cache (the oldest read is dropped first). */
  twinCacheEntries: z.number().int().min(1).max(1_000_000).default(10_000),
  /** Consumer groups of endpoints are named <prefix><endpoint>.<source topic>. */
  consumerGroupPrefix: z.string().min(1).default('streamgate-route.'),
  /** Pause before an endpoint's consumer that stopped on an error (stream down) starts again. */
  restartDelayMs: z.number().int().min(10).max(60_000).default(2000),
  /** Created at start when the registry has no endpoint or route of that name (the registry's copy wins after that). */
  endpoints: z.array(endpointSchema).max(100).default([]),
  routes: z.array(routeSchema).max(100).default([]),
})

const analyticsSchema = z.strictObject({
  /** Run the aggregates and alert rules of the registry (off: they are kept, and still managed through the API). */
  enabled: z.boolean().default(true),
  /** How often the registry is checked for definitions changed by another process (the CLI). */
  reloadIntervalMs: z.number().int().min(100).max(300_000).default(5000),
  /** Source records read per round of one partition. */
  readBatch: z.number().int().min(1).max(10_000).default(1000),
  /** Pause between reads of a partition that is read to its end. */
  pollMs: z.number().int().min(5).max(10_000).default(50),
  /** Closed windows and alert events wait at most this long to be checkpointed and written together. */
  emitIntervalMs: z.number().int().min(0).max(10_000).default(100),
  /** Progress without output is checkpointed this often (a restart reads at most this much again). */
  checkpointIntervalMs: z.number().int().min(10).max(600_000).default(1000),
  /** Pause before a round that failed (stream or registry down) starts again from the checkpoint. */
  retryDelayMs: z.number().int().min(10).max(60_000).default(1000),
})

/** A PostgreSQL URL; the password in it is a secret (never logged: observability/logger.ts). */
const postgresSchema = z.strictObject({
  /** postgres://user:password@host:port/database (env STREAMGATE_POSTGRES_URL). */
  url: z.string().default(''),
  /** Schema that holds streamgate's tables (created when missing): several gateways' stores can share a database. */
  schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier').default('public'),
  /** Connections this process keeps open to PostgreSQL at most. */
  poolSize: z.number().int().min(1).max(200).default(10),
  /** A statement running longer is cancelled; the call fails with E_REGISTRY_UNAVAILABLE. */
  statementTimeoutMs: z.number().int().min(100).max(600_000).default(5000),
  /** How long to wait for a connection (from the pool or a new one). */
  connectTimeoutMs: z.number().int().min(100).max(120_000).default(5000),
})

const stateSchema = z.strictObject({
  /**
   * Where the registry, twins, routes, aggregates, cloud-to-device queues and sessions live: SQLite
   * files in the data dir (one gateway), or PostgreSQL (shared by several gateway instances).
   */
  backend: z.enum(['sqlite', 'postgres']).default('sqlite'),
  postgres: postgresSchema.prefault({}),
})

/**
 * Several instances acting as one gateway (state.backend postgres, stream.backend kafka): each
 * registers itself in PostgreSQL and keeps a heartbeat; see docs/scale-out.md.
 */
const clusterSchema = z.strictObject({
  /** This process's id; empty = `<hostname>-<6 random hex>`, new at every start. */
  instanceId: z.string().regex(/^[A-Za-z0-9._-]{0,64}$/, 'up to 64 of A-Z a-z 0-9 . _ -').default(''),
  /** The HTTP address other instances and operators reach this one at; empty = http://<http.host>:<http.port>. */
  advertiseUrl: z.string().default(''),
  /** How often this instance writes its heartbeat and connection count. */
  heartbeatIntervalMs: z.number().int().min(100).max(60_000).default(1000),
  /** An instance whose heartbeat is older is dead: its device ownerships are ignored, its signals dropped. */
  heartbeatTimeoutMs: z.number().int().min(500).max(600_000).default(5000),
  /** Signals (kick, deliver, method, twin) are NOTIFY wake-ups backed by rows; this poll catches up a missed one. */
  signalPollMs: z.number().int().min(50).max(60_000).default(1000),
})

const logSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * Warnings that a client can cause at will (refused publishes, connects and connections) are
   * logged once per this many seconds per error code, with the number left out; metrics count all.
   */
  repeatIntervalSeconds: z.number().int().min(0).max(3600).default(10),
})

export const configSchema = z.strictObject({
  /** Directory of the embedded stream, registry and generated secrets. */
  dataDir: z.string().min(1).default('./data'),
  /** Host name put in connection strings and expected in SAS tokens (`sr`) and user names. */
  hostname: z.string().min(1).default('localhost'),
  /** Bearer token for /api; generated and stored in the data dir at first start when empty. */
  adminToken: z.string().min(16, 'adminToken must be at least 16 characters').optional(),
  mqtt: mqttSchema.prefault({}),
  http: httpSchema.prefault({}),
  auth: authSchema.prefault({}),
  stream: streamSchema.prefault({}),
  limits: limitsSchema.prefault({}),
  commands: commandsSchema.prefault({}),
  routing: routingSchema.prefault({}),
  analytics: analyticsSchema.prefault({}),
  state: stateSchema.prefault({}),
  cluster: clusterSchema.prefault({}),
  log: logSchema.prefault({}),
})

export type GatewayConfig = z.infer<typeof configSchema>
export type ConfigInput = z.input<typeof configSchema>
