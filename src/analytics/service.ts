import { createHash } from 'node:crypto'
import { GatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { EventStream } from '../stream/types.js'
import { AggregateProcessor, type AggregateCounts } from './aggregate-processor.js'
import { AlertProcessor, openAlertsOf, type AlertCounts, type OpenAlert } from './alert-processor.js'
import { checkAggregate, checkAlertRule, ruleAggregate, type AggregateDefinition, type AlertRuleDefinition } from './definitions.js'
import { ProcessorRunner, type RunnerSettings } from './processor-runner.js'
import type { AnalyticsDefinitions, AnalyticsStore, ProcessorOutput } from './types.js'

export interface AnalyticsTopics {
  telemetry: string
  deviceEvents: string
  alerts: string
  /** Topics the gateway writes itself: an aggregate may not write into one. */
  reserved: string[]
}

export interface AnalyticsSettings extends RunnerSettings {
  reloadIntervalMs: number
  topicPrefix: string
  partitions: number
}

export interface AnalyticsServiceOptions {
  store: AnalyticsStore
  stream: EventStream
  topics: AnalyticsTopics
  settings: AnalyticsSettings
  metrics: GatewayMetrics
  logger: Logger
}

export interface ProcessorStatus {
  name: string
  /** Records of the source not folded in yet, summed over partitions (-1: unknown now). */
  lag: number
  lastError: { code: string; message: string; at: string } | null
}

export interface AggregateStatus extends ProcessorStatus {
  openWindows: number
  counts: AggregateCounts
}

export interface AlertRuleStatus extends ProcessorStatus {
  open: number
  counts: AlertCounts
}

interface Running {
  kind: 'aggregate' | 'alert'
  name: string
  fingerprint: string
  runners: ProcessorRunner[]
  /** Counter values already added to the metrics, per processor instance (each counts from zero). */
  reported: WeakMap<object, Record<string, number>>
}

/**
 * Windowed aggregates and alert rules of the registry, each run as one ProcessorRunner per
 * partition of its source topic (processor-runner.ts: exactly-once output through checkpoints in
 * the registry), never as a stage of the publish path. Definitions are re-read on an API change
 * (reload()) and when the registry's change counter moves (the CLI, another process).
 */
export class AnalyticsService {
  private readonly running = new Map<string, Running>()
  private definitions: AnalyticsDefinitions = { version: -1, aggregates: [], alertRules: [] }
  private reloading: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | null = null
  private stopped = false
  private started = false
  private readonly log: Logger

  constructor(private readonly options: AnalyticsServiceOptions) {
    this.log = options.logger.child({ component: 'analytics' })
    options.metrics.watchAnalytics(() => this.gauges())
    options.metrics.syncAggregateCounts = () => {
      for (const run of this.running.values()) this.reportCounts(run)
    }
  }

  async start(): Promise<void> {
    this.started = true
    await this.reload()
    this.timer = setInterval(() => void this.poll(), this.options.settings.reloadIntervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    await this.reloading.catch(() => undefined)
    await Promise.all([...this.running.values()].flatMap((r) => r.runners.map((runner) => runner.stop())))
    this.running.clear()
  }

  reload(): Promise<void> {
    const next = this.reloading.catch(() => undefined).then(() => this.reconcile())
    this.reloading = next
    return next
  }

  /** An aggregate as the API would store it: it may not write into the gateway's own topics. */
  checkAggregate(input: unknown): AggregateDefinition {
    return checkAggregateFor(input, this.options.settings.topicPrefix, this.options.topics.reserved)
  }

  checkAlertRule(input: unknown): AlertRuleDefinition {
    return checkAlertRule(input)
  }

  async aggregateStatus(name: string): Promise<AggregateStatus | null> {
    const run = this.running.get(`aggregate:${name}`)
    if (!run) return null
    const processors = run.runners.map((r) => r.current as AggregateProcessor | null).filter((p) => p !== null)
    const counts: AggregateCounts = { in: 0, late: 0, adjusted: 0, skipped: 0, untimed: 0 }
    for (const p of processors) for (const k of Object.keys(counts) as Array<keyof AggregateCounts>) counts[k] += p.counts[k]
    return { name, ...(await this.common(run)), openWindows: processors.reduce((n, p) => n + p.openWindows, 0), counts }
  }

  async alertRuleStatus(name: string): Promise<AlertRuleStatus | null> {
    const run = this.running.get(`alert:${name}`)
    if (!run) return null
    const processors = run.runners.map((r) => r.current as AlertProcessor | null).filter((p) => p !== null)
    const counts: AlertCounts = { evaluated: 0, raised: 0, cleared: 0 }
    for (const p of processors) for (const k of Object.keys(counts) as Array<keyof AlertCounts>) counts[k] += p.counts[k]
    return { name, ...(await this.common(run)), open: processors.reduce((n, p) => n + p.open().length, 0), counts }
  }

  /** Open alerts: from the running processors, or from the checkpoints for rules not running here. */
  async openAlerts(): Promise<OpenAlert[]> {
    const out: OpenAlert[] = []
    const definitions = this.started ? this.definitions : await this.options.store.load()
    for (const rule of definitions.alertRules) {
      const run = this.running.get(`alert:${rule.name}`)
      if (run) {
        for (const runner of run.runners) out.push(...((runner.current as AlertProcessor | null)?.open() ?? []))
        continue
      }
      out.push(...(await openAlertsFromCheckpoints(this.options.store, rule)))
    }
    return out.sort((a, b) => a.raisedAt.localeCompare(b.raisedAt) || a.rule.localeCompare(b.rule) || a.deviceId.localeCompare(b.deviceId))
  }

  private async common(run: Running): Promise<Omit<ProcessorStatus, 'name'>> {
    let lag = 0
    for (const r of run.runners) {
      const l = await r.lag().catch(() => -1)
      lag = lag < 0 || l < 0 ? -1 : lag + l
    }
    const lastError = run.runners.map((r) => r.lastError).filter((e) => e !== null).sort((a, b) => b.at.localeCompare(a.at))[0] ?? null
    return { lag, lastError }
  }

  private gauges(): { windows: Record<string, number>; alerts: Record<string, number> } {
    const windows: Record<string, number> = {}
    const alerts: Record<string, number> = {}
    for (const run of this.running.values()) {
      for (const runner of run.runners) {
        const p = runner.current
        if (p instanceof AggregateProcessor) windows[run.name] = (windows[run.name] ?? 0) + p.openWindows
        else if (p instanceof AlertProcessor) alerts[run.name] = (alerts[run.name] ?? 0) + p.open().length
        else if (run.kind === 'aggregate') windows[run.name] ??= 0
        else alerts[run.name] ??= 0
      }
    }
    return { windows, alerts }
  }

  private async poll(): Promise<void> {
    if (this.stopped) return
    try {
      if ((await this.options.store.version()) !== this.definitions.version) await this.reload()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read the aggregates and alert rules; keeping the ones running')
    }
  }

  private async reconcile(): Promise<void> {
    if (this.stopped) return
    const definitions = await this.options.store.load()
    if (!this.started) {
      this.definitions = definitions
      return
    }
    if (definitions.version === this.definitions.version) return
    const wanted = new Map<string, { kind: 'aggregate' | 'alert'; name: string; fingerprint: string; make: () => Promise<ProcessorRunner[]> }>()
    const aggregates = new Map(definitions.aggregates.map((a) => [a.name, a]))
    for (const aggregate of definitions.aggregates) {
      if (!aggregate.enabled) continue
      const fingerprint = fingerprintOf(aggregate)
      wanted.set(`aggregate:${aggregate.name}`, { kind: 'aggregate', name: aggregate.name, fingerprint, make: () => this.aggregateRunners(aggregate, fingerprint) })
    }
    for (const rule of definitions.alertRules) {
      if (!rule.enabled) continue
      const source = ruleAggregate(rule)
      const aggregate = source === undefined ? undefined : aggregates.get(source)
      if (source !== undefined && !aggregate) continue
      // The rule reads the aggregate's output topic: a change of that topic is a change of the rule.
      const fingerprint = fingerprintOf({ rule, output: aggregate?.output })
      wanted.set(`alert:${rule.name}`, { kind: 'alert', name: rule.name, fingerprint, make: () => this.alertRunners(rule, aggregate, fingerprint) })
    }
    for (const [id, run] of this.running) {
      if (wanted.get(id)?.fingerprint === run.fingerprint) continue
      this.running.delete(id)
      this.reportCounts(run)
      await Promise.all(run.runners.map((r) => r.stop()))
    }
    for (const [id, want] of wanted) {
      if (this.running.has(id)) continue
      try {
        const runners = await want.make()
        this.running.set(id, { kind: want.kind, name: want.name, fingerprint: want.fingerprint, runners, reported: new WeakMap() })
        for (const r of runners) r.start()
      } catch (err) {
        this.log.error({ processor: id, err: (err as Error).message }, 'could not start; tried again at the next reload')
        definitions.version = -1
      }
    }
    this.definitions = definitions
    this.log.info({ aggregates: definitions.aggregates.length, alertRules: definitions.alertRules.length, running: this.running.size }, 'aggregates and alert rules loaded')
  }

  private async aggregateRunners(aggregate: AggregateDefinition, fingerprint: string): Promise<ProcessorRunner[]> {
    const { topics, settings, metrics } = this.options
    const source = aggregate.source === 'telemetry' ? topics.telemetry : topics.deviceEvents
    const output = settings.topicPrefix + aggregate.output
    const delay = metrics.aggregateEmitDelay.labels(aggregate.name)
    return this.runners(`aggregate:${aggregate.name}`, fingerprint, source, output, (state) => new AggregateProcessor(aggregate, state), (outputs, now) => {
      for (const o of outputs) delay.observe(Math.max(0, now - o.eventTime) / 1000)
    })
  }

  private async alertRunners(rule: AlertRuleDefinition, aggregate: AggregateDefinition | undefined, fingerprint: string): Promise<ProcessorRunner[]> {
    const { topics, settings, metrics } = this.options
    const source = aggregate ? settings.topicPrefix + aggregate.output : topics.telemetry
    const raised = metrics.alertEvents.labels(rule.name, 'alert-raised')
    const cleared = metrics.alertEvents.labels(rule.name, 'alert-cleared')
    return this.runners(`alert:${rule.name}`, fingerprint, source, topics.alerts, (state) => new AlertProcessor(rule, state), (outputs) => {
      for (const o of outputs) (o.record.headers?.alertType === 'raised' ? raised : cleared).inc()
    })
  }

  private async runners(processorId: string, fingerprint: string, topic: string, outputTopic: string, make: (state: unknown) => AggregateProcessor | AlertProcessor, emitted: (outputs: ProcessorOutput[], now: number) => void): Promise<ProcessorRunner[]> {
    const { stream, store, settings, logger } = this.options
    await stream.ensureTopics([{ name: topic, partitions: settings.partitions }, { name: outputTopic, partitions: settings.partitions }])
    const partitions = await stream.partitionCount(topic)
    return Array.from({ length: partitions }, (_, partition) => new ProcessorRunner({ stream, store, processorId, fingerprint, topic, partition, outputTopic, make, emitted, logger, settings }))
  }

  /** Aggregate counters into the metrics as deltas (each processor instance counts from zero). */
  private reportCounts(run: Running): void {
    if (run.kind !== 'aggregate') return
    const counter = this.options.metrics.aggregateRecords
    for (const runner of run.runners) {
      const p = runner.current
      if (!(p instanceof AggregateProcessor)) continue
      let seen = run.reported.get(p)
      if (!seen) run.reported.set(p, (seen = { in: 0, late: 0, adjusted: 0, skipped: 0, untimed: 0 }))
      for (const outcome of Object.keys(p.counts) as Array<keyof AggregateCounts>) {
        const delta = p.counts[outcome] - seen[outcome]!
        if (delta > 0) counter.labels(run.name, outcome).inc(delta)
        seen[outcome] = p.counts[outcome]
      }
    }
  }
}

/** checkAggregate, and the output may not be a topic the gateway writes itself (`reserved`, with the prefix). */
export function checkAggregateFor(input: unknown, topicPrefix: string, reserved: readonly string[]): AggregateDefinition {
  const aggregate = checkAggregate(input)
  const output = topicPrefix + aggregate.output
  if (reserved.includes(output)) {
    throw new GatewayError('E_BAD_REQUEST', `aggregate.output: "${output}" is a topic the gateway writes itself; aggregate into a topic of its own`, { field: 'output' })
  }
  return aggregate
}

/** Everything but `enabled` (turning a definition off and on keeps its state). */
function fingerprintOf(definition: object): string {
  const { enabled: _enabled, ...rest } = definition as { enabled?: boolean }
  return createHash('sha256').update(JSON.stringify(rest)).digest('base64url').slice(0, 22)
}

export async function openAlertsFromCheckpoints(store: AnalyticsStore, rule: AlertRuleDefinition): Promise<OpenAlert[]> {
  const out: OpenAlert[] = []
  for (const { checkpoint } of await store.checkpoints(`alert:${rule.name}`)) out.push(...openAlertsOf(rule, checkpoint.state))
  return out
}
