import { setTimeout as sleep } from 'node:timers/promises'
import { GatewayError, toGatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { Consumer, EventStream, OutgoingRecord, StoredRecord } from '../stream/types.js'
import type { EndpointDefinition } from './definitions.js'
import type { CompiledEnrichments } from './enrich.js'
import { RecordMessage, type RecordKind } from './message.js'
import type { CompiledQuery } from './query/index.js'
import type { EndpointSink, RoutedMessage } from './sinks.js'
import type { TwinCache } from './twin-cache.js'

/** A prom-client counter child (labels already bound). */
interface Tally {
  inc(value?: number): void
}

export type EndpointHealth = 'healthy' | 'unhealthy' | 'dead'

export interface WorkerRoute {
  name: string
  query: CompiledQuery
  /** The source within the topic (device-events holds both lifecycle events and twin changes). */
  accepts: (record: StoredRecord) => boolean
}

/** What a worker runs; replaced whole by update() when routes or the endpoint change. */
export interface WorkerPlan {
  endpoint: EndpointDefinition
  routes: WorkerRoute[]
  sink: EndpointSink
  enrich: CompiledEnrichments
  kind: RecordKind
}

export interface WorkerContext {
  stream: EventStream
  topic: string
  group: string
  deadLetterTopic: string
  twins: TwinCache
  metrics: GatewayMetrics
  logger: Logger
  /** Pause before a consumer that failed (stream down, dead-letter append refused) starts again. */
  restartDelayMs: number
}

const MAX_ERROR_TEXT = 512

/**
 * One endpoint reading one source topic, as a consumer group of its own (routing.consumerGroupPrefix
 * + endpoint name + topic): never a stage of the publish path, so a slow or dead endpoint only
 * lets its lag grow. A batch (one partition, offset order) is evaluated, enriched, and delivered in
 * order, chunk after chunk, retrying each chunk with doubling back-off; after maxAttempts its
 * messages go to the dead-letter topic with the error. Only then does the handler resolve and the
 * consumer commit the batch: delivery is at least once, in order per device, and a stop or crash
 * re-delivers at most the uncommitted batch (the endpoint's readBatch records).
 */
export class EndpointWorker {
  health: EndpointHealth = 'healthy'
  lastError: { code: string; message: string; at: string } | null = null
  private plan: WorkerPlan
  private consumer: Consumer | null = null
  private readonly abort = new AbortController()
  private restartTimer: NodeJS.Timeout | null = null
  private stopped = false
  private readonly log: Logger
  private readonly delivered: Tally
  private readonly failures: Tally
  private readonly deadLettered: Tally
  private readonly counters = new Map<string, RouteCounters>()
  /** Since this gateway started the worker (the metrics have the same, labelled). */
  readonly counts = { delivered: 0, failedAttempts: 0, deadLettered: 0 }

  get consumerGroup(): { group: string; topic: string } {
    return { group: this.ctx.group, topic: this.ctx.topic }
  }

  constructor(
    private readonly ctx: WorkerContext,
    plan: WorkerPlan,
  ) {
    this.plan = plan
    this.readBatch = plan.endpoint.readBatch
    const endpoint = plan.endpoint.name
    this.log = ctx.logger.child({ component: 'routing', endpoint, topic: ctx.topic })
    this.delivered = ctx.metrics.endpointDelivered.labels(endpoint)
    this.failures = ctx.metrics.endpointFailures.labels(endpoint)
    this.deadLettered = ctx.metrics.endpointDeadLettered.labels(endpoint)
  }

  get topic(): string {
    return this.ctx.topic
  }

  /** Records its consumer reads per batch (fixed when it starts). */
  readonly readBatch: number

  get endpointName(): string {
    return this.plan.endpoint.name
  }

  update(plan: WorkerPlan): void {
    this.plan = plan
  }

  /** Per route: messages matched, and conditions that were undefined or not boolean. */
  routeCounts(): Map<string, { matched: number; undefinedCondition: number }> {
    return new Map([...this.counters].map(([route, c]) => [route, { matched: c.matched, undefinedCondition: c.undefinedCondition }]))
  }

  async start(): Promise<void> {
    try {
      this.consumer = await this.ctx.stream.consume({
        topic: this.ctx.topic,
        group: this.ctx.group,
        from: 'latest',
        maxBatch: this.readBatch,
        handler: (records) => this.handle(records),
        onError: (err) => this.restart(err),
      })
    } catch (err) {
      this.restart(err)
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.restartTimer) clearTimeout(this.restartTimer)
    this.abort.abort()
    await this.consumer?.stop()
  }

  /** Records of the topic this endpoint has not handled yet (high watermark minus committed). */
  async lag(): Promise<number> {
    const [offsets, committed] = await Promise.all([this.ctx.stream.offsets(this.ctx.topic), this.ctx.stream.committedOffsets(this.ctx.group, this.ctx.topic)])
    const next = new Map(committed.map((c) => [c.partition, c.offset]))
    return offsets.reduce((sum, p) => sum + Math.max(0, p.high - (next.get(p.partition) ?? p.high)), 0)
  }

  private restart(err: unknown): void {
    const consumer = this.consumer
    this.consumer = null
    void consumer?.stop()
    if (this.stopped) return
    this.log.warn({ code: toGatewayError(err).code, err: (err as Error).message }, 'routing consumer stopped; starting it again')
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null
      if (!this.stopped) void this.start()
    }, this.ctx.restartDelayMs)
  }

  private async handle(records: StoredRecord[]): Promise<void> {
    const plan = this.plan
    const ids = records.map(deviceIdOf)
    const twins = plan.routes.some((r) => r.query.usesTwin) || plan.enrich.usesTwin ? await this.ctx.twins.lookup(ids.filter((id) => id !== '')) : null
    const matched: RoutedMessage[] = []
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!
      const deviceId = ids[i]!
      const twin = twins?.get(deviceId)
      const message = new RecordMessage(record, plan.kind, twin)
      let hit = false
      for (const route of plan.routes) {
        if (!route.accepts(record)) continue
        const value = route.query.evaluate(message)
        if (value === true) {
          hit = true
          this.countersOf(route.name).match()
        } else if (value !== false) this.countersOf(route.name).undefinedOne()
      }
      if (hit) matched.push({ record, deviceId, headers: plan.enrich.apply(record.headers, deviceId, twin) })
    }
    for (const chunk of chunks(matched, plan.endpoint)) await this.deliver(chunk)
  }

  private async deliver(messages: RoutedMessage[]): Promise<void> {
    let delay = this.plan.endpoint.backoffMs
    for (let attempt = 1; ; attempt++) {
      // Read each attempt: an endpoint fixed through the API (a new URL) is used at the next try.
      const { sink, endpoint } = this.plan
      try {
        await sink.deliver(messages, this.abort.signal)
        this.delivered.inc(messages.length)
        this.counts.delivered += messages.length
        this.health = 'healthy'
        return
      } catch (err) {
        if (this.abort.signal.aborted) throw new GatewayError('E_SHUTTING_DOWN', 'routing stopped during a delivery; it is sent again after the restart')
        const error = toGatewayError(err, 'E_ENDPOINT_DELIVERY')
        this.failures.inc()
        this.counts.failedAttempts++
        this.health = 'unhealthy'
        this.lastError = { code: error.code, message: error.message.slice(0, MAX_ERROR_TEXT), at: new Date().toISOString() }
        if (attempt === 1) this.log.warn({ code: error.code, err: error.message }, 'endpoint delivery failed; retrying with back-off')
        if (!sink.retriesForever(err) && attempt >= endpoint.maxAttempts) return this.deadLetter(messages, error, attempt)
        await sleep(delay, undefined, { signal: this.abort.signal }).catch(() => undefined)
        delay = Math.min(delay * 2, endpoint.maxBackoffMs)
      }
    }
  }

  /** Nothing is dropped without a record: the messages, their error and where they came from. */
  private async deadLetter(messages: RoutedMessage[], error: GatewayError, attempts: number): Promise<void> {
    const at = new Date().toISOString()
    const records: OutgoingRecord[] = messages.map((m) => ({
      key: m.deviceId || null,
      value: m.record.value,
      timestamp: m.record.timestamp,
      headers: {
        ...m.headers,
        'dead-letter-endpoint': this.plan.endpoint.name,
        'dead-letter-error-code': error.code,
        'dead-letter-error': error.message.slice(0, MAX_ERROR_TEXT),
        'dead-letter-attempts': String(attempts),
        'dead-letter-source': `${m.record.topic}/${m.record.partition}/${m.record.offset}`,
        'dead-letter-time': at,
      },
    }))
    // A failure here rejects the batch: not committed, handled again after the restart.
    await this.ctx.stream.append(this.ctx.deadLetterTopic, records)
    this.deadLettered.inc(messages.length)
    this.counts.deadLettered += messages.length
    this.health = 'dead'
    this.log.error({ code: error.code, messages: messages.length, attempts }, 'endpoint refused a delivery maxAttempts times; its messages went to the dead-letter topic')
  }

  private countersOf(route: string): RouteCounters {
    let c = this.counters.get(route)
    if (!c) {
      const endpoint = this.plan.endpoint.name
      c = new RouteCounters(this.ctx.metrics.routeMatched.labels(route, endpoint), this.ctx.metrics.routeUndefined.labels(route, endpoint))
      this.counters.set(route, c)
    }
    return c
  }
}

class RouteCounters {
  matched = 0
  undefinedCondition = 0

  constructor(
    private readonly matchedMetric: Tally,
    private readonly undefinedMetric: Tally,
  ) {}

  match(): void {
    this.matched++
    this.matchedMetric.inc()
  }

  undefinedOne(): void {
    this.undefinedCondition++
    this.undefinedMetric.inc()
  }
}

function deviceIdOf(record: StoredRecord): string {
  return record.key ?? record.headers['device-id'] ?? ''
}

/** Webhook batches are cut at maxBatch messages and maxBatchBytes of payload; stream batches are not cut. */
function chunks(messages: RoutedMessage[], endpoint: EndpointDefinition): RoutedMessage[][] {
  if (messages.length === 0) return []
  if (endpoint.type !== 'webhook') return [messages]
  const out: RoutedMessage[][] = []
  let current: RoutedMessage[] = []
  let bytes = 0
  for (const m of messages) {
    if (current.length > 0 && (current.length >= endpoint.maxBatch || bytes + m.record.value.length > endpoint.maxBatchBytes)) {
      out.push(current)
      current = []
      bytes = 0
    }
    current.push(m)
    bytes += m.record.value.length
  }
  out.push(current)
  return out
}
