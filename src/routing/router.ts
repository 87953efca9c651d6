import { GatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { EventStream, StoredRecord } from '../stream/types.js'
import { checkEndpoint, checkRoute, type EndpointDefinition, type RouteDefinition, type RouteSource } from './definitions.js'
import { compileEnrichments } from './enrich.js'
import { EndpointWorker, type EndpointHealth, type WorkerPlan, type WorkerRoute } from './endpoint-worker.js'
import { isTwinChange, type RecordKind } from './message.js'
import { compileQuery, type CompiledQuery } from './query/index.js'
import { sinkFor } from './sinks.js'
import { TwinCache } from './twin-cache.js'
import type { RouteStore, RoutingDefinitions } from './types.js'

export interface RoutingTopics {
  telemetry: string
  deviceEvents: string
  deadLetter: string
  alerts: string
  /** Every topic the gateway itself writes: an endpoint may not write into one of them. */
  reserved: string[]
}

export interface RoutingSettings {
  reloadIntervalMs: number
  twinCacheMs: number
  twinCacheEntries: number
  consumerGroupPrefix: string
  restartDelayMs: number
  topicPrefix: string
  partitions: number
  /** $hubName of enrichments: the gateway's hostname. */
  hubName: string
}

export interface RoutingServiceOptions {
  store: RouteStore
  stream: EventStream
  registry: Pick<DeviceRegistry, 'getTwin'>
  topics: RoutingTopics
  settings: RoutingSettings
  metrics: GatewayMetrics
  logger: Logger
}

export interface EndpointStatus {
  name: string
  type: EndpointDefinition['type']
  health: EndpointHealth
  lastError: { code: string; message: string; at: string } | null
  /** Per source topic (-1: could not be read now); empty when no enabled route uses the endpoint. */
  lag: Record<string, number>
  routes: string[]
  delivered: number
  failedAttempts: number
  deadLettered: number
}

export interface RouteStatus {
  /** Per endpoint of the route. */
  matched: Record<string, number>
  undefinedCondition: Record<string, number>
}

/**
 * Message routing: the routes of the registry, run as consumers of their source topics (one
 * EndpointWorker per endpoint and source topic, see endpoint-worker.ts), never as a stage of
 * the publish path. The definitions are re-read when the API changes them (reload()) and when
 * the registry's change counter moves (another gateway, the CLI), every reloadIntervalMs; a
 * change swaps the workers' plans in place, and only a new or vanished (endpoint, topic) pair
 * starts or stops a consumer.
 */
export class RoutingService {
  private readonly workers = new Map<string, EndpointWorker>()
  private readonly twins: TwinCache
  private readonly log: Logger
  private readonly compiled = new Map<string, CompiledQuery>()
  private definitions: RoutingDefinitions = { version: -1, endpoints: [], routes: [] }
  private reloading: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | null = null
  private stopped = false
  /** Set by start(): before it (routing.enabled false), reload() only reads the definitions. */
  private running = false

  constructor(private readonly options: RoutingServiceOptions) {
    this.twins = new TwinCache(options.registry, options.settings.twinCacheMs, options.settings.twinCacheEntries)
    this.log = options.logger.child({ component: 'routing' })
  }

  /** Seed from the config (what the registry lacks), then run what the registry holds. */
  async start(seed: { endpoints: EndpointDefinition[]; routes: RouteDefinition[] } = { endpoints: [], routes: [] }): Promise<void> {
    await this.seed(seed)
    this.running = true
    await this.reload()
    this.timer = setInterval(() => void this.poll(), this.options.settings.reloadIntervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    await this.reloading.catch(() => undefined)
    await Promise.all([...this.workers.values()].map((w) => w.stop()))
    this.workers.clear()
  }

  /** Re-read the definitions now (after an API change); concurrent calls run one after another. */
  reload(): Promise<void> {
    const next = this.reloading.catch(() => undefined).then(() => this.reconcile())
    this.reloading = next
    return next
  }

  /** An endpoint as the API would store it: also refuses writing into the gateway's own topics. */
  checkEndpoint(input: unknown): EndpointDefinition {
    return checkEndpointFor(input, this.options.settings.topicPrefix, this.options.topics.reserved)
  }

  checkRoute(input: unknown): RouteDefinition {
    return checkRoute(input)
  }

  async status(): Promise<EndpointStatus[]> {
    const byEndpoint = new Map<string, EndpointWorker[]>()
    for (const worker of this.workers.values()) {
      const list = byEndpoint.get(worker.endpointName) ?? []
      list.push(worker)
      byEndpoint.set(worker.endpointName, list)
    }
    const out: EndpointStatus[] = []
    for (const endpoint of this.definitions.endpoints) {
      const workers = byEndpoint.get(endpoint.name) ?? []
      const lag: Record<string, number> = {}
      for (const w of workers) lag[w.topic] = await w.lag().catch(() => -1)
      const worst = workers.map((w) => w.health).sort((a, b) => HEALTH_ORDER[b] - HEALTH_ORDER[a])[0] ?? 'healthy'
      const lastError = workers.map((w) => w.lastError).filter((e) => e !== null).sort((a, b) => b.at.localeCompare(a.at))[0] ?? null
      const routes = this.definitions.routes.filter((r) => r.enabled && r.endpoints.includes(endpoint.name)).map((r) => r.name)
      const sum = (key: 'delivered' | 'failedAttempts' | 'deadLettered'): number => workers.reduce((n, w) => n + w.counts[key], 0)
      out.push({ name: endpoint.name, type: endpoint.type, health: worst, lastError, lag, routes, delivered: sum('delivered'), failedAttempts: sum('failedAttempts'), deadLettered: sum('deadLettered') })
    }
    return out
  }

  /** Counters of one route, per endpoint, since this gateway started. */
  routeStatus(route: string): RouteStatus {
    const status: RouteStatus = { matched: {}, undefinedCondition: {} }
    for (const worker of this.workers.values()) {
      const counts = worker.routeCounts().get(route)
      if (!counts) continue
      const name = worker.endpointName
      status.matched[name] = (status.matched[name] ?? 0) + counts.matched
      status.undefinedCondition[name] = (status.undefinedCondition[name] ?? 0) + counts.undefinedCondition
    }
    return status
  }

  /** The compiled condition (cached by text); E_ROUTE_QUERY_INVALID. */
  query(condition: string): CompiledQuery {
    let query = this.compiled.get(condition)
    if (!query) {
      query = compileQuery(condition)
      if (this.compiled.size > 1000) this.compiled.clear()
      this.compiled.set(condition, query)
    }
    return query
  }

  get hubName(): string {
    return this.options.settings.hubName
  }

  private async seed(seed: { endpoints: EndpointDefinition[]; routes: RouteDefinition[] }): Promise<void> {
    if (seed.endpoints.length === 0 && seed.routes.length === 0) return
    const current = await this.options.store.load()
    for (const endpoint of seed.endpoints) {
      if (!current.endpoints.some((e) => e.name === endpoint.name)) await this.options.store.putEndpoint(this.checkEndpoint(endpoint))
    }
    for (const route of seed.routes) {
      if (!current.routes.some((r) => r.name === route.name)) await this.options.store.putRoute(checkRoute(route))
    }
  }

  private async poll(): Promise<void> {
    if (this.stopped) return
    try {
      if ((await this.options.store.version()) !== this.definitions.version) await this.reload()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read the routes; keeping the ones running')
    }
  }

  private async reconcile(): Promise<void> {
    if (this.stopped) return
    const definitions = await this.options.store.load()
    if (!this.running) {
      this.definitions = definitions
      return
    }
    if (definitions.version === this.definitions.version) return
    const plans = this.plans(definitions)
    for (const [key, worker] of this.workers) {
      if (!plans.has(key)) {
        this.workers.delete(key)
        await worker.stop()
      }
    }
    for (const [key, { topic, endpoint, plan }] of plans) {
      const worker = this.workers.get(key)
      if (worker && worker.readBatch === plan.endpoint.readBatch) {
        worker.update(plan)
        continue
      }
      // New, or reading a different batch size: its consumer is made anew (from the committed offsets).
      if (worker) await worker.stop()
      const group = `${this.options.settings.consumerGroupPrefix}${endpoint}.${topic}`
      const created = new EndpointWorker({ ...this.workerContext(), topic, group }, plan)
      this.workers.set(key, created)
      await created.start()
    }
    this.definitions = definitions
    this.log.info({ endpoints: definitions.endpoints.length, routes: definitions.routes.length, consumers: this.workers.size }, 'routes loaded')
  }

  /** The consumer group of each endpoint worker and the topic it reads (GET /api/streams). */
  consumers(): Array<{ group: string; topic: string }> {
    return [...this.workers.values()].map((w) => w.consumerGroup)
  }

  /** Topics the stream endpoints write to. */
  endpointTopics(): string[] {
    return this.definitions.endpoints.flatMap((e) => (e.type === 'stream' ? [this.topicOf(e.topic)] : []))
  }

  private workerContext(): Omit<ConstructorParameters<typeof EndpointWorker>[0], 'topic' | 'group'> {
    const { stream, metrics, logger, topics, settings } = this.options
    return { stream, metrics, logger, deadLetterTopic: topics.deadLetter, twins: this.twins, restartDelayMs: settings.restartDelayMs }
  }

  /** (endpoint, topic) → the plan its worker runs. Routes that cannot run are logged and left out. */
  private plans(definitions: RoutingDefinitions): Map<string, { topic: string; endpoint: string; plan: WorkerPlan }> {
    const endpoints = new Map(definitions.endpoints.map((e) => [e.name, e]))
    const plans = new Map<string, { topic: string; endpoint: string; plan: WorkerPlan }>()
    for (const route of definitions.routes) {
      if (!route.enabled) continue
      let workerRoute: WorkerRoute
      try {
        workerRoute = { name: route.name, query: this.query(route.condition), accepts: sourceFilter(route.source) }
      } catch (err) {
        this.log.error({ route: route.name, err: (err as Error).message }, 'route condition does not compile; the route is not run')
        continue
      }
      const topic = route.source === 'telemetry' ? this.options.topics.telemetry : route.source === 'alerts' ? this.options.topics.alerts : this.options.topics.deviceEvents
      // Alert records carry content type and encoding as telemetry does: $body is their JSON.
      const kind: RecordKind = route.source === 'telemetry' || route.source === 'alerts' ? 'telemetry' : 'device-event'
      for (const name of route.endpoints) {
        const endpoint = endpoints.get(name)
        if (!endpoint) continue
        const key = `${name}\u0000${topic}`
        let entry = plans.get(key)
        if (!entry) {
          const { stream, settings } = this.options
          const sinkTopic = endpoint.type === 'stream' ? this.topicOf(endpoint.topic) : ''
          const plan: WorkerPlan = { endpoint, routes: [], sink: sinkFor(endpoint, stream, sinkTopic, settings.partitions), enrich: compileEnrichments(endpoint.enrichments, settings.hubName), kind }
          plans.set(key, (entry = { topic, endpoint: name, plan }))
        }
        entry.plan.routes.push(workerRoute)
      }
    }
    return plans
  }

  private topicOf(name: string): string {
    return this.options.settings.topicPrefix + name
  }
}

/**
 * checkEndpoint, and a stream endpoint may not write into a topic the gateway writes itself
 * (`reserved`, with the prefix): a route from telemetry into telemetry would feed itself for ever.
 */
export function checkEndpointFor(input: unknown, topicPrefix: string, reserved: readonly string[]): EndpointDefinition {
  const endpoint = checkEndpoint(input)
  if (endpoint.type === 'stream' && reserved.includes(topicPrefix + endpoint.topic)) {
    throw new GatewayError('E_BAD_REQUEST', `endpoint.topic: "${topicPrefix + endpoint.topic}" is a topic the gateway writes itself; route into a topic of its own`, { field: 'topic' })
  }
  return endpoint
}

const HEALTH_ORDER: Record<EndpointHealth, number> = { healthy: 0, unhealthy: 1, dead: 2 }

function sourceFilter(source: RouteSource): (record: StoredRecord) => boolean {
  switch (source) {
    case 'telemetry':
    case 'alerts':
      return () => true
    case 'twin-changes':
      return isTwinChange
    case 'device-events':
      return (record) => !isTwinChange(record)
  }
}
