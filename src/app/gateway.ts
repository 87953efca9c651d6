import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { GatewayConfig } from '../config/schema.js'
import { topicNames } from '../config/load.js'
import { createLogger, type Logger } from '../observability/logger.js'
import { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { EventStream, TopicSpec } from '../stream/types.js'
import { ClusterCommands } from '../cluster/cluster-commands.js'
import { resolveInstanceId } from '../cluster/instance-id.js'
import { PostgresCluster } from '../cluster/postgres-cluster.js'
import { SoloCluster } from '../cluster/solo-cluster.js'
import type { Cluster } from '../cluster/types.js'
import { createEventStream, openStateStores, type ManagedCommandQueue, type ManagedSessionStore, type StateStores } from './backends.js'
import { AnalyticsService } from '../analytics/service.js'
import type { AnalyticsStore } from '../analytics/types.js'
import { RoutingService } from '../routing/router.js'
import { twinDocument } from '../routing/twin-cache.js'
import type { RouteStore } from '../routing/types.js'
import type { Authenticator } from '../auth/authenticator.js'
import { createAuthenticator } from '../auth/create-authenticator.js'
import { TrustedCaStore } from '../auth/ca-store.js'
import { GatewayError } from '../errors/catalogue.js'
import { GatewayBroker } from '../broker/gateway-broker.js'
import { listenOn, listenTcp, listenTls, listenWss, reportAcceptErrors, type Listener, type ListenerContext, type TlsListener, type TlsMaterial } from '../broker/listeners.js'
import type { ConnectionAdmission } from '../broker/admission.js'
import { loadTlsMaterial, reloadableTlsMaterial } from './tls-material.js'
import { createAdmission, listenerContext, wsMaxMessageBytes } from './edge.js'
import { Lifecycle, type StartStep } from './lifecycle.js'
import { IotHubSubscriptionPolicy } from '../protocol/subscription-policy.js'
import { BatchingAppender } from '../ingest/batcher.js'
import { InFlightGate } from '../ingest/in-flight-gate.js'
import { TelemetryIngest } from '../ingest/telemetry-ingest.js'
import { DeviceEventWriter } from '../ingest/device-events.js'
import { createGatewayApi } from './api-wiring.js'
import { resolveAdminToken } from '../api/admin-token.js'
import { removeRuntimeFile, writeRuntimeFile } from './runtime-file.js'
import { CommandChannel, fanOutObserver } from '../commands/command-channel.js'
import { DevicePublishRouter } from '../commands/device-requests.js'

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
 * The composition root: the one place where backends are chosen and wired. start() runs
 * START_STEPS in dependency order, each registering its stop (app/lifecycle.ts): a failed step
 * stops what the steps before it started, and stop() takes everything down in reverse (listeners,
 * then the API, the broker and its device connections, the ingest and what it still holds, the
 * stream, the stores). Both are safe to call twice.
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
  events!: DeviceEventWriter
  /** The state backend's stores (state.backend: SQLite files in the data dir, or PostgreSQL). */
  stores!: StateStores
  /** Queued cloud-to-device messages with their feedback outbox. */
  commandQueue!: ManagedCommandQueue
  /** Device subscriptions kept across connections (clean session 0). */
  sessions!: ManagedSessionStore
  /** This instance among the others on the shared state (alone on SQLite). */
  cluster!: Cluster
  private clusterCommands: ClusterCommands | null = null
  commands!: CommandChannel
  routeStore!: RouteStore
  routing!: RoutingService
  analyticsStore!: AnalyticsStore
  analytics!: AnalyticsService
  admission!: ConnectionAdmission
  private api!: FastifyInstance
  private ingest!: TelemetryIngest
  private tlsMaterial: TlsMaterial | null = null
  private edge!: ListenerContext
  /** Listeners closing: they stop accepting at once and are done once the broker closed their connections. */
  private readonly closingListeners: Array<Promise<void>> = []
  private tcp: Listener | null = null
  private tls: TlsListener | null = null
  private wss: TlsListener | null = null
  private readonly lifecycle: Lifecycle
  private state: 'new' | 'starting' | 'started' | 'stopping' | 'stopped' = 'new'
  private startPromise: Promise<GatewayAddresses> | null = null
  private stopPromise: Promise<void> | null = null

  constructor(private readonly options: GatewayOptions) {
    this.config = options.config
    this.logger = options.logger ?? createLogger(this.config.log.level)
    this.dataDir = resolve(this.config.dataDir)
    this.lifecycle = new Lifecycle(this.logger.child({ component: 'lifecycle' }))
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
    const http = this.api?.server.address()
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

  /** The start-up, in order; each step's stop is registered as it completes. */
  private steps(): StartStep[] {
    const { config } = this
    return [
      { name: 'data-dir', run: () => this.prepareDataDir() },
      { name: 'state', run: () => this.openState() },
      { name: 'registry', run: () => this.startRegistry() },
      { name: 'stream', run: () => this.startStream() },
      { name: 'device-events', run: () => this.startDeviceEvents() },
      { name: 'ingest', run: () => this.startIngest() },
      { name: 'command-store', run: () => this.startCommandStore() },
      { name: 'routing', run: () => this.startRouting() },
      { name: 'analytics', run: () => this.startAnalytics() },
      { name: 'broker', run: () => this.startBroker() },
      { name: 'api', run: () => this.startApi() },
      // After the API and before any listener: pending method calls are answered (E_SHUTTING_DOWN)
      // at stop before the API waits for its requests to end.
      { name: 'commands', run: () => this.startCommands() },
      { name: 'http-listener', run: () => this.listenHttp() },
      // Before the MQTT listeners: the first CONNECT claims its device in the instance list.
      { name: 'cluster', run: () => this.startCluster() },
      { name: 'mqtt-listener', run: async () => this.stopsListener((this.tcp = await listenTcp(this.edge, config.mqtt.host, config.mqtt.port))) },
      { name: 'mqtts-listener', run: () => this.listenMqtts() },
      { name: 'wss-listener', run: () => this.listenWss() },
      { name: 'runtime-file', run: () => this.writeRuntime() },
    ]
  }

  private async doStart(): Promise<GatewayAddresses> {
    this.state = 'starting'
    try {
      await this.lifecycle.start(this.steps())
    } catch (err) {
      this.state = 'stopped'
      throw err
    }
    this.state = 'started'
    return this.addresses
  }

  private async doStop(): Promise<void> {
    if (this.startPromise) await this.startPromise.catch(() => undefined)
    this.state = 'stopping'
    // Before the ingest and device-event drains: with Kafka silent they would wait for ever.
    this.stream?.beginStop?.()
    await this.lifecycle.stop()
    this.state = 'stopped'
  }

  private prepareDataDir(): void {
    // Keys, tokens and queued payloads live here: a directory the gateway creates is its owner's only.
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 })
    // Read before anything opens: a missing certificate fails the start-up at once.
    this.tlsMaterial = loadTlsMaterial(this.config, this.dataDir, new TrustedCaStore(this.dataDir).list())
    this.adminToken = resolveAdminToken(this.config)
  }

  /** Ended last: every store on it has stopped by then. */
  private openState(): () => Promise<void> {
    this.stores = openStateStores(this.config, 'gateway')
    return () => this.stores.end()
  }

  private async startRegistry(): Promise<() => Promise<void>> {
    this.registry = this.stores.registry()
    await this.registry.start()
    return () => this.registry.stop()
  }

  private async startStream(): Promise<() => Promise<void>> {
    this.stream = createEventStream(this.config)
    this.stream.observeAppendFailures?.((err) => this.metrics.appendErrors.inc({ code: err.code }))
    const partitions = this.config.stream.partitions
    const specs: TopicSpec[] = Object.values(this.topics).map((name) => ({ name, partitions }))
    await this.stream.start(specs)
    return () => this.stream.stop()
  }

  private startDeviceEvents(): () => Promise<void> {
    this.events = new DeviceEventWriter(this.stream, this.topics.deviceEvents, this.registry, this.metrics, this.logger)
    // Writes what the outbox holds (a previous run's, the CLI's) and keeps at it. Not awaited:
    // with the stream unreachable at start the gateway must still come up (not ready); the
    // events wait in the registry's outbox until it is back.
    this.events.start()
    // One gateway alone resets every device left connected by a crash; several on PostgreSQL
    // reset only the devices of dead instances (and of this one's previous life): startCluster.
    if (this.stores.backend === 'sqlite') void this.closeStaleConnections().catch((err: unknown) => this.logger.error({ err }, 'could not close stale connections'))
    return () => this.events.drain()
  }

  private startIngest(): () => Promise<void> {
    const { config } = this
    const maxBatch = config.stream.backend === 'kafka' ? config.stream.kafka.maxBatchRecords : config.stream.embedded.maxBatchRecords
    const appender = new BatchingAppender(this.stream, this.topics.telemetry, maxBatch)
    const gate = new InFlightGate(config.limits.maxInFlightRecords, config.limits.maxInFlightBytes, this.metrics)
    this.ingest = new TelemetryIngest({ appender, gate, metrics: this.metrics, logger: this.logger, maxPayloadBytes: config.limits.maxPayloadBytes })
    // The broker (stopped before this) has closed every device connection: drain what they left.
    return () => appender.drain()
  }

  private async startCommandStore(): Promise<() => Promise<void>> {
    this.commandQueue = this.stores.commandQueue()
    this.sessions = this.stores.sessions((deviceId, err) =>
      this.logger.error({ component: 'sessions', deviceId, err: (err as Error).message }, 'could not store a subscription change; the device keeps it until it reconnects'),
    )
    await this.commandQueue.start()
    try {
      await this.sessions.start()
    } catch (err) {
      await this.commandQueue.stop()
      throw err
    }
    this.commands = new CommandChannel({
      queue: this.commandQueue,
      sessions: this.sessions,
      registry: this.registry,
      stream: this.stream,
      events: this.events,
      logger: this.logger,
      topics: this.topics,
      limits: { ...this.config.commands, maxPayloadBytes: this.config.limits.maxPayloadBytes },
      metrics: this.metrics,
      expiryCheckIntervalMs: this.options.expiryCheckIntervalMs ?? this.config.commands.expiryCheckIntervalMs,
    })
    return async () => {
      await this.sessions.stop()
      await this.commandQueue.stop()
    }
  }

  /**
   * Routes run as consumers of their source topics (routing/router.ts), beside the ingest and
   * never in it. With routing.enabled off they are still kept and managed, and not run.
   */
  private async startRouting(): Promise<() => Promise<void>> {
    const { config } = this
    this.routeStore = this.stores.routes()
    await this.routeStore.start()
    const topics = this.topics
    this.routing = new RoutingService({
      store: this.routeStore,
      stream: this.stream,
      registry: this.registry,
      topics: { telemetry: topics.telemetry, deviceEvents: topics.deviceEvents, deadLetter: topics.deadLetter, alerts: topics.alerts, reserved: Object.values(topics) },
      settings: { ...config.routing, topicPrefix: config.stream.topicPrefix, partitions: config.stream.partitions, hubName: config.hostname },
      metrics: this.metrics,
      logger: this.logger,
    })
    this.metrics.watchRouting(async () => (await this.routing.status()).map((s) => ({ endpoint: s.name, health: s.health, lag: s.lag })))
    try {
      if (config.routing.enabled) await this.routing.start({ endpoints: config.routing.endpoints, routes: config.routing.routes })
      else await this.routing.reload()
    } catch (err) {
      await this.routing.stop()
      await this.routeStore.stop()
      throw err
    }
    return async () => {
      await this.routing.stop()
      await this.routeStore.stop()
    }
  }

  /**
   * Aggregates and alert rules run as consumers of their source topics (analytics/service.ts),
   * like routes. With analytics.enabled off they are kept and managed, and not run.
   */
  private async startAnalytics(): Promise<() => Promise<void>> {
    const { config } = this
    this.analyticsStore = this.stores.analytics()
    await this.analyticsStore.start()
    const topics = this.topics
    this.analytics = new AnalyticsService({
      store: this.analyticsStore,
      stream: this.stream,
      topics: { telemetry: topics.telemetry, deviceEvents: topics.deviceEvents, alerts: topics.alerts, reserved: Object.values(topics) },
      settings: { ...config.analytics, topicPrefix: config.stream.topicPrefix, partitions: config.stream.partitions },
      metrics: this.metrics,
      logger: this.logger,
    })
    try {
      if (config.analytics.enabled) await this.analytics.start()
      else await this.analytics.reload()
    } catch (err) {
      await this.analytics.stop()
      await this.analyticsStore.stop()
      throw err
    }
    return async () => {
      await this.analytics.stop()
      await this.analyticsStore.stop()
    }
  }

  private async startBroker(): Promise<() => Promise<void>> {
    const { config } = this
    const { admission, refusals } = createAdmission(config, this.metrics, this.logger)
    this.admission = admission
    this.broker = await GatewayBroker.create({
      authenticator: this.createAuthenticator(),
      publishHandler: new DevicePublishRouter(this.ingest, this.commands.requests),
      subscriptionPolicy: new IotHubSubscriptionPolicy(),
      observer: fanOutObserver(this.events, this.commands),
      sessions: this.sessions,
      // The cluster starts after the broker (it needs the HTTP address); no CONNECT comes before it.
      ownership: {
        claim: async (deviceId, connectionId) => (await this.cluster.claim(deviceId, connectionId)).epoch,
        release: (deviceId, epoch) => void this.cluster.release(deviceId, epoch).catch((err: unknown) => this.logger.warn({ component: 'cluster', deviceId, err: (err as Error).message }, 'device ownership not released; it lapses with the heartbeat')),
      },
      deliveryObserver: this.commands,
      metrics: this.metrics,
      logger: this.logger,
      limits: config.limits,
      connectTimeoutMs: config.mqtt.connectTimeoutSeconds * 1000,
      tokenGraceMs: config.auth.clockSkewSeconds * 1000,
      admission,
      repeatIntervalMs: config.log.repeatIntervalSeconds * 1000,
    })
    this.edge = listenerContext(config, this.broker, admission, this.metrics, refusals)
    return async () => {
      // Publishes still waiting for the stream fail now (E_SHUTTING_DOWN) instead of retrying.
      this.ingest.stop()
      await this.broker.close()
      await Promise.all(this.closingListeners)
    }
  }

  private async startApi(): Promise<() => Promise<void>> {
    const { api, close } = await createGatewayApi(this.config, this.edge, {
      registry: this.registry,
      stream: this.stream,
      commands: this.commands,
      events: this.events,
      broker: this.broker,
      metrics: this.metrics,
      logger: this.logger,
      adminToken: this.adminToken.token,
      readiness: () => this.readiness(),
      kick: (deviceId) => {
        if (this.broker.kick(deviceId) || !this.clusterCommands) return
        void this.clusterCommands.kick(deviceId).catch((err: unknown) => this.logger.warn({ component: 'cluster', deviceId, err: (err as Error).message }, 'could not reach the instance holding the device'))
      },
      cluster: {
        instanceId: () => this.cluster.instanceId,
        instances: () => this.cluster.instances(),
        liveConnections: () => this.broker.connectedCount,
        owner: async (deviceId) => (await this.cluster.ownerOf(deviceId))?.instanceId ?? null,
      },
      routing: {
        store: this.routeStore,
        service: this.routing,
        twin: async (deviceId) => {
          return twinDocument(await this.registry.getTwin(deviceId))
        },
      },
      analytics: { store: this.analyticsStore, service: this.analytics },
      streams: {
        topics: () => [...Object.values(this.topics), ...this.routing.endpointTopics()],
        groups: () => [{ group: this.config.commands.consumerGroup, topic: this.topics.commands }, ...this.routing.consumers()],
      },
    })
    this.api = api
    return close
  }


  private async startCommands(): Promise<() => Promise<void>> {
    await this.commands.start(this.broker)
    return () => this.commands.stop()
  }

  /**
   * This instance in the shared instance list (PostgreSQL), or alone (SQLite). With several
   * instances, commands reach devices wherever they are connected (ClusterCommands), and the
   * devices of instances that died are reset (their `disconnected` events written) by a reaper.
   */
  private async startCluster(): Promise<() => Promise<void>> {
    const { config } = this
    const instanceId = resolveInstanceId(config.cluster.instanceId, this.dataDir)
    const a = this.addresses
    const advertiseUrl = config.cluster.advertiseUrl || `http://${urlHost(a.http.host)}:${a.http.port}`
    const connections = (): number => this.broker.connectedCount
    const postgres = this.stores.postgres
    if (!postgres) {
      this.cluster = new SoloCluster(instanceId, advertiseUrl, config.stream.backend, connections)
      return async () => undefined
    }
    const cluster = new PostgresCluster({
      state: postgres,
      url: config.state.postgres.url,
      instanceId,
      advertiseUrl,
      streamBackend: config.stream.backend,
      heartbeatIntervalMs: config.cluster.heartbeatIntervalMs,
      heartbeatTimeoutMs: config.cluster.heartbeatTimeoutMs,
      signalPollMs: config.cluster.signalPollMs,
      connections,
      logger: this.logger,
    })
    this.cluster = cluster
    const commands = new ClusterCommands(cluster, {
      isHere: (deviceId) => this.broker.connectionOf(deviceId) !== null,
      kick: (deviceId) => this.broker.kick(deviceId),
      replaceOlderThan: (deviceId, epoch) => void this.broker.replaceOlderThan(deviceId, epoch),
      deliver: (deviceId) => void this.commands.deliverHere(deviceId),
      notifyDesired: (deviceId, patch, version) => this.commands.twins.notifyDesiredHere(deviceId, patch, version),
      invoke: (deviceId, name, request) => this.commands.localMethods.invoke(deviceId, name, request),
      mustExist: async (deviceId) => {
        if (!(await this.registry.get(deviceId))) throw new GatewayError('E_DEVICE_NOT_FOUND', `device "${deviceId}" not found`, { deviceId })
      },
    }, this.logger)
    await cluster.start()
    this.clusterCommands = commands
    this.commands.reachElsewhere(commands)
    const reap = async (): Promise<void> => {
      const devices = await cluster.reapOwnerships()
      if (devices.length === 0) return
      const reset = await this.registry.resetConnections(new Date(), devices)
      this.logger.info({ component: 'cluster', devices: devices.length, reset: reset.length }, 'devices of instances that are gone reset to disconnected')
      await this.events.flush()
    }
    const reaping = (): void => void reap().catch((err: unknown) => this.logger.warn({ component: 'cluster', err: (err as Error).message }, 'could not reap the ownerships of dead instances'))
    reaping()
    const timer = setInterval(reaping, Math.max(500, Math.round(config.cluster.heartbeatTimeoutMs / 2)))
    timer.unref()
    return async () => {
      clearInterval(timer)
      commands.stop()
      await cluster.stop()
    }
  }

  private async listenHttp(): Promise<void> {
    await listenOn(this.api.server, this.config.http.host, this.config.http.port)
    reportAcceptErrors(this.api.server, this.edge, 'http')
  }

  private async listenMqtts(): Promise<(() => void) | void> {
    const { config } = this
    if (!this.tlsMaterial || !config.mqtt.tls.enabled) return
    this.tls = await listenTls(this.edge, config.mqtt.tls.host || config.mqtt.host, config.mqtt.tls.port, this.tlsMaterial)
    return this.stopsListener(this.tls)
  }

  private async listenWss(): Promise<(() => void) | void> {
    const { config } = this
    if (!this.tlsMaterial || !config.http.wss.enabled) return
    this.wss = await listenWss(this.edge, config.http.wss.host || config.http.host, config.http.wss.port, this.tlsMaterial, wsMaxMessageBytes(config), config.http.headersTimeoutSeconds * 1000)
    return this.stopsListener(this.wss)
  }

  /** A listener stops taking connections at once; its device connections close with the broker. */
  private stopsListener(listener: Listener): () => void {
    return () => void this.closingListeners.push(listener.close())
  }

  private writeRuntime(): (() => void) | void {
    if (this.options.writeRuntimeFile === false) return
    const a = this.addresses
    writeRuntimeFile(this.dataDir, {
      pid: process.pid,
      httpUrl: `http://${urlHost(a.http.host)}:${a.http.port}`,
      mqttUrl: `mqtt://${urlHost(a.mqtt.host)}:${a.mqtt.port}`,
      startedAt: new Date().toISOString(),
    })
    return () => removeRuntimeFile(this.dataDir)
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
    const { tls, subject, validTo } = reloadableTlsMaterial(this.config, this.dataDir, new TrustedCaStore(this.dataDir).list())
    for (const l of listeners) l.reloadTls(tls)
    this.logger.info({ subject, validTo, listeners: listeners.length }, 'TLS certificate reloaded')
    return { subject, validTo, listeners: listeners.length }
  }


  private createAuthenticator(): Authenticator {
    const cas = new TrustedCaStore(this.dataDir)
    return createAuthenticator(this.config, this.registry, { trustedCas: () => cas.list(), metrics: this.metrics })
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
