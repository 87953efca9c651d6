import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client'
import { FastHistogram } from './fast-histogram.js'

/** A gauge read from `source` when scraped, never set on a hot path. */
function scrapedGauge(registry: Registry, name: string, help: string, source: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(source())
    },
  })
}

/**
 * All gateway metrics on one prom-client registry (one per gateway instance, so tests can run
 * several gateways in one process).
 */
export class GatewayMetrics {
  readonly registry = new Registry()

  readonly connections = new Gauge({ name: 'streamgate_mqtt_connections', help: 'Device connections currently open', registers: [this.registry] })
  readonly connects = new Counter({ name: 'streamgate_mqtt_connects_total', help: 'Successful device CONNECTs', registers: [this.registry] })
  readonly authFailures = new Counter({ name: 'streamgate_auth_failures_total', help: 'Refused CONNECTs by error code', labelNames: ['code'], registers: [this.registry] })
  /** Set by the authenticator: password checks holding a slot and waiting for one (auth/hash-gate.ts). */
  passwordCheckStats: () => { running: number; waiting: number } = () => ({ running: 0, waiting: 0 })
  readonly passwordChecksRunning = scrapedGauge(this.registry, 'streamgate_auth_password_checks_running', 'Password checks (scrypt) running now, at most auth.maxConcurrentHashes', () => this.passwordCheckStats().running)
  readonly passwordChecksWaiting = scrapedGauge(this.registry, 'streamgate_auth_password_checks_waiting', 'Password checks waiting for a slot, at most auth.maxQueuedHashes', () => this.passwordCheckStats().waiting)
  readonly passwordChecks = new Counter({ name: 'streamgate_auth_password_checks_total', help: 'Password checks (scrypt) started, including the dummy check for unknown devices', registers: [this.registry] })
  readonly passwordRefusals = new Counter({ name: 'streamgate_auth_password_refusals_total', help: 'Password CONNECTs refused unchecked, by reason: rate-limited (address and device pair), address-queue-full, queue-full', labelNames: ['reason'], registers: [this.registry] })
  readonly passwordWaitSeconds = new Histogram({
    name: 'streamgate_auth_password_wait_seconds',
    help: 'Time a password check waited for a slot before scrypt ran',
    buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly aclDenials = new Counter({ name: 'streamgate_acl_denials_total', help: 'Publishes or subscriptions refused by the per-device ACL (connection closed)', labelNames: ['action', 'code'], registers: [this.registry] })
  readonly protocolErrors = new Counter({ name: 'streamgate_protocol_errors_total', help: 'Connections closed for a protocol error, by code', labelNames: ['code'], registers: [this.registry] })
  /**
   * Counted by the ingest in plain fields, once per message, and read into the counters below
   * when scraped: a prom-client inc() hashes its labels on every call.
   */
  readonly telemetryTally = { qos0: 0, qos1: 0, bytes: 0 }
  private telemetryReported = { qos0: 0, qos1: 0, bytes: 0 }
  readonly telemetryRecords = new Counter({ collect: () => this.syncTelemetry(), name: 'streamgate_telemetry_records_total', help: 'Telemetry records written durably to the stream', labelNames: ['qos'], registers: [this.registry] })
  readonly telemetryBytes = new Counter({ collect: () => this.syncTelemetry(), name: 'streamgate_telemetry_bytes_total', help: 'Telemetry payload bytes written to the stream', registers: [this.registry] })
  /** Set by the ingest's in-flight gate. */
  inFlightStats: () => { records: number; bytes: number } = () => ({ records: 0, bytes: 0 })
  readonly inFlightRecords = scrapedGauge(this.registry, 'streamgate_ingest_in_flight_records', 'Records accepted from devices and not yet durable', () => this.inFlightStats().records)
  readonly inFlightBytes = scrapedGauge(this.registry, 'streamgate_ingest_in_flight_bytes', 'Payload bytes accepted from devices and not yet durable', () => this.inFlightStats().bytes)
  /** Set by the ingest: milliseconds since the oldest in-flight record was accepted. */
  oldestInFlightAgeMs: () => number = () => 0
  readonly oldestInFlightSeconds = scrapedGauge(this.registry, 'streamgate_ingest_oldest_in_flight_seconds', 'Age of the oldest record accepted from a device and not yet durable (0 when none)', () => this.oldestInFlightAgeMs() / 1000)
  readonly backpressureWaits = new Counter({ name: 'streamgate_ingest_backpressure_waits_total', help: 'Publishes that waited for in-flight capacity (device sockets paused meanwhile)', registers: [this.registry] })
  readonly appendErrors = new Counter({ name: 'streamgate_stream_append_errors_total', help: 'Failed stream appends by error code', labelNames: ['code'], registers: [this.registry] })
  /** Observed once per telemetry message: a plain bucket array, not a prom-client Histogram (fast-histogram.ts). */
  readonly ackLatency = new FastHistogram(
    {
      name: 'streamgate_ingest_durable_seconds',
      help: 'Time from a publish reaching the gateway to its record being durable',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    },
    this.registry,
  )
  readonly c2dFeedback = new Counter({ name: 'streamgate_c2d_feedback_total', help: 'Cloud-to-device messages ended, by status (completed, expired, rejected, purged), as written to command-feedback', labelNames: ['status'], registers: [this.registry] })
  readonly methodCalls = new Counter({ name: 'streamgate_methods_total', help: 'Direct method calls by result: answered, or the error code (E_DEVICE_OFFLINE, E_METHOD_TIMEOUT, ...)', labelNames: ['result'], registers: [this.registry] })
  readonly methodSeconds = new Histogram({
    name: 'streamgate_method_duration_seconds',
    help: 'Direct method calls answered by the device, from the API request to the answer (including any connectTimeout wait)',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300],
    registers: [this.registry],
  })
  readonly deviceEvents = new Counter({ name: 'streamgate_device_events_total', help: 'Lifecycle events written to device-events', labelNames: ['type'], registers: [this.registry] })
  readonly disconnects = new Counter({ name: 'streamgate_mqtt_disconnects_total', help: 'Device connections ended, by reason (client-disconnect, socket-closed, keepalive-timeout, replaced, kicked, token-expired, gateway-shutdown, error:<code>)', labelNames: ['reason'], registers: [this.registry] })
  readonly connectionsRefused = new Counter({ name: 'streamgate_connections_refused_total', help: 'Sockets closed by admission control before a word was read, by reason (max-connections, pending-per-address, pending-evicted, http-connections, http-evicted)', labelNames: ['reason'], registers: [this.registry] })
  readonly acceptErrors = new Counter({ name: 'streamgate_accept_errors_total', help: 'Failed accept() calls on a listener, by errno code (EMFILE: out of file descriptors)', labelNames: ['code'], registers: [this.registry] })
  readonly upgradeRefusals = new Counter({ name: 'streamgate_http_upgrade_refusals_total', help: 'WebSocket upgrade requests answered with an error status, by status', labelNames: ['status'], registers: [this.registry] })
  readonly logLinesLeftOut = new Counter({ name: 'streamgate_log_lines_left_out_total', help: 'Client-caused warnings not logged because one of the same code was logged within log.repeatIntervalSeconds', labelNames: ['code'], registers: [this.registry] })

  readonly routeMatched = new Counter({ name: 'streamgate_route_matched_total', help: 'Messages whose route condition was true, by route and endpoint (a message matching several routes of one endpoint reaches it once)', labelNames: ['route', 'endpoint'], registers: [this.registry] })
  readonly routeUndefined = new Counter({ name: 'streamgate_route_undefined_condition_total', help: 'Messages whose route condition was undefined or not boolean (counted as no match, as IoT Hub does)', labelNames: ['route', 'endpoint'], registers: [this.registry] })
  readonly endpointDelivered = new Counter({ name: 'streamgate_endpoint_delivered_total', help: 'Messages an endpoint accepted (webhook 2xx, stream append durable)', labelNames: ['endpoint'], registers: [this.registry] })
  readonly endpointFailures = new Counter({ name: 'streamgate_endpoint_failed_attempts_total', help: 'Delivery attempts an endpoint refused or did not answer (each retried with back-off)', labelNames: ['endpoint'], registers: [this.registry] })
  readonly endpointDeadLettered = new Counter({ name: 'streamgate_endpoint_dead_lettered_total', help: 'Messages written to the dead-letter topic after an endpoint refused them maxAttempts times', labelNames: ['endpoint'], registers: [this.registry] })

  /** Set by the analytics service: brings aggregateRecords up to date before a scrape reads it. */
  syncAggregateCounts: () => void = () => undefined

  /** Moves what the ingest counted since the last scrape into the telemetry counters. */
  private syncTelemetry(): void {
    const now = this.telemetryTally
    const was = this.telemetryReported
    if (now.qos0 > was.qos0) this.telemetryRecords.inc({ qos: '0' }, now.qos0 - was.qos0)
    if (now.qos1 > was.qos1) this.telemetryRecords.inc({ qos: '1' }, now.qos1 - was.qos1)
    if (now.bytes > was.bytes) this.telemetryBytes.inc(now.bytes - was.bytes)
    this.telemetryReported = { ...now }
  }
  readonly aggregateRecords = new Counter({ collect: () => this.syncAggregateCounts(), name: 'streamgate_aggregate_records_total', help: 'Records an aggregate read past its filter, by outcome (in = folded into windows, late = dropped, adjusted = moved to the oldest open time, untimed = timestampBy held no usable time) and skipped non-number values', labelNames: ['aggregate', 'outcome'], registers: [this.registry] })
  readonly aggregateEmitDelay = new Histogram({ name: 'streamgate_aggregate_emit_delay_seconds', help: 'From the end of a window (event time) to its output record being durable', labelNames: ['aggregate'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60], registers: [this.registry] })
  readonly alertEvents = new Counter({ name: 'streamgate_alert_events_total', help: 'alert-raised and alert-cleared records written to the alerts topic, by rule and type', labelNames: ['rule', 'type'], registers: [this.registry] })

  /** Open windows and open alerts, read at each scrape (analytics/service.ts). */
  watchAnalytics(read: () => { windows: Record<string, number>; alerts: Record<string, number> }): void {
    new Gauge({
      name: 'streamgate_aggregate_windows_open',
      help: 'Windows an aggregate holds open now (one per group and window not yet closed)',
      labelNames: ['aggregate'],
      registers: [this.registry],
      collect() {
        this.reset()
        for (const [aggregate, n] of Object.entries(read().windows)) this.set({ aggregate }, n)
      },
    })
    new Gauge({
      name: 'streamgate_alerts_open',
      help: 'Alerts raised and not cleared, by rule',
      labelNames: ['rule'],
      registers: [this.registry],
      collect() {
        this.reset()
        for (const [rule, n] of Object.entries(read().alerts)) this.set({ rule }, n)
      },
    })
  }

  /** Routing endpoints' lag and health, read at each scrape (routing/router.ts). */
  watchRouting(read: () => Promise<Array<{ endpoint: string; health: string; lag: Record<string, number> }>>): void {
    const states = ['healthy', 'unhealthy', 'dead']
    let last: Awaited<ReturnType<typeof read>> = []
    // Both gauges are collected at once per scrape: they share one read.
    let pending: Promise<typeof last> | null = null
    const refresh = (): Promise<typeof last> =>
      (pending ??= read()
        .then((v) => (last = v), () => last)
        .finally(() => (pending = null)))
    new Gauge({
      name: 'streamgate_endpoint_lag',
      help: 'Records of a source topic not yet handled by an endpoint (high watermark minus committed offset, summed over partitions)',
      labelNames: ['endpoint', 'topic'],
      registers: [this.registry],
      async collect() {
        this.reset()
        // A lag that could not be read (the stream is down) is left out rather than shown as 0.
        for (const e of await refresh()) for (const [topic, lag] of Object.entries(e.lag)) if (lag >= 0) this.set({ endpoint: e.endpoint, topic }, lag)
      },
    })
    new Gauge({
      name: 'streamgate_endpoint_state',
      help: 'Endpoint health: 1 for its current state (healthy; unhealthy = retrying; dead = its last delivery went to the dead-letter topic), 0 for the others',
      labelNames: ['endpoint', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset()
        for (const e of await refresh()) for (const state of states) this.set({ endpoint: e.endpoint, state }, e.health === state ? 1 : 0)
      },
    })
  }

  /** Admission control's counts, read at each scrape (broker/admission.ts). */
  watchAdmission(read: () => { pending: number; mqtt: number; http: number; maxConnections: number }): void {
    const gauge = (name: string, help: string, key: 'pending' | 'mqtt' | 'http' | 'maxConnections'): void => {
      new Gauge({ name, help, registers: [this.registry], collect() { this.set(read()[key]) } })
    }
    gauge('streamgate_connections_pending', 'MQTT sockets accepted and not yet authenticated (TLS handshake, waiting for CONNECT, credentials being checked)', 'pending')
    gauge('streamgate_connections_open', 'MQTT sockets open on all listeners, authenticated or not', 'mqtt')
    gauge('streamgate_http_connections', 'HTTP sockets open on the API port (not upgraded to MQTT)', 'http')
    gauge('streamgate_connections_max', 'MQTT connections admitted at most (limits.maxConnections, or what the open-file limit allows)', 'maxConnections')
  }

  /**
   * Lifecycle events in the registry's outbox, read at each scrape (grows while the stream is
   * down). A registry that cannot be read keeps the last value: a scrape never fails for it.
   */
  watchDeviceEventOutbox(depth: () => Promise<number>): void {
    let last = 0
    new Gauge({
      name: 'streamgate_device_events_pending',
      help: 'Lifecycle events in the registry outbox, not yet written to device-events',
      registers: [this.registry],
      async collect() {
        last = await depth().catch(() => last)
        this.set(last)
      },
    })
  }

  /**
   * Cloud-to-device backlog, read from the command store at each scrape: messages queued for all
   * devices, and feedback records waiting for the stream (grows while the stream is down).
   */
  watchCommandQueue(depth: () => Promise<{ messages: number; feedback: number }>): void {
    const read = (key: 'messages' | 'feedback') => async function (this: Gauge): Promise<void> {
      this.set((await depth())[key])
    }
    new Gauge({ name: 'streamgate_c2d_queued_messages', help: 'Cloud-to-device messages queued for all devices', registers: [this.registry], collect: read('messages') })
    new Gauge({ name: 'streamgate_c2d_feedback_pending', help: 'Feedback records not yet written to command-feedback', registers: [this.registry], collect: read('feedback') })
  }

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'streamgate_' })
  }
}
