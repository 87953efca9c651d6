import { execFileSync } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { AggregateProcessor } from '../../src/analytics/aggregate-processor.js'
import { checkAggregate } from '../../src/analytics/definitions.js'
import { buildTelemetryRecord } from '../../src/ingest/envelope.js'
import type { StoredRecord } from '../../src/stream/types.js'
import { benchAggregates, bodyTemplate, bodyText, deviceProperties } from './aggregates-fixtures.js'

/**
 * The state an open window costs, measured on the processors alone (no gateway, no load): in a
 * child process run with --expose-gc, the bench's three aggregates (AggregateProcessor, as the
 * gateway runs them) fold one record per device per second for `devices` devices, and the heap
 * after a full collection is compared with the heap before the processors existed (the records
 * are built first and held throughout).
 *
 *   one window per device  allowedLatenessMs 0, one second of records: each device holds one
 *                          window per aggregate; the figure includes the device's own state
 *                          (watermark, group, keys), i.e. what a device costs an aggregate.
 *   ten windows per device allowedLatenessMs 60 s, ten seconds of records: ten windows each; the
 *                          difference over the nine further windows is the window alone.
 *
 * Also the checkpoint: JSON bytes of the processors' snapshots per open window (each commit of a
 * partition writes its whole snapshot into the registry), and the fold alone: µs per record of
 * process() for each aggregate over FOLD_SECONDS seconds of the fleet's records (FOLD_PER_SECOND
 * per device per second) in batches of analytics.readBatch (1,000), one core, no stream read, no
 * checkpoint.
 */

export interface WindowMemory {
  devices: number
  aggregates: number
  /** Heap bytes per open window with one window per device and aggregate (device state included). */
  bytesPerDeviceWindow: number
  /** Heap bytes of each further window of a device. */
  bytesPerExtraWindow: number
  /** Snapshot JSON bytes per open window, one window per device (what each checkpoint writes). */
  checkpointBytesPerDeviceWindow: number
  checkpointBytesPerExtraWindow: number
  openWindows: { one: number; ten: number }
  /** µs of process() per record, by aggregate. */
  foldUsPerRecord: Record<string, number>
  foldRecords: number
}

const SECONDS = 10
/** The fold's records: 10 s of FOLD_PER_SECOND records per device per second (about the rate of a saturated run: one output per ten records). */
const FOLD_SECONDS = 10
const FOLD_PER_SECOND = 10
const READ_BATCH = 1000

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc
  if (!collect) throw new Error('run with --expose-gc')
  collect()
  collect()
}

function heap(): number {
  gc()
  return process.memoryUsage().heapUsed
}

/** `perSecond` records per device per second (spread over the second), for `seconds` seconds from an epoch-aligned second; by second. */
function records(devices: number, seconds: number, perSecond = 1): StoredRecord[][] {
  const template = bodyTemplate(100)
  const t0 = Math.floor(Date.now() / 1000) * 1000
  const out: StoredRecord[][] = []
  let offset = 0
  for (let s = 0; s < seconds; s++) {
    const second: StoredRecord[] = []
    for (let k = 0; k < perSecond; k++) {
      for (let i = 0; i < devices; i++) {
        const deviceId = `ag-${String(i + 1).padStart(6, '0')}`
        const at = t0 + s * 1000 + Math.floor(((k * devices + i) * 997) / (devices * perSecond))
        const system = { contentType: 'application/json', contentEncoding: 'utf-8' }
        const seq = s * perSecond + k
        const r = buildTelemetryRecord({ deviceId, payload: Buffer.from(bodyText(template, i, seq)), properties: { system, app: Object.entries(deviceProperties(i)) }, enqueuedAt: at, retain: false })
        second.push({ topic: 'telemetry', partition: 0, offset: offset++, key: r.key, value: r.value, headers: r.headers ?? {}, timestamp: at })
      }
    }
    out.push(second)
  }
  return out
}

function measure(devices: number): WindowMemory {
  const data = records(devices, SECONDS)
  const run = (latenessMs: number, seconds: number): { bytes: number; windows: number; checkpoint: number } => {
    const definitions = benchAggregates(1000, latenessMs).map((a) => checkAggregate({ name: a.name, ...a.body }))
    const before = heap()
    let processors: AggregateProcessor[] | null = definitions.map((d) => new AggregateProcessor(d, undefined))
    for (let s = 0; s < seconds; s++) for (const p of processors) p.process(data[s]!, data[s]![0]!.timestamp)
    const after = heap()
    const windows = processors.reduce((n, p) => n + p.openWindows, 0)
    const checkpoint = processors.reduce((n, p) => n + JSON.stringify(p.snapshot()).length, 0)
    processors = null
    return { bytes: after - before, windows, checkpoint }
  }
  run(0, 1) // warm-up: compiled code and shapes are not counted
  const one = run(0, 1)
  const ten = run(60_000, SECONDS)
  const extra = Math.max(ten.windows - one.windows, 1)
  const foldUsPerRecord = fold(devices)
  return {
    devices,
    aggregates: 3,
    bytesPerDeviceWindow: one.bytes / one.windows,
    bytesPerExtraWindow: (ten.bytes - one.bytes) / extra,
    checkpointBytesPerDeviceWindow: one.checkpoint / one.windows,
    checkpointBytesPerExtraWindow: (ten.checkpoint - one.checkpoint) / extra,
    openWindows: { one: one.windows, ten: ten.windows },
    foldUsPerRecord,
    foldRecords: devices * FOLD_SECONDS * FOLD_PER_SECOND,
  }
}

/** process() alone: µs per record for each aggregate, after one pass to warm up. */
function fold(devices: number): Record<string, number> {
  const all = records(devices, FOLD_SECONDS, FOLD_PER_SECOND).flat()
  const batches: StoredRecord[][] = []
  for (let i = 0; i < all.length; i += READ_BATCH) batches.push(all.slice(i, i + READ_BATCH))
  const out: Record<string, number> = {}
  for (const a of benchAggregates(1000, 0)) {
    const definition = checkAggregate({ name: a.name, ...a.body })
    let us = 0
    for (let pass = 0; pass < 2; pass++) {
      const p = new AggregateProcessor(definition, undefined)
      const t = performance.now()
      for (const b of batches) p.process(b, b[b.length - 1]!.timestamp)
      us = (performance.now() - t) * 1000
    }
    out[a.name] = us / all.length
  }
  return out
}

/** Runs the measurement in a child process of its own (a clean heap, --expose-gc). */
export function measureWindowMemory(devices: number): WindowMemory {
  const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), String(devices)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return JSON.parse(out) as WindowMemory
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(measure(Number(process.argv[2] ?? 1000)))}\n`)
}
