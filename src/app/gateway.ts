import { X509Certificate } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { createSecureContext } from 'node:tls'
import { join, resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { GatewayConfig } from '../config/schema.js'
import { topicNames } from '../config/load.js'
import { createLogger, type Logger } from '../observability/logger.js'
import { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { EventStream, TopicSpec } from '../stream/types.js'
import { createDeviceRegistry, createEventStream } from './backends.js'
import { Authenticator } from '../auth/authenticator.js'
import { FailureLimiter } from '../auth/rate-limit.js'
import { TrustedCaStore } from '../auth/ca-store.js'
import { GatewayError } from '../errors/catalogue.js'
import { GatewayBroker } from '../broker/gateway-broker.js'
import { attachWebSocket, listenTcp, listenTls, listenWss, type Listener, type TlsListener } from '../broker/listeners.js'
import { loadTlsMaterial } from './tls-material.js'
import { connectionBudget } from '../broker/fd-limit.js'
import { IotHubSubscriptionPolicy } from '../protocol/subscription-policy.js'
import { BatchingAppender } from '../ingest/batcher.js'
import { InFlightGate } from '../ingest/in-flight-gate.js'
import { TelemetryIngest } from '../ingest/telemetry-ingest.js'
import { DeviceEventWriter } from '../ingest/device-events.js'
import { createApiServer } from '../api/server.js'
import { attachTailSocket } from '../api/tail-socket.js'
import { resolveAdminToken } from '../api/admin-token.js'
import { removeRuntimeFile, writeRuntimeFile } from './runtime-file.js'
import { CommandChannel, fanOutObserver } from '../commands/command-channel.js'
import { DevicePublishRouter } from '../commands/device-requests.js'
import { SqliteCommandStore } from '../commands/sqlite-command-store.js'

export interface GatewayOptions {
  config: GatewayConfig
  logger?: Logger
  /** Write <dataDir>/gateway.json so the CLI finds the running gateway (default true). */
  writeRuntimeFile?: boolean
  /** Overrides `commands.expiryCheckIntervalMs` (tests). */
  expiryCheckIntervalMs?: number
}

export interface GatewayAddresses {
  mqtt: { host: string; port: number }
  http: { host: string; port: number }
  /** MQTT over TLS, when mqtt.tls.enabled. */
  mqtts?: { host: string; port: number }
  /** MQTT over secure WebSocket, when http.wss.enabled. */
  wss?: { host: string; port: number }
}

/**
 * The composition root: the one place where backends are chosen and wired. start() brings the
 * parts up in dependency order; stop() takes them down in reverse (stop listeners, drain ingest,
 * flush the stream, close the stores). Both are safe to call twice.
 */
export class Gateway {
  readonly config: GatewayConfig
  readonly logger: Logger
  readonly metrics = new GatewayMetrics()
  readonly dataDir: string
  registry!: DeviceRegistry
  stream!: EventStream
  broker!: GatewayBroker
  adminToken!: { token: string; source: 'config' | 'file' | 'generated' }
  private api!: FastifyInstance
  private ingest!: TelemetryIngest
  private appender!: BatchingAppender
  events!: DeviceEventWriter
  /** Queued cloud-to-device messages and persistent subscriptions (`<dataDir>/commands.db`). */
  commandStore!: SqliteCommandStore
  commands!: CommandChannel
  private tcp: Listener | null = null
  private tls: TlsListener | null = null
  private wss: TlsListener | null = null
  private ws: { close(): Promise<void> } | null = null
  private tail: { close(): Promise<void> } | null = null
  private state: 'new' | 'starting' | 'started' | 'stopping' | 'stopped' = 'new'
  private startPromise: Promise<GatewayAddresses> | null = null
  private stopPromise: Promise<void> | null = null

  constructor(private readonly options: GatewayOptions) {
    this.config = options.config
    this.logger = options.logger ?? createLogger(this.config.log.level)
    this.dataDir = resolve(this.config.dataDir)
  }

  start(): Promise<GatewayAddresses> {
    this.startPromise ??= this.doStart()
    return this.startPromise
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.doStop()
    return this.stopPromise
  }

  get addresses(): GatewayAddresses {
    const http = this.api.server.address()
    const httpPort = typeof http === 'object' && http ? http.port : this.config.http.port
    const mqttPort = this.tcp?.address().port ?? this.config.mqtt.port
    const { mqtt, http: h } = this.config
    return {
      mqtt: { host: mqtt.host, port: mqttPort },
      http: { host: h.host, port: httpPort },
      ...(this.tls ? { mqtts: { host: mqtt.tls.host || mqtt.host, port: this.tls.address().port } } : {}),
      ...(this.wss ? { wss: { host: h.wss.host || h.host, port: this.wss.address().port } } : {}),
    }
  }

  get topics(): ReturnType<typeof topicNames> {
    return topicNames(this.config)
  }

  private async doStart(): Promise<GatewayAddresses> {
    this.state = 'starting'
    const { config } = this
    mkdirSync(this.dataDir, { recursive: true })
    // Read before anything opens: a missing certificate fails the start-up at once.
    const tls = loadTlsMaterial(config, this.dataDir, new TrustedCaStore(this.dataDir).list())
    this.adminToken = resolveAdminToken(config)

    this.registry = createDeviceRegistry(config)
    await this.registry.start()
    this.stream = createEventStream(config)
    await this.stream.start(this.topicSpecs())

    const topics = this.topics
    this.events = new DeviceEventWriter(this.stream, topics.deviceEvents, this.registry, this.metrics, this.logger)
    // Writes what the outbox holds (a previous run's, the CLI's) and keeps at it. Not awaited:
    // with the stream unreachable at start the gateway must still come up (not ready); the
    // events wait in the registry's outbox until it is back.
    this.events.start()
    void this.closeStaleConnections().catch((err: unknown) => this.logger.error({ err }, 'could not close stale connections'))

    const maxBatch = config.stream.backend === 'kafka' ? config.stream.kafka.maxBatchRecords : config.stream.embedded.maxBatchRecords
    this.appender = new BatchingAppender(this.stream, topics.telemetry, maxBatch)
    const gate = new InFlightGate(config.limits.maxInFlightRecords, config.limits.maxInFlightBytes, this.metrics)
    this.ingest = new TelemetryIngest({ appender: this.appender, gate, metrics: this.metrics, logger: this.logger, maxPayloadBytes: config.limits.maxPayloadBytes })
    this.commandStore = new SqliteCommandStore(join(this.dataDir, 'commands.db'))
    this.commandStore.start()
    this.commands = new CommandChannel({
      queue: this.commandStore,
      sessions: this.commandStore,
      registry: this.registry,
      stream: this.stream,
      events: this.events,
      logger: this.logger,
      topics,
      limits: { ...config.commands, maxPayloadBytes: config.limits.maxPayloadBytes },
      metrics: this.metrics,
      expiryCheckIntervalMs: this.options.expiryCheckIntervalMs ?? config.commands.expiryCheckIntervalMs,
    })
    this.broker = await GatewayBroker.create({
      authenticator: this.createAuthenticator(),
      publishHandler: new DevicePublishRouter(this.ingest, this.commands.requests),
      subscriptionPolicy: new IotHubSubscriptionPolicy(),
      observer: fanOutObserver(this.events, this.commands),
      sessions: this.commandStore,
      deliveryObserver: this.commands,
      metrics: this.metrics,
      logger: this.logger,
      maxConnections: connectionBudget(config.limits.maxConnections, config.limits.fdReserve, config.http.maxConnections).maxConnections,
      maxPayloadBytes: config.limits.maxPayloadBytes,
      connectTimeoutMs: config.mqtt.connectTimeoutSeconds * 1000,
    })

    await this.commands.start(this.broker)

    this.api = await createApiServer({
      registry: this.registry,
      commands: this.commands,
      // Method payloads (128 KiB) and C2D payloads (64 KiB) travel inside JSON bodies.
      bodyLimit: 2 * Math.max(config.commands.maxMethodPayloadBytes, config.commands.maxMessageBytes, config.commands.maxTwinSectionBytes) + 16 * 1024,
      metrics: this.metrics,
      logger: this.logger,
      adminToken: this.adminToken.token,
      hostname: config.hostname,
      readiness: () => this.readiness(),
      // Removal, disabling, a key rotation or a password change ends the live connection at
      // once: the device must prove itself again with what is valid now.
      onDeviceChanged: (deviceId, change) => {
        if (change === 'created') {
          void this.events.flush()
          return
        }
        this.broker.kick(deviceId)
        if (change === 'removed') {
          void this.events.flush()
          void this.commands.deviceRemoved(deviceId).catch((err: unknown) => this.logger.error({ err, deviceId }, 'could not purge the queue of a removed device'))
        }
      },
      deviceConnection: (deviceId) => {
        const ctx = this.broker.connectionOf(deviceId)
        return ctx ? { connectedAt: new Date(ctx.connectedAt).toISOString(), remoteAddress: ctx.remoteAddress, transport: ctx.transport } : null
      },
    })
    this.ws = attachWebSocket(this.broker, this.api.server, config.limits.maxPayloadBytes + 70 * 1024)
    this.tail = attachTailSocket({
      httpServer: this.api.server,
      stream: this.stream,
      adminToken: this.adminToken.token,
      topicPrefix: config.stream.topicPrefix,
      // Each empty poll of Kafka is a fetch round trip to the broker; the SQLite file is cheap to poll.
      pollMs: config.stream.backend === 'kafka' ? 250 : config.stream.embedded.pollIntervalMs,
      logger: this.logger,
      maxBufferedBytes: config.http.tailMaxBufferedBytes,
    })
    await this.api.listen({ host: config.http.host, port: config.http.port })
    this.tcp = await listenTcp(this.broker, config.mqtt.host, config.mqtt.port)
    if (tls && config.mqtt.tls.enabled) this.tls = await listenTls(this.broker, config.mqtt.tls.host || config.mqtt.host, config.mqtt.tls.port, tls)
    const wssMaxMessageBytes = config.limits.maxPayloadBytes + 70 * 1024
    if (tls && config.http.wss.enabled) this.wss = await listenWss(this.broker, config.http.wss.host || config.http.host, config.http.wss.port, tls, wssMaxMessageBytes)

    const addresses = this.addresses
    if (this.options.writeRuntimeFile !== false) {
      writeRuntimeFile(this.dataDir, {
        pid: process.pid,
        httpUrl: `http://${urlHost(addresses.http.host)}:${addresses.http.port}`,
        mqttUrl: `mqtt://${urlHost(addresses.mqtt.host)}:${addresses.mqtt.port}`,
        startedAt: new Date().toISOString(),
      })
    }
    this.state = 'started'
    return addresses
  }

  /**
   * Read the TLS certificate, key and CA files again and use them for new handshakes on the TLS
   * and secure WebSocket listeners (SIGHUP of `streamgate start`): renewed certificates without a
   * restart, and CAs added with `ca add` named in the certificate request. Files that cannot be
   * used (missing, not PEM, key not matching) reject with E_CONFIG_INVALID and change nothing.
   */
  async reloadTls(): Promise<{ subject: string; validTo: string; listeners: number }> {
    const listeners = [this.tls, this.wss].filter((l): l is TlsListener => l !== null)
    if (this.state !== 'started' || listeners.length === 0) throw new GatewayError('E_CONFIG_INVALID', 'no TLS listener is running (mqtt.tls.enabled and http.wss.enabled are off)')
    const tls = loadTlsMaterial(this.config, this.dataDir, new TrustedCaStore(this.dataDir).list())!
    let subject: string
    let validTo: string
    try {
      createSecureContext({ cert: tls.cert, key: tls.key, ...(tls.ca && tls.ca.length > 0 ? { ca: tls.ca } : {}) })
      ;({ subject, validTo } = new X509Certificate(tls.cert))
    } catch (err) {
      throw new GatewayError('E_CONFIG_INVALID', `cannot use the TLS certificate and key: ${(err as Error).message}`)
    }
    for (const l of listeners) l.reloadTls(tls)
    this.logger.info({ subject, validTo, listeners: listeners.length }, 'TLS certificate reloaded')
    return { subject, validTo, listeners: listeners.length }
  }

  private async doStop(): Promise<void> {
    if (this.startPromise) await this.startPromise.catch(() => undefined)
    this.state = 'stopping'
    // 1. stop taking new connections and close the device connections
    const tcpClosed = this.tcp?.close()
    const tlsClosed = this.tls?.close()
    await this.wss?.close()
    await this.ws?.close()
    await this.tail?.close()
    this.ingest?.stop()
    await this.broker?.close()
    await tcpClosed
    await tlsClosed
    // Before the API: pending method calls are answered (E_SHUTTING_DOWN) so that it can close.
    await this.commands?.stop()
    await this.api?.close()
    // 2. drain what is still on its way into the stream
    await this.appender?.drain()
    await this.events?.drain()
    // 3. close the stores
    await this.stream?.stop()
    this.commandStore?.stop()
    await this.registry?.stop()
    if (this.options.writeRuntimeFile !== false) removeRuntimeFile(this.dataDir)
    this.state = 'stopped'
  }

  private topicSpecs(): TopicSpec[] {
    const partitions = this.config.stream.partitions
    return Object.values(this.topics).map((name) => ({ name, partitions }))
  }

  private createAuthenticator(): Authenticator {
    const a = this.config.auth
    const windowMs = a.failureWindowSeconds * 1000
    const cas = new TrustedCaStore(this.dataDir)
    return new Authenticator({
      trustedCas: () => cas.list(),
      x509MaxIntermediates: a.x509MaxIntermediates,
      registry: this.registry,
      hostname: this.config.hostname,
      clockSkewSeconds: a.clockSkewSeconds,
      limiters: {
        address: new FailureLimiter({ maxFailures: a.maxFailuresPerAddress, windowMs }),
        device: new FailureLimiter({ maxFailures: a.maxFailuresPerDevice, windowMs }),
      },
    })
  }

  /**
   * Devices marked connected by a gateway that died get their `disconnected` event now (the
   * registry writes it to its outbox with the reset).
   */
  private async closeStaleConnections(): Promise<void> {
    await this.registry.resetConnections(new Date())
    await this.events.flush()
  }

  private readiness(): { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> } {
    const stream = this.stream?.health() ?? { ready: false, detail: 'not started' }
    const checks: Record<string, { ok: boolean; detail?: string }> = {
      stream: { ok: stream.ready, ...(stream.detail ? { detail: stream.detail } : {}) },
      broker: { ok: this.state === 'started', detail: this.state },
      ingest: this.ingest?.health() ?? { ok: false, detail: 'not started' },
    }
    return { ready: Object.values(checks).every((c) => c.ok), checks }
  }
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1'
  return host.includes(':') ? `[${host}]` : host
}
