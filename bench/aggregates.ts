import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { canBuildLoadgen } from './lib/loadgen.js'
import type { LoadKind } from './lib/aggregates-load.js'
import { runAggregatesE2e, type AggregateRun, type Delays } from './lib/aggregates-e2e.js'
import { measureWindowMemory, type WindowMemory } from './lib/aggregates-memory.js'

/**
 * bench/aggregates: windowed aggregates against saturated ingest on the embedded stream.
 *
 *   memory     the state of an open window, on the processors alone (child process, heap after
 *              a full collection): per device and aggregate with one window each, and per
 *              further window; and the checkpoint JSON each costs.
 *   baseline   the built gateway (child process) under the load below with no aggregates:
 *              ingest alone, and the gateway's memory to compare with.
 *   aggregates the same load with 3 aggregates over the telemetry topic (1-second tumbling
 *              windows, every record matching every aggregate, one group per device): ingest,
 *              records processed per second per aggregate, lag, time to drain after the load,
 *              emit delay (window end to the output record, p50/p99) measured three ways, and
 *              the gateway's memory per open window (against the baseline).
 *
 * Load: 1,000 devices (SAS, QoS 1), each keeping --window publishes unacknowledged (saturated),
 * or --rate publishes/s in all. --load json (default) sends JSON bodies ({"temp":..,"hum":..})
 * from a Node child process, which costs more CPU than the C generator and may make the run
 * client-bound (printed); --load c uses bench/loadgen (cheap, but never JSON: every function then
 * skips every record, and only the windowing, counts and outputs are exercised).
 *
 *   npm run bench:aggregates [-- --seconds 10 --warmup 3 --devices 1000 --window 4 --payload 100]
 *                            [--load json|c --rate N --window-ms 1000 --lateness-ms 0]
 *                            [--poll-ms N --emit-interval-ms N --read-batch N --only memory,baseline,aggregates]
 *                            [--profile-dir DIR --json]
 *
 * --json prints one JSON document on stdout and the human-readable report on stderr.
 */
const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    window: { type: 'string', default: '4' },
    payload: { type: 'string', default: '100' },
    rate: { type: 'string' },
    load: { type: 'string', default: 'json' },
    'window-ms': { type: 'string', default: '1000' },
    'lateness-ms': { type: 'string', default: '0' },
    /** analytics.pollMs, analytics.emitIntervalMs, analytics.readBatch (the gateway's defaults when absent). */
    'poll-ms': { type: 'string' },
    'emit-interval-ms': { type: 'string' },
    'read-batch': { type: 'string' },
    only: { type: 'string', default: 'memory,baseline,aggregates' },
    /** Write a V8 CPU profile of the gateway with aggregates into this directory (--cpu-prof). */
    'profile-dir': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
})

const PARTS = ['memory', 'baseline', 'aggregates'] as const
const ONLY = new Set(values.only.split(','))
for (const part of ONLY) {
  if ((PARTS as readonly string[]).includes(part)) continue
  process.stderr.write(`bench/aggregates: --only takes a comma-separated list of ${PARTS.join(', ')}, not "${part}"\n`)
  process.exit(2)
}
if (values.load !== 'json' && values.load !== 'c') {
  process.stderr.write(`bench/aggregates: --load is json or c, not "${values.load}"\n`)
  process.exit(2)
}

/** Aims of the issue, and what keeping up is taken to mean here (as bench/routes does). */
const AIM_KEEP_UP_RATIO = 0.98
const AIM_MAX_LAG_SECONDS_OF_INGEST = 1
const AIM_DRAIN_SECONDS = 5
const AIM_EMIT_P99_MS = 1000

const print = (line = ''): void => void (values.json ? process.stderr : process.stdout).write(`${line}\n`)
const fmt = (v: number, d = 0): string => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a')
const pct = (v: number, d = 0): string => `${fmt(v * 100, d)} %`
const ms = (d: Delays): string => `${fmt(d.p50Ms)} / ${fmt(d.p99Ms)} / ${fmt(d.maxMs)}`

const env: Record<string, string> = {}
if (values['poll-ms']) env.STREAMGATE_ANALYTICS__POLL_MS = values['poll-ms']
if (values['emit-interval-ms']) env.STREAMGATE_ANALYTICS__EMIT_INTERVAL_MS = values['emit-interval-ms']
if (values['read-batch']) env.STREAMGATE_ANALYTICS__READ_BATCH = values['read-batch']

const o = {
  devices: Number(values.devices),
  seconds: Number(values.seconds),
  warmupSeconds: Number(values.warmup),
  window: Number(values.window),
  payload: Number(values.payload),
  ...(values.rate ? { rate: Number(values.rate) } : {}),
  load: values.load as LoadKind,
  windowMs: Number(values['window-ms']),
  latenessMs: Number(values['lateness-ms']),
  env,
  ...(values['profile-dir'] ? { profileDir: values['profile-dir'] } : {}),
  log: print,
}
const emitAimMs = AIM_EMIT_P99_MS + o.latenessMs

function reportMemory(m: WindowMemory): void {
  print()
  print('| processor state (3 aggregates, no gateway) | value |')
  print('|---|---|')
  print(`| heap per open window, one window per device and aggregate (device state included; ${fmt(m.openWindows.one)} windows) | ${fmt(m.bytesPerDeviceWindow)} bytes |`)
  print(`| heap per further window of a device (${fmt(m.openWindows.ten)} windows at 10 per device) | ${fmt(m.bytesPerExtraWindow)} bytes |`)
  print(`| checkpoint JSON per open window (each commit writes the partition's whole state) | ${fmt(m.checkpointBytesPerDeviceWindow)} bytes, further windows ${fmt(m.checkpointBytesPerExtraWindow)} bytes |`)
  const total = Object.values(m.foldUsPerRecord).reduce((n, v) => n + v, 0)
  for (const [name, us] of Object.entries(m.foldUsPerRecord)) print(`| process() alone, ${name}: µs per record (${fmt(m.foldRecords)} records in batches of 1,000, one core) | ${fmt(us, 2)} µs (${fmt(1e6 / us)} records/s) |`)
  print(`| process() alone, all 3 aggregates: records/s on one core | ${fmt(1e6 / total)} |`)
}

function runRow(label: string, r: AggregateRun): string {
  const bound = r.clientBound ? ' CLIENT-BOUND' : ''
  return `| ${label} | ${fmt(r.ingestPerSecond)} | ${fmt(r.recordsPerSecond)} | ${pct(r.gatewayCores)} | ${pct(r.loadCores)} | ${pct(r.benchCores)} | ${pct(r.loadSideCores)}${bound} | ${pct(r.otherCores)} |`
}

function reportRuns(alone: AggregateRun | null, agg: AggregateRun | null): void {
  print()
  print(`| run | ingest msgs/s (PUBACKs) | records/s written | gateway CPU | generator CPU | bench process CPU (sampling, output reader) | load side | other processes |`)
  print('|---|---|---|---|---|---|---|---|')
  if (alone) print(runRow('ingest alone', alone))
  if (agg) print(runRow(`with ${agg.aggregates.length} aggregates`, agg))
  if (alone && agg) print(`ingest with aggregates / ingest alone: ${fmt(agg.recordsPerSecond / alone.recordsPerSecond, 3)}${alone.clientBound || agg.clientBound ? ' (a run was client-bound: not a gateway figure)' : ''}`)
  const g = agg?.loadgen ?? alone?.loadgen
  if (g) print(`generator PUBACK latency p50 / p99: ${fmt(g.p50Ms, 1)} / ${fmt(g.p99Ms, 1)} ms; ${g.connected} of ${g.conns} connected, ${g.failed} failed`)
}

function reportAggregates(r: AggregateRun): void {
  print()
  print('| aggregate | records processed/s | folded/s | processed / ingest | lag at window start → end | max lag | outputs/s |')
  print('|---|---|---|---|---|---|---|')
  for (const a of r.aggregates) print(`| ${a.name} | ${fmt(a.processedPerSecond)} | ${fmt(a.foldedPerSecond)} | ${fmt(a.ratio, 3)} | ${fmt(a.lagAtWindowStart)} → ${fmt(a.lagAtWindowEnd)} | ${fmt(a.maxLag)} | ${fmt(a.outputsPerSecond)} |`)
  print()
  print('emit delay, window end to output, ms (windows ending in the measured window):')
  print('  readable: this process reads the output topic every 20 ms while the gateway writes it (what a consumer sees);')
  print('  decided: the output record\'s timestamp, the processor\'s clock when it closed the window (before the checkpoint and append);')
  print('  histogram: streamgate_aggregate_emit_delay_seconds between the window\'s first and last scrape, observed on the gateway\'s')
  print('  event loop once the append resolved, interpolated inside buckets 0.05/0.1/0.25/0.5/1/2 s (coarse)')
  print()
  print('| aggregate | outputs | readable in the output topic p50 / p99 / max | decided (record timestamp) p50 / p99 | histogram (durable) p50 / p99 | windows ending after the generator stopped (closed by the clock) p50 / p99 / max |')
  print('|---|---|---|---|---|---|')
  for (const a of r.aggregates) print(`| ${a.name} | ${fmt(a.visible.n)} | ${ms(a.visible)} | ${fmt(a.decided.p50Ms)} / ${fmt(a.decided.p99Ms)} | ${fmt(a.histogramP50Ms)} / ${fmt(a.histogramP99Ms)} | ${ms(a.afterLoad)} (${fmt(a.afterLoad.n)}) |`)
  print()
  print('| aggregate | folded (in) | late | skipped | outputs | sum of outputs\' count | duplicate outputs | folded / telemetry records | last error |')
  print('|---|---|---|---|---|---|---|---|---|')
  for (const a of r.aggregates) {
    const c = a.counts
    print(`| ${a.name} | ${fmt(c.in ?? 0)} | ${fmt(c.late ?? 0)} | ${fmt(c.skipped ?? 0)} | ${fmt(a.outputs)} | ${fmt(a.outputRecordSum)} | ${fmt(a.duplicateOutputs)} | ${fmt((c.in ?? 0) / Math.max(r.telemetryRecords, 1), 4)} | ${a.lastError ?? '–'} |`)
  }
  print()
  print(`time to drain (every aggregate's lag 0 after the load stopped): ${r.drainSeconds === null ? 'not drained within the limit' : `${fmt(r.drainSeconds, 1)} s`}; every window written: ${r.closeSeconds === null ? 'not within the limit' : `${fmt(r.closeSeconds, 1)} s`} after the load`)
}

function memoryPerWindow(alone: AggregateRun | null, agg: AggregateRun | null): { rss: number; heap: number; windows: number } | null {
  if (!alone?.memory || !agg?.memory || agg.memory.windowsOpen === 0) return null
  const windows = agg.memory.windowsOpen
  return { rss: (agg.memory.rss - alone.memory.rss) / windows, heap: (agg.memory.heapUsed - alone.memory.heapUsed) / windows, windows }
}

function reportGatewayMemory(alone: AggregateRun | null, agg: AggregateRun | null): void {
  if (!alone?.memory && !agg?.memory) return
  print()
  print(`gateway memory, ${fmt(o.seconds + o.warmupSeconds, 0)} s into the load (still running), after a full collection (SIGUSR2, bench/lib/mem-stats.ts):`)
  print()
  print('| run | RSS | heap used | heap total | external | windows open |')
  print('|---|---|---|---|---|---|')
  const mib = (b: number): string => `${fmt(b / 2 ** 20, 1)} MiB`
  for (const [label, r] of [['ingest alone', alone], ['with aggregates', agg]] as const) if (r?.memory) print(`| ${label} | ${mib(r.memory.rss)} | ${mib(r.memory.heapUsed)} | ${mib(r.memory.heapTotal)} | ${mib(r.memory.external)} | ${fmt(r.memory.windowsOpen)} |`)
  const per = memoryPerWindow(alone, agg)
  if (per) print(`with aggregates minus alone, per open window: heap ${fmt(per.heap)} bytes, RSS ${fmt(per.rss)} bytes (everything the aggregates hold under this load: device states, runners' read batches, checkpoints in the making; the RSS delta is mostly not per window: it holds e.g. the page cache of the stream's read connection, up to 16 MiB, unused without consumers, and the collector's reserve (heap total), which grow with the work, not with the windows)`)
}

interface Aim {
  figure: string
  value: string
  aim: string
  met: boolean | null
  note?: string
}

function aims(alone: AggregateRun | null, agg: AggregateRun | null, mem: WindowMemory | null): Aim[] {
  const out: Aim[] = []
  const keepAim = `every aggregate >= ${AIM_KEEP_UP_RATIO} of ingest; max lag <= ${AIM_MAX_LAG_SECONDS_OF_INGEST} s of ingest; drained within ${AIM_DRAIN_SECONDS} s`
  const emitAim = `p99 < ${fmt(emitAimMs)} ms (1 s + allowed lateness ${fmt(o.latenessMs)} ms)`
  if (!agg) {
    out.push({ figure: 'processing keeps up with ingest', value: 'not measured', aim: keepAim, met: null })
    out.push({ figure: 'emit delay p99', value: 'not measured', aim: emitAim, met: null })
  } else {
    const note = agg.clientBound ? 'client-bound: ingest was not saturated by the gateway' : undefined
    const slowest = Math.min(...agg.aggregates.map((a) => a.ratio))
    const maxLag = Math.max(...agg.aggregates.map((a) => a.maxLag))
    const drained = agg.drainSeconds === null ? 'not drained' : `drained in ${fmt(agg.drainSeconds, 1)} s`
    const met = slowest >= AIM_KEEP_UP_RATIO && maxLag <= agg.recordsPerSecond * AIM_MAX_LAG_SECONDS_OF_INGEST && agg.drainSeconds !== null && agg.drainSeconds <= AIM_DRAIN_SECONDS
    out.push({ figure: `processing / ingest at ${fmt(agg.recordsPerSecond)} records/s (slowest aggregate)`, value: `${fmt(slowest, 3)}; max lag ${fmt(maxLag)}; ${drained}`, aim: keepAim, met, ...(note ? { note } : {}) })
    const p99 = Math.max(...agg.aggregates.map((a) => a.visible.p99Ms))
    out.push({ figure: 'emit delay p99, window end to readable output (worst aggregate)', value: `${fmt(p99)} ms`, aim: emitAim, met: Number.isFinite(p99) ? p99 < emitAimMs : false, ...(note ? { note } : {}) })
  }
  const per = memoryPerWindow(alone, agg)
  out.push({ figure: 'memory per open window, gateway (heap delta / windows open)', value: per ? `${fmt(per.heap)} bytes heap, ${fmt(per.rss)} bytes RSS over ${fmt(per.windows)} windows` : 'not measured', aim: 'reported', met: null })
  out.push({ figure: 'memory per open window, processor state', value: mem ? `${fmt(mem.bytesPerDeviceWindow)} bytes (first of a device), ${fmt(mem.bytesPerExtraWindow)} bytes (each further)` : 'not measured', aim: 'reported', met: null })
  if (alone && agg) out.push({ figure: 'ingest with aggregates / ingest alone', value: fmt(agg.recordsPerSecond / alone.recordsPerSecond, 3), aim: 'reported', met: null, ...(alone.clientBound || agg.clientBound ? { note: 'client-bound run' } : {}) })
  return out
}

function summary(list: Aim[]): void {
  print()
  print('| summary | value | aim | met |')
  print('|---|---|---|---|')
  for (const a of list) print(`| ${a.figure} | ${a.value} | ${a.aim} | ${a.met === null ? '–' : a.met ? 'met' : 'NOT MET'}${a.note ? ` (${a.note})` : ''} |`)
}

const settings = `analytics.pollMs ${values['poll-ms'] ?? '50 (default)'}, emitIntervalMs ${values['emit-interval-ms'] ?? '100 (default)'}, readBatch ${values['read-batch'] ?? '1000 (default)'}`
const loadText = `${o.load === 'json' ? 'JSON publisher (Node child process)' : 'C load generator (payloads not JSON)'}, ${fmt(o.devices)} devices, ${o.rate ? `${fmt(o.rate)} msgs/s in all` : `${o.window} QoS 1 in flight each (saturated)`}, ${o.payload}-byte payloads`
print(`bench/aggregates: node ${process.version}, ${cpus().length} cores, load average ${fmt(loadavg()[0]!, 2)} at start; ${loadText}; ${o.seconds} s after ${o.warmupSeconds} s warm-up; 3 aggregates, ${fmt(o.windowMs)} ms tumbling windows, allowed lateness ${fmt(o.latenessMs)} ms; ${settings}`)

let mem: WindowMemory | null = null
let alone: AggregateRun | null = null
let agg: AggregateRun | null = null
let skipped: string | null = null
if (ONLY.has('memory')) {
  print()
  print(`part 1: the state of open windows, on the processors alone (${fmt(o.devices)} devices x 3 aggregates)`)
  mem = measureWindowMemory(o.devices)
  reportMemory(mem)
}
if (ONLY.has('baseline') || ONLY.has('aggregates')) {
  if (o.load === 'c' && !canBuildLoadgen()) {
    skipped = `no C compiler (${process.env.CC ?? 'cc'}) to build bench/loadgen; install one, e.g. apt-get install gcc, or use --load json`
    print(`  gateway runs SKIPPED (${skipped})`)
  } else {
    if (o.load === 'c') print('  the C generator\'s payloads are not JSON: every function skips every record (counted as skipped); windows, counts and outputs are still made')
    if (ONLY.has('baseline')) {
      print()
      print('part 2: ingest alone (no aggregates)')
      alone = await runAggregatesE2e(o, false)
    }
    if (ONLY.has('aggregates')) {
      print()
      print('part 3: with the 3 aggregates')
      agg = await runAggregatesE2e(o, true)
    }
    reportRuns(alone, agg)
    if (agg) reportAggregates(agg)
    reportGatewayMemory(alone, agg)
  }
}
const list = aims(alone, agg, mem)
summary(list)
if (values.json) process.stdout.write(`${JSON.stringify({ options: values, memory: mem, baseline: alone, aggregates: agg, skipped, aims: list }, null, 2)}\n`)
