import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { profileArgs } from './closed-loop.js'
import { AGGREGATE_OUTPUT, aggregateTopic, benchAggregates } from './aggregates-fixtures.js'
import { startLoad, type LoadKind } from './aggregates-load.js'
import { aggregateStatuses, bucketDelta, defineAggregates, histogramQuantile, OutputTail, quantile, scrapeAggregates, type AggregateScrape, type AggregateStatus, type SeenOutput } from './aggregates-probe.js'
import { CLIENT_BOUND_CORES, writeConnections, type LoadgenResult } from './loadgen.js'
import { collectMemStats, type MemStats } from './mem-stats.js'
import { cpuSecondsOf, machineBusySeconds } from './routes-probe.js'
import { mqttPort, readTopic, sasCredentials, seedDevices, startGateway, waitReady, type Server } from './sim-bench.js'

/**
 * bench/aggregates end to end: the built gateway as a child process (embedded stream), 1,000
 * devices publishing QoS 1 as fast as the gateway acknowledges (or at --rate), once with the
 * three aggregates of aggregates-fixtures.ts and once without (the baseline: ingest alone, and
 * the gateway's memory without aggregates). Every second: /metrics (telemetry records, records
 * folded per aggregate, open windows, the emit-delay histogram), GET /api/aggregates (lag) and
 * the CPU of every process; all along, the output topic is read from this process, so each
 * output's emit delay is measured where a consumer would see it.
 *
 * Timeline from the first record written (t0): warm-up, the measured window, then MEMORY_TAIL_S
 * more seconds of the same load, in which the gateway's memory is taken after a full collection
 * (its pause falls outside the measured window); then the load stops and the run waits for every
 * aggregate's lag to reach 0 (drained) and every window to be closed and written.
 */

export interface AggregateE2eOptions {
  devices: number
  seconds: number
  warmupSeconds: number
  /** QoS 1 publishes in flight per connection. */
  window: number
  payload: number
  /** Publishes per second in all; absent: saturate. */
  rate?: number
  load: LoadKind
  windowMs: number
  latenessMs: number
  /** Gateway environment (STREAMGATE_ANALYTICS__POLL_MS and the like). */
  env: Record<string, string>
  profileDir?: string
  log: (line: string) => void
}

export interface Delays {
  /** Outputs the figures are over. */
  n: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

export interface AggregateFigures {
  name: string
  /** Source records read per second over the window: ingest minus the lag's growth. */
  processedPerSecond: number
  /** Records folded into windows per second (streamgate_aggregate_records_total{outcome="in"}). */
  foldedPerSecond: number
  /** processed / ingest over the window. */
  ratio: number
  lagAtWindowStart: number
  lagAtWindowEnd: number
  maxLag: number
  lagAtLoadEnd: number
  outputsPerSecond: number
  /** Window end to the output readable in the output topic (read every 20 ms from this process), windows ending inside the measured window. */
  visible: Delays
  /** Window end to the output record's timestamp (the processor's clock when it decided the output). */
  decided: Delays
  /** streamgate_aggregate_emit_delay_seconds over the measured window (window end to durable; buckets interpolated). */
  histogramP50Ms: number
  histogramP99Ms: number
  /** Windows ending after the generator stopped publishing: closed by the wall clock (the "quiet device" path). */
  afterLoad: Delays
  /** Over the whole run, after the drain. */
  counts: Record<string, number>
  outputs: number
  /** Sum of the outputs' `count`: every folded record is in exactly one output (tumbling windows). */
  outputRecordSum: number
  duplicateOutputs: number
  lastError: string | null
}

export interface AggregateRun {
  withAggregates: boolean
  /** The generator's PUBACKs per second over its measured window. */
  ingestPerSecond: number
  /** Telemetry records written per second over the sampled window (the gateway's counter). */
  recordsPerSecond: number
  windowSeconds: number
  loadgen: LoadgenResult
  gatewayCores: number
  /** The generator, in cores: sampled from /proc over the window (JSON publisher), or its own figure (C). */
  loadCores: number
  /** This process (sampling, reading the output topic), in cores. */
  benchCores: number
  loadSideCores: number
  otherCores: number
  clientBound: boolean
  /** After a full collection, MEMORY_TAIL_S into the tail of the load; with the open windows then. */
  memory: (MemStats & { windowsOpen: number }) | null
  /** From the end of the load to every aggregate's lag 0; null: not within DRAIN_LIMIT_S (or no aggregates). */
  drainSeconds: number | null
  /** From the end of the load to no window open (the last windows written). */
  closeSeconds: number | null
  telemetryRecords: number
  aggregates: AggregateFigures[]
}

const MEMORY_TAIL_S = 2
const DRAIN_LIMIT_S = 60

interface Sample extends AggregateScrape {
  statuses: Record<string, AggregateStatus | null> | null
  gatewayCpu: number
  loadCpu: number | null
  benchCpu: number
  machineCpu: number
}

function benchCpu(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

function safeCpu(pid: number | null): number | null {
  if (pid === null) return null
  try {
    return cpuSecondsOf(pid)
  } catch {
    return null
  }
}

async function sample(gateway: Server, origin: number, loadPid: number | null, withAggregates: boolean): Promise<Sample> {
  const scrape = await scrapeAggregates(gateway.httpUrl!, origin)
  const statuses = withAggregates ? await aggregateStatuses(gateway.httpUrl!) : null
  return { ...scrape, statuses, gatewayCpu: cpuSecondsOf(gateway.child.pid!), loadCpu: safeCpu(loadPid), benchCpu: benchCpu(), machineCpu: machineBusySeconds() }
}

const fmt = (v: number): string => Math.round(v).toLocaleString('en-US')
const lagOf = (s: Sample, name: string): number => s.statuses?.[name]?.lag ?? 0
const inOf = (s: AggregateScrape, name: string): number => s.records[name]?.in ?? 0

function progress(prev: Sample | undefined, s: Sample, t0: number, names: readonly string[]): string {
  const head = `    t=${(s.at - t0).toFixed(1).padStart(5)} s`
  if (!prev) return `${head}  records ${fmt(s.telemetry)}`
  const dt = s.at - prev.at
  const parts = [`${head}  ingest ${fmt((s.telemetry - prev.telemetry) / dt).padStart(7)}/s`]
  for (const n of names) parts.push(`${n} +${fmt((inOf(s, n) - inOf(prev, n)) / dt)}/s lag ${fmt(lagOf(s, n))} open ${fmt(s.windowsOpen[n] ?? 0)}`)
  const load = s.loadCpu !== null && prev.loadCpu !== null ? `, load ${fmt(((s.loadCpu - prev.loadCpu) / dt) * 100)} %` : ''
  parts.push(`gateway ${fmt(((s.gatewayCpu - prev.gatewayCpu) / dt) * 100)} % cpu${load}, machine ${fmt(((s.machineCpu - prev.machineCpu) / dt) * 100)} %`)
  return parts.join('; ')
}

function delays(values: number[]): Delays {
  return { n: values.length, p50Ms: quantile(values, 0.5), p99Ms: quantile(values, 0.99), maxMs: values.length ? Math.max(...values) : NaN }
}

interface Loaded {
  loadgen: LoadgenResult
  samples: Sample[]
  /** performance.now() at the start of the load. */
  origin: number
  /** Seconds since origin: first record written, end of the load. */
  t0: number
  loadEnd: number
  /** Date.now() when the generator stopped publishing (t0 plus its warm-up, window and tail). */
  stopWall: number
  memory: (MemStats & { windowsOpen: number }) | null
}

async function loadAndSample(o: AggregateE2eOptions, gateway: Server, connections: string, names: readonly string[]): Promise<Loaded> {
  const withAggregates = names.length > 0
  const origin = performance.now()
  const load = startLoad({ kind: o.load, port: mqttPort(gateway), connections, window: o.window, payloadBytes: o.payload, seconds: o.seconds + MEMORY_TAIL_S, warmupSeconds: o.warmupSeconds, ...(o.rate === undefined ? {} : { rate: o.rate }) })
  let done = false
  const finished = load.done.finally(() => (done = true))
  // t0: the first telemetry record (connecting 1,000 devices comes first and is not measured).
  let first = await scrapeAggregates(gateway.httpUrl!, origin)
  while (first.telemetry === 0) {
    if (done) throw new Error(`the load ended before a record was written: ${JSON.stringify(await finished)}`)
    await sleep(50)
    first = await scrapeAggregates(gateway.httpUrl!, origin)
  }
  const t0 = first.at
  const stopWall = first.wall + (o.warmupSeconds + o.seconds + MEMORY_TAIL_S) * 1000
  const memoryAt = t0 + o.warmupSeconds + o.seconds + 0.3
  const samples: Sample[] = []
  let memory: Loaded['memory'] = null
  let prev: Sample | undefined
  while (!done) {
    const s = await sample(gateway, origin, load.pid, withAggregates)
    if (done) break
    samples.push(s)
    o.log(progress(prev, s, t0, names))
    prev = s
    if (!memory && s.at >= memoryAt) {
      const windowsOpen = Object.values(s.windowsOpen).reduce((n, v) => n + v, 0)
      memory = { ...(await collectMemStats(gateway.child, gateway.memStatsFile)), windowsOpen }
      o.log(`    memory (after a full collection): rss ${fmt(memory.rss / 2 ** 20)} MiB, heap used ${fmt(memory.heapUsed / 2 ** 20)} MiB, ${fmt(windowsOpen)} windows open`)
    }
    const next = 1000 - (((performance.now() - origin) / 1000 - t0) * 1000 % 1000)
    await Promise.race([sleep(next), finished.catch(() => undefined)])
  }
  const loadgen = await finished
  return { loadgen, samples, origin, t0, loadEnd: (performance.now() - origin) / 1000, stopWall, memory }
}

/** Poll every 100 ms until `ok` holds for the statuses; seconds since `from` (origin based), or null after `limitS`. */
async function waitFor(gateway: Server, origin: number, from: number, limitS: number, ok: (s: Record<string, AggregateStatus | null>) => boolean): Promise<number | null> {
  for (;;) {
    const at = (performance.now() - origin) / 1000
    if (at - from > limitS) return null
    if (ok(await aggregateStatuses(gateway.httpUrl!))) return (performance.now() - origin) / 1000 - from
    await sleep(100)
  }
}

function inWindow(samples: Sample[], t0: number, o: AggregateE2eOptions): [Sample, Sample] {
  const start = t0 + o.warmupSeconds
  const inside = samples.filter((s) => s.at >= start - 0.05 && s.at <= start + o.seconds + 0.1)
  if (inside.length < 2) throw new Error(`only ${inside.length} samples in the measured window: run longer (--seconds)`)
  return [inside[0]!, inside[inside.length - 1]!]
}

function aggregateFigures(name: string, a: Sample, b: Sample, run: Loaded, final: AggregateScrape, finalStatus: AggregateStatus | null, seen: SeenOutput[], stored: SeenOutput[]): AggregateFigures {
  const dt = b.at - a.at
  const ingest = (b.telemetry - a.telemetry) / dt
  const processed = ingest - (lagOf(b, name) - lagOf(a, name)) / dt
  const mine = seen.filter((s) => s.aggregate === name)
  const steady = mine.filter((s) => s.windowEnd >= a.wall && s.windowEnd <= b.wall)
  const after = mine.filter((s) => s.windowEnd > run.stopWall)
  const buckets = bucketDelta(a.delayBuckets[name], b.delayBuckets[name])
  const outputs = stored.filter((s) => s.aggregate === name)
  const ids = new Set(outputs.map((s) => s.outputId))
  const loadEndSample = run.samples[run.samples.length - 1] ?? b
  return {
    name,
    processedPerSecond: processed,
    foldedPerSecond: (inOf(b, name) - inOf(a, name)) / dt,
    ratio: processed / ingest,
    lagAtWindowStart: lagOf(a, name),
    lagAtWindowEnd: lagOf(b, name),
    maxLag: Math.max(...run.samples.map((s) => lagOf(s, name))),
    lagAtLoadEnd: lagOf(loadEndSample, name),
    outputsPerSecond: steady.length / dt,
    visible: delays(steady.map((s) => s.seenAt - s.windowEnd)),
    decided: delays(steady.map((s) => s.decidedAt - s.windowEnd)),
    histogramP50Ms: histogramQuantile(buckets, 0.5) * 1000,
    histogramP99Ms: histogramQuantile(buckets, 0.99) * 1000,
    afterLoad: delays(after.map((s) => s.seenAt - s.windowEnd)),
    counts: { ...(finalStatus?.counts ?? final.records[name] ?? {}) },
    outputs: outputs.length,
    outputRecordSum: outputs.reduce((n, s) => n + s.count, 0),
    duplicateOutputs: outputs.length - ids.size,
    lastError: finalStatus?.lastError ? `${finalStatus.lastError.code}: ${finalStatus.lastError.message}` : null,
  }
}

/** One run: a fresh data dir and gateway, the aggregates when `withAggregates`, the load, the drain. */
export async function runAggregatesE2e(o: AggregateE2eOptions, withAggregates: boolean): Promise<AggregateRun> {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-aggregates-e2e-'))
  let gateway: Server | null = null
  let tail: OutputTail | null = null
  try {
    const devices = await seedDevices(dataDir, 'ag-', o.devices)
    const creds = sasCredentials(devices)
    const connections = writeConnections(join(dataDir, 'connections.tsv'), devices.map((d, i) => ({ ...creds(i), topic: aggregateTopic(d.deviceId, i, o.load === 'json') })))
    gateway = await startGateway(dataDir, o.env, [], withAggregates ? profileArgs(o.profileDir) : [])
    await waitReady(gateway)
    const definitions = withAggregates ? benchAggregates(o.windowMs, o.latenessMs) : []
    const names = definitions.map((d) => d.name)
    if (withAggregates) {
      await defineAggregates(gateway.httpUrl!, definitions)
      tail = new OutputTail(dataDir, AGGREGATE_OUTPUT)
      await tail.start()
    }
    const run = await loadAndSample(o, gateway, connections, names)
    const origin = run.origin
    let drainSeconds: number | null = null
    let closeSeconds: number | null = null
    if (withAggregates) {
      const all = (s: Record<string, AggregateStatus | null>, ok: (a: AggregateStatus) => boolean): boolean => names.every((n) => s[n] && ok(s[n]))
      drainSeconds = await waitFor(gateway, origin, run.loadEnd, DRAIN_LIMIT_S, (s) => all(s, (a) => a.lag === 0))
      closeSeconds = await waitFor(gateway, origin, run.loadEnd, DRAIN_LIMIT_S + (o.windowMs + o.latenessMs) / 1000, (s) => all(s, (a) => a.openWindows === 0))
      // The last outputs are checkpointed and appended up to analytics.emitIntervalMs after they are decided.
      await sleep(500)
    }
    const final = await scrapeAggregates(gateway.httpUrl!, origin)
    const finalStatuses = withAggregates ? await aggregateStatuses(gateway.httpUrl!) : {}
    const seen = tail?.seen ?? []
    await tail?.stop()
    tail = null
    await gateway.stop()
    gateway = null
    // The output topic as stored, for the totals and duplicates (the tail's view is for the delays).
    const stored: SeenOutput[] = withAggregates
      ? (await readTopic(dataDir, AGGREGATE_OUTPUT)).map((r) => ({ aggregate: r.headers.aggregate ?? '', outputId: r.headers['output-id'] ?? '', windowEnd: Number(r.headers['window-end']), decidedAt: r.timestamp, seenAt: NaN, count: Number((JSON.parse(r.value.toString('utf8')) as { count?: number }).count ?? 0) }))
      : []
    const [a, b] = inWindow(run.samples, run.t0, o)
    const dt = b.at - a.at
    const gatewayCores = (b.gatewayCpu - a.gatewayCpu) / dt
    const bench = (b.benchCpu - a.benchCpu) / dt
    const loadCores = a.loadCpu !== null && b.loadCpu !== null ? (b.loadCpu - a.loadCpu) / dt : run.loadgen.cpuShare
    const loadSideCores = loadCores + bench
    return {
      withAggregates,
      ingestPerSecond: run.loadgen.rate,
      recordsPerSecond: (b.telemetry - a.telemetry) / dt,
      windowSeconds: dt,
      loadgen: run.loadgen,
      gatewayCores,
      loadCores,
      benchCores: bench,
      loadSideCores,
      otherCores: Math.max(0, (b.machineCpu - a.machineCpu) / dt - gatewayCores - loadSideCores),
      // bench/routes' rule: the generator and this process together above half a core.
      clientBound: loadSideCores > CLIENT_BOUND_CORES,
      memory: run.memory,
      drainSeconds,
      closeSeconds,
      telemetryRecords: final.telemetry,
      aggregates: names.map((n) => aggregateFigures(n, a, b, run, final, finalStatuses[n] ?? null, seen, stored)),
    }
  } finally {
    await tail?.stop().catch(() => undefined)
    await gateway?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}
