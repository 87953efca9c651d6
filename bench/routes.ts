import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { canBuildLoadgen } from './lib/loadgen.js'
import { runE2e, type E2eRun } from './lib/routes-e2e.js'
import { runEvalBench, type EvalFigures } from './lib/routes-eval.js'

/**
 * bench/routes: message routing, in two figures.
 *
 *   eval  10 routes over N stored telemetry records (written to and read back from the embedded
 *         stream), evaluated on the main thread as EndpointWorker.handle does it: evaluations/s,
 *         records/s, µs per record, and evaluate() alone on pre-built messages. Aim: over
 *         1,000,000 evaluations/s on one core.
 *   e2e   the built gateway (child process, embedded stream) under saturated QoS 1 ingest from the
 *         C load generator (100 connections x 10 in flight, 200-byte payloads) with 10 routes over
 *         two stream endpoints and a webhook served by this process, then the same load with no
 *         routes: ingest msgs/s, routed msgs/s and lag per endpoint every second, the time to drain
 *         after the load, CPU shares, and ingest with routes / without. Aim: every endpoint handles
 *         records as fast as they are ingested, its lag bounded.
 *
 *   npm run bench:routes [-- --records 100000 --seconds 15 --only eval|e2e --json]
 *                        [--warmup 3 --conns 100 --window 10 --payload 200 --profile-dir DIR --webhook-max-batch N]
 *
 * --json prints one JSON document on stdout and the human-readable report on stderr.
 */
const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '100000' },
    seconds: { type: 'string', default: '15' },
    only: { type: 'string', default: 'eval,e2e' },
    json: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '3' },
    conns: { type: 'string', default: '100' },
    window: { type: 'string', default: '10' },
    payload: { type: 'string', default: '200' },
    /** Write a V8 CPU profile of the routed gateway run into this directory (--cpu-prof). */
    'profile-dir': { type: 'string' },
    /** The webhook endpoint's maxBatch (its default, 100, when absent). */
    'webhook-max-batch': { type: 'string' },
  },
})
const ONLY = new Set(values.only.split(','))
for (const part of ONLY) {
  if (part === 'eval' || part === 'e2e') continue
  process.stderr.write(`bench/routes: --only takes eval, e2e or eval,e2e, not "${part}"\n`)
  process.exit(2)
}

/** Aims of the issue, and what "bounded lag" is taken to mean here. */
const AIM_EVALUATIONS = 1_000_000
const AIM_KEEP_UP_RATIO = 0.98
const AIM_MAX_LAG_SECONDS_OF_INGEST = 1
const AIM_DRAIN_SECONDS = 5

const print = (line = ''): void => void (values.json ? process.stderr : process.stdout).write(`${line}\n`)
const fmt = (v: number, d = 0): string => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a')
const pct = (v: number, d = 0): string => `${fmt(v * 100, d)} %`

function reportEval(e: EvalFigures): void {
  print()
  print(`| eval figure | value |`)
  print(`|---|---|`)
  print(`| condition evaluations/s through RecordMessage (worker loop) | ${fmt(e.evaluationsPerSecond)} |`)
  print(`| records/s (all ${e.routes} routes each) | ${fmt(e.recordsPerSecond)} |`)
  print(`| µs per record | ${fmt(e.usPerRecord, 2)} |`)
  print(`| evaluate() alone on pre-built messages (body parsed), evaluations/s | ${fmt(e.pureEvaluationsPerSecond)} |`)
  print(`| body parse alone (TextDecoder + JSON.parse), µs per record | ${fmt(e.usBodyParsePerRecord, 2)} |`)
  print(`| application properties read (first app() of a message), µs per record | ${fmt(e.usAppPropertiesPerRecord, 2)} |`)
  print(`| records matching at least one route | ${pct(e.matchedAnyShare, 1)} |`)
  print(`| process CPU / wall over the measured passes | ${pct(e.cpuShare)} |`)
  print()
  print('| route | condition | matched | undefined | ns per evaluation (pre-built) |')
  print('|---|---|---|---|---|')
  for (const r of e.perRoute) print(`| ${r.name} | \`${r.condition}\` | ${pct(r.matched, 1)} | ${pct(r.undefinedShare, 1)} | ${fmt(r.nsPerEvaluation)} |`)
}

function runRow(label: string, r: E2eRun): string {
  const bound = r.clientBound ? ' CLIENT-BOUND' : ''
  return `| ${label} | ${r.routes} | ${fmt(r.ingestPerSecond)} | ${fmt(r.recordsPerSecond)} | ${pct(r.gatewayCores)} | ${pct(r.loadgen.cpuShare)} | ${pct(r.benchCores)} | ${pct(r.loadSideCores)}${bound} | ${pct(r.otherCores)} |`
}

function reportE2e(routed: E2eRun, alone: E2eRun): void {
  print()
  print('| run | routes | ingest msgs/s (PUBACKs) | records/s written | gateway CPU | generator CPU | bench process CPU (webhook, sampling) | load side | other processes |')
  print('|---|---|---|---|---|---|---|---|---|')
  print(runRow('with routes', routed))
  print(runRow('ingest alone', alone))
  print()
  print('| endpoint | routed msgs/s | records handled/s | routing / ingest | max lag | lag at load end | delivered share (routes select) | health, failed attempts, dead-lettered |')
  print('|---|---|---|---|---|---|---|---|')
  for (const e of routed.endpoints) {
    print(`| ${e.name} | ${fmt(e.deliveredPerSecond)} | ${fmt(e.processedPerSecond)} | ${fmt(e.ratio, 3)} | ${fmt(e.maxLag)} | ${fmt(e.lagAtLoadEnd)} | ${pct(e.deliveredShare, 1)} (${pct(e.expectedShare, 1)}) | ${e.health}, ${e.failedAttempts}, ${e.deadLettered} |`)
  }
  print()
  print(`time to drain (every endpoint's lag 0 after the load stopped): ${routed.drainSeconds === null ? `not drained within the limit` : `${fmt(routed.drainSeconds, 1)} s`}`)
  print(`stream endpoints appended ${fmt(routed.streamWritesPerRecord, 2)} records per record ingested (the embedded stream's writes grow by that much)`)
  print(`webhook: ${fmt(routed.webhook.posts)} POSTs, ${fmt(routed.webhook.bytes / 2 ** 20, 1)} MiB received`)
  const bound = routed.clientBound || alone.clientBound
  print(`ingest with routes / ingest alone: ${fmt(routed.ingestPerSecond / alone.ingestPerSecond, 3)}${bound ? ' (a run was client-bound: not a gateway figure)' : ''}`)
}

interface Aim {
  figure: string
  value: string
  aim: string
  met: boolean | null
  note?: string
}

function evalAim(e: EvalFigures | null): Aim {
  const aim = `>= ${fmt(AIM_EVALUATIONS)} evaluations/s on one core`
  if (!e) return { figure: 'condition evaluations/s (10 routes, worker loop)', value: 'not measured', aim, met: null }
  return { figure: `condition evaluations/s (${e.routes} routes, worker loop)`, value: fmt(e.evaluationsPerSecond), aim, met: e.evaluationsPerSecond >= AIM_EVALUATIONS }
}

function e2eAims(routed: E2eRun | null, alone: E2eRun | null): Aim[] {
  const keepAim = `every endpoint >= ${AIM_KEEP_UP_RATIO} of ingest`
  const lagAim = `max lag <= ${AIM_MAX_LAG_SECONDS_OF_INGEST} s of ingest, drained within ${AIM_DRAIN_SECONDS} s`
  if (!routed || !alone) return [{ figure: 'routing / ingest (slowest endpoint)', value: 'not measured', aim: keepAim, met: null }, { figure: 'lag', value: 'not measured', aim: lagAim, met: null }]
  const slowest = Math.min(...routed.endpoints.map((e) => e.ratio))
  const maxLag = Math.max(...routed.endpoints.map((e) => e.maxLag))
  const lagBound = routed.recordsPerSecond * AIM_MAX_LAG_SECONDS_OF_INGEST
  const note = routed.clientBound ? 'client-bound: ingest was not saturated by the gateway' : undefined
  const drained = routed.drainSeconds === null ? 'not drained' : `drained in ${fmt(routed.drainSeconds, 1)} s`
  return [
    { figure: `routing / ingest at ${fmt(routed.ingestPerSecond)} msgs/s (slowest endpoint)`, value: fmt(slowest, 3), aim: keepAim, met: slowest >= AIM_KEEP_UP_RATIO, ...(note ? { note } : {}) },
    { figure: 'lag', value: `max ${fmt(maxLag)} records, ${drained}`, aim: lagAim, met: maxLag <= lagBound && routed.drainSeconds !== null && routed.drainSeconds <= AIM_DRAIN_SECONDS, ...(note ? { note } : {}) },
    { figure: 'ingest with routes / ingest alone (cost of routing)', value: fmt(routed.ingestPerSecond / alone.ingestPerSecond, 3), aim: 'reported', met: null, ...(routed.clientBound || alone.clientBound ? { note: 'client-bound run' } : {}) },
  ]
}

function summary(aims: Aim[]): void {
  print()
  print('| summary | value | aim | met |')
  print('|---|---|---|---|')
  for (const a of aims) print(`| ${a.figure} | ${a.value} | ${a.aim} | ${a.met === null ? '–' : a.met ? 'met' : 'NOT MET'}${a.note ? ` (${a.note})` : ''} |`)
}

const e2eOptions = {
  seconds: Number(values.seconds),
  warmupSeconds: Number(values.warmup),
  conns: Number(values.conns),
  window: Number(values.window),
  payload: Number(values.payload),
  ...(values['profile-dir'] ? { profileDir: values['profile-dir'] } : {}),
  ...(values['webhook-max-batch'] ? { webhookMaxBatch: Number(values['webhook-max-batch']) } : {}),
  log: print,
}

// Other processes on the machine take cores from both parts: say how busy it was.
print(`bench/routes: node ${process.version}, ${cpus().length} cores, load average ${fmt(loadavg()[0]!, 2)} at start; ${ONLY.has('eval') ? `${fmt(Number(values.records))} records x 10 routes` : 'no eval'}; ${ONLY.has('e2e') ? `${e2eOptions.conns} connections x ${e2eOptions.window} QoS 1 in flight, ${e2eOptions.payload}-byte payloads, ${e2eOptions.seconds} s after ${e2eOptions.warmupSeconds} s warm-up` : 'no e2e'}`)
let evalFigures: EvalFigures | null = null
let routed: E2eRun | null = null
let alone: E2eRun | null = null
let skipped: string | null = null
if (ONLY.has('eval')) {
  print()
  print('part 1: condition evaluation on this thread (one core)')
  evalFigures = await runEvalBench(Number(values.records), print)
  reportEval(evalFigures)
}
if (ONLY.has('e2e')) {
  print()
  print('part 2: routing end to end against saturated ingest')
  if (!canBuildLoadgen()) {
    skipped = `no C compiler (${process.env.CC ?? 'cc'}) to build bench/loadgen; install one, e.g. apt-get install gcc`
    print(`  SKIPPED (${skipped})`)
  } else {
    // The payloads are "t=<µs>;" and padding, not JSON: these routes read properties, the device id and the twin, never $body.
    print('  load generator payloads are not JSON: the routes read application properties, $connectionDeviceId and $twin.tags, not $body')
    print('  ingest alone (no routes):')
    alone = await runE2e(e2eOptions, false)
    print('  with 10 routes over routed-a, routed-b (stream) and hook (webhook in this process):')
    routed = await runE2e(e2eOptions, true)
    reportE2e(routed, alone)
  }
}
const aims = [evalAim(evalFigures), ...e2eAims(routed, alone)]
summary(aims)
if (values.json) process.stdout.write(`${JSON.stringify({ options: values, eval: evalFigures, e2e: routed && alone ? { routed, alone } : null, skipped, aims }, null, 2)}\n`)
