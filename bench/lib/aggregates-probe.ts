import { setTimeout as sleep } from 'node:timers/promises'
import { createEventStream } from '../../src/app/backends.js'
import { loadConfig } from '../../src/config/load.js'
import type { EventStream } from '../../src/stream/types.js'
import type { BenchAggregate } from './aggregates-fixtures.js'
import { BENCH_ADMIN_TOKEN } from './sim-bench.js'

/**
 * What bench/aggregates reads from the gateway child: its aggregates defined through the HTTP
 * API, their status (lag, open windows, counts) from GET /api/aggregates, its counters and the
 * emit-delay histogram from /metrics, and the output records as a consumer sees them (the
 * output topic of the embedded stream read from this process while the gateway runs, as
 * `streamgate tail` does).
 */

const auth = { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` }

export interface AggregateScrape {
  /** Seconds since the run's origin (performance.now() based). */
  at: number
  /** Date.now() at the scrape. */
  wall: number
  /** streamgate_telemetry_records_total: the telemetry topic's growth. */
  telemetry: number
  /** streamgate_aggregate_records_total by aggregate, then outcome. */
  records: Record<string, Record<string, number>>
  /** streamgate_aggregate_windows_open. */
  windowsOpen: Record<string, number>
  /** streamgate_aggregate_emit_delay_seconds: cumulative bucket counts by upper bound (s), by aggregate. */
  delayBuckets: Record<string, Array<[number, number]>>
}

/** One metric line: name, optional labels, value (Prometheus text format 0.0.4). */
const LINE = /^([a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN|\+Inf)$/

const label = (labels: string | undefined, name: string): string => new RegExp(`(?:^|,)${name}="([^"]*)"`).exec(labels ?? '')?.[1] ?? ''

export async function scrapeAggregates(httpUrl: string, origin: number): Promise<AggregateScrape> {
  const text = await (await fetch(`${httpUrl}/metrics`, { headers: auth })).text()
  const scrape: AggregateScrape = { at: (performance.now() - origin) / 1000, wall: Date.now(), telemetry: 0, records: {}, windowsOpen: {}, delayBuckets: {} }
  for (const line of text.split('\n')) {
    const m = LINE.exec(line)
    if (!m) continue
    const [, name, labels, raw] = m
    const value = Number(raw)
    if (name === 'streamgate_telemetry_records_total') scrape.telemetry += value
    else if (name === 'streamgate_aggregate_records_total') (scrape.records[label(labels, 'aggregate')] ??= {})[label(labels, 'outcome')] = value
    else if (name === 'streamgate_aggregate_windows_open') scrape.windowsOpen[label(labels, 'aggregate')] = value
    else if (name === 'streamgate_aggregate_emit_delay_seconds_bucket') {
      const le = label(labels, 'le')
      ;(scrape.delayBuckets[label(labels, 'aggregate')] ??= []).push([le === '+Inf' ? Infinity : Number(le), value])
    }
  }
  return scrape
}

export interface AggregateStatus {
  lag: number
  openWindows: number
  counts: Record<string, number>
  lastError: { code: string; message: string } | null
}

/** GET /api/aggregates: every aggregate's status by name (null while it does not run). */
export async function aggregateStatuses(httpUrl: string): Promise<Record<string, AggregateStatus | null>> {
  const res = await fetch(`${httpUrl}/api/aggregates`, { headers: auth })
  if (res.status !== 200) throw new Error(`GET /api/aggregates: ${res.status} ${await res.text()}`)
  const { aggregates } = (await res.json()) as { aggregates: Array<{ name: string; status: AggregateStatus | null }> }
  return Object.fromEntries(aggregates.map((a) => [a.name, a.status]))
}

export async function defineAggregates(httpUrl: string, aggregates: readonly BenchAggregate[]): Promise<void> {
  for (const a of aggregates) {
    const res = await fetch(`${httpUrl}/api/aggregates/${a.name}`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(a.body) })
    if (res.status !== 200 && res.status !== 201) throw new Error(`PUT /api/aggregates/${a.name}: ${res.status} ${await res.text()}`)
  }
}

/**
 * A quantile from cumulative histogram buckets (the difference of two scrapes), interpolated
 * linearly inside the bucket as Prometheus' histogram_quantile does; the last finite bound when
 * it falls in +Inf.
 */
export function histogramQuantile(buckets: ReadonlyArray<[number, number]>, q: number): number {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0])
  const total = sorted[sorted.length - 1]?.[1] ?? 0
  if (total === 0) return NaN
  const rank = q * total
  let prevBound = 0
  let prevCount = 0
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound
      return prevBound + ((bound - prevBound) * (rank - prevCount)) / Math.max(count - prevCount, 1)
    }
    prevBound = bound
    prevCount = count
  }
  return prevBound
}

/** Bucket counts of `b` minus those of `a` (same bounds). */
export function bucketDelta(a: ReadonlyArray<[number, number]> | undefined, b: ReadonlyArray<[number, number]> | undefined): Array<[number, number]> {
  const before = new Map(a ?? [])
  return (b ?? []).map(([le, n]) => [le, n - (before.get(le) ?? 0)])
}

export interface SeenOutput {
  aggregate: string
  outputId: string
  windowEnd: number
  /** The record's timestamp: when the processor decided the output (its `now`). */
  decidedAt: number
  /** Date.now() when this process first read it from the output topic. */
  seenAt: number
  count: number
}

/**
 * Reads the output topic every `pollMs` from this process while the gateway writes it, and
 * stamps each record with the time it was first readable here: window end to that time is the
 * emit delay a consumer of the topic sees (up to `pollMs` of it is this reader's own).
 */
export class OutputTail {
  readonly seen: SeenOutput[] = []
  private stopped = false
  private loop: Promise<void> | null = null
  private stream: EventStream | null = null

  constructor(
    private readonly dataDir: string,
    private readonly topic: string,
    private readonly pollMs = 20,
  ) {}

  async start(): Promise<void> {
    const config = loadConfig({ env: {}, overrides: { dataDir: this.dataDir, 'log.level': 'silent' } })
    this.stream = createEventStream(config, 'tool')
    await this.stream.start([])
    this.loop = this.run(this.stream)
  }

  /** Reads until nothing new came for one poll, then closes the stream. */
  async stop(): Promise<void> {
    this.stopped = true
    await this.loop
    await this.stream?.stop()
  }

  private async run(stream: EventStream): Promise<void> {
    const cursors = new Map<number, number>()
    for (;;) {
      let got = 0
      const partitions = await stream.offsets(this.topic).catch(() => [])
      for (const p of partitions) {
        let offset = cursors.get(p.partition) ?? p.low
        while (offset < p.high) {
          const batch = await stream.read(this.topic, p.partition, offset, 5000)
          if (batch.length === 0) break
          const now = Date.now()
          for (const r of batch) {
            let count = 0
            try {
              count = Number((JSON.parse(r.value.toString('utf8')) as { count?: number }).count ?? 0)
            } catch {
              // Not an output of these aggregates.
            }
            this.seen.push({ aggregate: r.headers.aggregate ?? '', outputId: r.headers['output-id'] ?? '', windowEnd: Number(r.headers['window-end']), decidedAt: r.timestamp, seenAt: now, count })
          }
          got += batch.length
          offset = batch[batch.length - 1]!.offset + 1
        }
        cursors.set(p.partition, offset)
      }
      if (this.stopped && got === 0) return
      await sleep(this.pollMs)
    }
  }
}

/** The q-quantile of `values` (nearest rank); NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}
