import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RecordMessage } from '../../src/routing/message.js'
import { compileQuery, type CompiledQuery } from '../../src/routing/query/index.js'
import type { StoredRecord } from '../../src/stream/types.js'
import { EVAL_ROUTES, EVAL_TWIN, telemetryRecords } from './routes-fixtures.js'
import { withStream } from './sim-bench.js'

/**
 * bench/routes, part 1: route conditions evaluated on real stored telemetry, on this thread only.
 * The records go through the embedded stream (SqliteEventStream, the gateway's config defaults)
 * and are read back, so they are StoredRecords with the headers and Buffers the router gets.
 * The loop is EndpointWorker.handle's: one RecordMessage per record, shared by every route (its
 * body is parsed at most once), `accepts` then `evaluate`, true counted as a match and anything
 * but true/false as undefined. The worker's per-match prom-client counter is left out.
 */

export interface RouteShare {
  name: string
  condition: string
  /** Of the records: matched, and undefined (neither true nor false). */
  matched: number
  undefinedShare: number
  /** On pre-built messages (body parsed), this route alone. */
  nsPerEvaluation: number
}

export interface EvalFigures {
  records: number
  routes: number
  passes: number
  bodyBytesMean: number
  /** Through RecordMessage, as the worker does it: body parsed once per record. */
  evaluationsPerSecond: number
  recordsPerSecond: number
  usPerRecord: number
  /** evaluate() alone, every message built and its body parsed beforehand. */
  pureEvaluationsPerSecond: number
  /** JSON.parse(TextDecoder(value)) alone: what the body costs a record. */
  usBodyParsePerRecord: number
  /** A fresh RecordMessage's first app(): the application-property map built from the headers. */
  usAppPropertiesPerRecord: number
  /** Records that matched at least one route (the worker would deliver them). */
  matchedAnyShare: number
  /** Process CPU time / wall time over the measured passes (GC helper threads can take it past 1). */
  cpuShare: number
  perRoute: RouteShare[]
  writeSeconds: number
  readSeconds: number
}

const PASSES = 5
const ACCEPT_ALL = (): boolean => true

interface Route {
  name: string
  query: CompiledQuery
  accepts: (record: StoredRecord) => boolean
}

/** Write the records into a fresh embedded stream and read every one back. */
async function storedRecords(count: number, log: (line: string) => void): Promise<{ records: StoredRecord[]; writeSeconds: number; readSeconds: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-routes-eval-'))
  try {
    return await withStream(dir, async (stream, partitions) => {
      await stream.ensureTopics([{ name: 'telemetry', partitions }])
      const outgoing = telemetryRecords(count)
      const t0 = performance.now()
      for (let i = 0; i < outgoing.length; i += 2000) await stream.append('telemetry', outgoing.slice(i, i + 2000))
      const writeSeconds = (performance.now() - t0) / 1000
      const t1 = performance.now()
      const records: StoredRecord[] = []
      for (const p of await stream.offsets('telemetry')) {
        for (let offset = p.low; offset < p.high; ) {
          const batch = await stream.read('telemetry', p.partition, offset, 5000)
          if (batch.length === 0) break
          records.push(...batch)
          offset = batch[batch.length - 1]!.offset + 1
        }
      }
      const readSeconds = (performance.now() - t1) / 1000
      log(`  stored ${records.length.toLocaleString('en-US')} records in ${partitions} partitions (write ${writeSeconds.toFixed(1)} s, read back ${readSeconds.toFixed(1)} s; not measured)`)
      return { records, writeSeconds, readSeconds }
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** One pass of EndpointWorker.handle's loop; counts into `matched` / `undefinedCount`. */
function handlePass(records: readonly StoredRecord[], routes: readonly Route[], matched: Int32Array, undefinedCount: Int32Array): number {
  let hits = 0
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    const message = new RecordMessage(record, 'telemetry', EVAL_TWIN)
    let hit = false
    for (let r = 0; r < routes.length; r++) {
      const route = routes[r]!
      if (!route.accepts(record)) continue
      const value = route.query.evaluate(message)
      if (value === true) {
        hit = true
        matched[r]!++
      } else if (value !== false) undefinedCount[r]!++
    }
    if (hit) hits++
  }
  return hits
}

function purePass(messages: readonly RecordMessage[], routes: readonly Route[]): number {
  let trues = 0
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!
    for (let r = 0; r < routes.length; r++) if (routes[r]!.query.evaluate(message) === true) trues++
  }
  return trues
}

/**
 * Median seconds of `passes` runs of `run` (after one warm-up run), the CPU share over them, and
 * what the last run returned (a count the caller checks, which also keeps the work observable).
 */
function timed(passes: number, run: () => number): { seconds: number; cpuShare: number; result: number } {
  let result = run()
  const times: number[] = []
  const cpu0 = process.cpuUsage()
  const wall0 = performance.now()
  for (let p = 0; p < passes; p++) {
    const t0 = performance.now()
    result = run()
    times.push((performance.now() - t0) / 1000)
  }
  const cpu = process.cpuUsage(cpu0)
  const wall = (performance.now() - wall0) / 1000
  times.sort((a, b) => a - b)
  return { seconds: times[Math.floor(times.length / 2)]!, cpuShare: (cpu.user + cpu.system) / 1e6 / wall, result }
}

function bodyParseSeconds(records: readonly StoredRecord[]): number {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  const { seconds, result } = timed(PASSES, () => {
    let parsed = 0
    for (const r of records) if (JSON.parse(decoder.decode(r.value)) !== undefined) parsed++
    return parsed
  })
  if (result !== records.length) throw new Error(`only ${result} of ${records.length} bodies parsed`)
  return seconds
}

function appPropertiesSeconds(records: readonly StoredRecord[]): number {
  return timed(PASSES, () => {
    let found = 0
    for (const r of records) if (new RecordMessage(r, 'telemetry', EVAL_TWIN).app('level') !== undefined) found++
    return found
  }).seconds
}

function perRoute(records: readonly StoredRecord[], messages: readonly RecordMessage[], routes: readonly Route[]): RouteShare[] {
  const matched = new Int32Array(routes.length)
  const undefinedCount = new Int32Array(routes.length)
  handlePass(records, routes, matched, undefinedCount)
  return routes.map((route, r) => {
    const { seconds } = timed(PASSES, () => purePass(messages, [route]))
    return { name: route.name, condition: route.query.text, matched: matched[r]! / records.length, undefinedShare: undefinedCount[r]! / records.length, nsPerEvaluation: (seconds * 1e9) / messages.length }
  })
}

export async function runEvalBench(count: number, log: (line: string) => void): Promise<EvalFigures> {
  const { records, writeSeconds, readSeconds } = await storedRecords(count, log)
  const routes: Route[] = EVAL_ROUTES.map((r) => ({ name: r.name, query: compileQuery(r.condition), accepts: ACCEPT_ALL }))
  const matched = new Int32Array(routes.length)
  const undefinedCount = new Int32Array(routes.length)
  const handled = timed(PASSES, () => handlePass(records, routes, matched, undefinedCount))
  const matchesPerPass = matched.reduce((n, m) => n + m, 0) / (PASSES + 1)
  const messages = records.map((r) => new RecordMessage(r, 'telemetry', EVAL_TWIN))
  // One pass fills every message's caches (body, application properties): what is left is evaluate().
  purePass(messages, routes)
  const pure = timed(PASSES, () => purePass(messages, routes))
  if (pure.result !== matchesPerPass) throw new Error(`pre-built messages matched ${pure.result} times, the worker's loop ${matchesPerPass}`)
  const evaluations = records.length * routes.length
  return {
    records: records.length,
    routes: routes.length,
    passes: PASSES,
    bodyBytesMean: records.reduce((n, r) => n + r.value.length, 0) / records.length,
    evaluationsPerSecond: evaluations / handled.seconds,
    recordsPerSecond: records.length / handled.seconds,
    usPerRecord: (handled.seconds * 1e6) / records.length,
    pureEvaluationsPerSecond: evaluations / pure.seconds,
    usBodyParsePerRecord: (bodyParseSeconds(records) * 1e6) / records.length,
    usAppPropertiesPerRecord: (appPropertiesSeconds(records) * 1e6) / records.length,
    matchedAnyShare: handled.result / records.length,
    cpuShare: handled.cpuShare,
    perRoute: perRoute(records, messages, routes),
    writeSeconds,
    readSeconds,
  }
}
