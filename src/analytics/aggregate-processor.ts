import { RecordMessage, isTwinChange } from '../routing/message.js'
import { compileQuery, type CompiledQuery } from '../routing/query/index.js'
import type { StoredRecord } from '../stream/types.js'
import { outputField, type AggregateDefinition, type AggregateFunction } from './definitions.js'
import type { Processor, ProcessorOutput } from './types.js'
import { accumulate, emptyAccumulator, firstWindowEnd, numberOf, result, timeOf, windowStarts, type Accumulator, type WindowSpec } from './windows.js'

/** What the aggregate counts, per partition since this processor was made (the metrics take deltas). */
export interface AggregateCounts {
  /** Records that passed the filter and were folded into windows. */
  in: number
  /** Records for a window of their device that had closed: dropped (latePolicy drop). */
  late: number
  /** Late records moved to the oldest open time (latePolicy adjust). */
  adjusted: number
  /** Records with a value that is not a number at one of the functions' paths (those functions skip it; `count` has it). */
  skipped: number
  /** timestampBy held no time, or one more than MAX_FUTURE_MS ahead of the enqueued time: the enqueued time was used. */
  untimed: number
}

/** A device's clock may run this far ahead of the gateway's; later times are not believed. */
export const MAX_FUTURE_MS = 3_600_000
/** idleTimeoutMs when the event time is the device's own (timestampBy). */
export const DEFAULT_DEVICE_CLOCK_IDLE_MS = 10_000
/** A device with no open window and no record for this long (and at least ten windows) is forgotten. */
const FORGET_AFTER_MS = 3_600_000

interface WindowState {
  count: number
  skipped: number
  acc: Accumulator[]
}

interface GroupState {
  props: Record<string, string | null>
  /** By window start. */
  windows: Record<string, WindowState>
}

interface DeviceState {
  /** Watermark: the latest event time seen from the device. */
  wm: number
  /** Wall clock of the device's last record. */
  seen: number
  /** Every window of the device ending at or before this has been emitted (null: none yet). */
  closed: number | null
  groups: Record<string, GroupState>
}

interface Snapshot {
  devices: Record<string, DeviceState>
}

interface CompiledFunction {
  fn: AggregateFunction
  field: string
  path: CompiledQuery
}

/**
 * One aggregate over one partition (see docs/aggregates.md for the model):
 *
 * - Event time is the record's enqueued time, or the `timestampBy` path of its body.
 * - Each device has its own watermark, the latest event time it sent; a device's window
 *   [start, end) closes when that watermark reaches end + allowedLateness, so a device whose
 *   clock runs late holds back only its own windows. A device that goes quiet (or whose records
 *   are all in) would never move its watermark: once the partition is read to its end, the
 *   watermark also advances with the wall clock from the device's last record.
 *   With timestampBy the wall clock takes over only after idleTimeoutMs of silence (default 10 s).
 * - A record whose oldest window already closed is late: dropped, or with `adjust` given the
 *   oldest time still open, and counted either way.
 * - One output per group (device id plus the groupBy properties) per window, written when the
 *   window closes.
 */
export class AggregateProcessor implements Processor {
  readonly counts: AggregateCounts = { in: 0, late: 0, adjusted: 0, skipped: 0, untimed: 0 }
  private readonly devices: Map<string, DeviceState>
  private readonly filter: CompiledQuery
  private readonly functions: CompiledFunction[]
  private readonly timestamp: CompiledQuery | null
  private readonly spec: WindowSpec
  private readonly groupBy: string[]
  private readonly processorId: string
  private readonly idleTimeoutMs: number
  /** Wall clock since the partition is read to its end (null: it is not). */
  private caughtUpSince: number | null = null

  constructor(
    private readonly definition: AggregateDefinition,
    state: unknown,
  ) {
    this.filter = compileQuery(definition.filter)
    this.functions = definition.functions.map((f) => ({ fn: f.fn, field: outputField(f), path: compileQuery(f.path) }))
    this.timestamp = definition.timestampBy === undefined ? null : compileQuery(definition.timestampBy)
    this.spec = { sizeMs: definition.window.sizeMs, hopMs: definition.window.hopMs ?? definition.window.sizeMs }
    this.groupBy = definition.groupBy.map((g) => g.toLowerCase())
    this.processorId = `aggregate:${definition.name}`
    this.idleTimeoutMs = definition.idleTimeoutMs ?? (definition.timestampBy === undefined ? 0 : DEFAULT_DEVICE_CLOCK_IDLE_MS)
    this.devices = new Map(Object.entries((state as Snapshot | undefined)?.devices ?? {}))
    // Time the gateway was down is no device's silence: the idle clock starts again now.
    const now = Date.now()
    for (const device of this.devices.values()) device.seen = Math.max(device.seen, now)
  }

  /** Windows held open now, over every group. */
  get openWindows(): number {
    let n = 0
    for (const d of this.devices.values()) for (const g of Object.values(d.groups)) n += Object.keys(g.windows).length
    return n
  }

  process(records: StoredRecord[], now: number): ProcessorOutput[] {
    const out: ProcessorOutput[] = []
    const source = this.definition.source
    for (const record of records) {
      if (source === 'device-events' && isTwinChange(record)) continue
      const message = new RecordMessage(record, source === 'telemetry' ? 'telemetry' : 'device-event', undefined)
      const deviceId = message.deviceId
      if (deviceId === undefined || this.filter.evaluate(message) !== true) continue
      this.fold(message, deviceId, now, out)
    }
    return out
  }

  tick(now: number, caughtUp: boolean): ProcessorOutput[] {
    const out: ProcessorOutput[] = []
    if (!caughtUp) {
      this.caughtUpSince = null
      return out
    }
    this.caughtUpSince ??= now
    const lateness = this.definition.allowedLatenessMs
    for (const [deviceId, device] of this.devices) {
      const quiet = now - Math.max(device.seen, this.caughtUpSince)
      if (quiet > 0 && quiet >= this.idleTimeoutMs) this.close(deviceId, device, device.wm + quiet - lateness, now, out)
      if (Object.keys(device.groups).length === 0 && now - device.seen > Math.max(FORGET_AFTER_MS, 10 * (this.spec.sizeMs + lateness))) this.devices.delete(deviceId)
    }
    return out
  }

  snapshot(): Snapshot {
    return { devices: Object.fromEntries(this.devices) }
  }

  private fold(message: RecordMessage, deviceId: string, now: number, out: ProcessorOutput[]): void {
    const enqueued = Number(message.record.headers['enqueued-time'] ?? message.record.timestamp)
    let time = enqueued
    if (this.timestamp) {
      const t = timeOf(this.timestamp.evaluate(message))
      if (t === undefined || t > enqueued + MAX_FUTURE_MS) this.counts.untimed++
      else time = t
    }
    let device = this.devices.get(deviceId)
    if (!device) this.devices.set(deviceId, (device = { wm: time, seen: now, closed: null, groups: {} }))
    if (device.closed !== null && firstWindowEnd(time, this.spec) <= device.closed) {
      if (this.definition.latePolicy === 'drop') {
        this.counts.late++
        return
      }
      this.counts.adjusted++
      time = device.closed
    }
    this.counts.in++
    const props: Record<string, string | null> = {}
    for (const name of this.groupBy) props[name] = message.app(name) ?? null
    const key = this.groupBy.length === 0 ? deviceId : JSON.stringify([deviceId, ...Object.values(props)])
    const group = (device.groups[key] ??= { props, windows: {} })
    const values = this.functions.map((f) => numberOf(f.path.evaluate(message)))
    const skipped = values.includes(undefined)
    for (const start of windowStarts(time, this.spec)) {
      const window = (group.windows[String(start)] ??= { count: 0, skipped: 0, acc: this.functions.map(emptyAccumulator) })
      window.count++
      if (skipped) window.skipped++
      for (let i = 0; i < this.functions.length; i++) {
        const value = values[i]
        if (value !== undefined) accumulate(this.functions[i]!.fn, window.acc[i]!, value, time)
      }
    }
    if (skipped) this.counts.skipped++
    // Any record says the device is alive: the wall-clock advance counts from the last one.
    device.seen = now
    if (time > device.wm) device.wm = time
    this.close(deviceId, device, device.wm - this.definition.allowedLatenessMs, now, out)
  }

  /** Emit and forget every window of the device that ends at or before `upTo`. */
  private close(deviceId: string, device: DeviceState, upTo: number, now: number, out: ProcessorOutput[]): void {
    if (device.closed !== null && upTo <= device.closed) return
    const size = this.spec.sizeMs
    for (const [key, group] of Object.entries(device.groups)) {
      const due = Object.keys(group.windows)
        .map(Number)
        .filter((start) => start + size <= upTo)
        .sort((a, b) => a - b)
      for (const start of due) {
        out.push(this.output(deviceId, key, group, start, group.windows[String(start)]!, now))
        delete group.windows[String(start)]
      }
      if (Object.keys(group.windows).length === 0) delete device.groups[key]
    }
    device.closed = upTo
  }

  private output(deviceId: string, groupKey: string, group: GroupState, start: number, window: WindowState, now: number): ProcessorOutput {
    const end = start + this.spec.sizeMs
    const value: Record<string, unknown> = {
      windowStart: new Date(start).toISOString(),
      windowEnd: new Date(end).toISOString(),
      group: { deviceId, ...group.props },
      count: window.count,
      skipped: window.skipped,
    }
    this.functions.forEach((f, i) => (value[f.field] = result(f.fn, window.acc[i]!)))
    return {
      id: `${start}/${groupKey}`,
      eventTime: end,
      record: {
        key: deviceId,
        value: Buffer.from(JSON.stringify(value)),
        timestamp: now,
        headers: {
          'device-id': deviceId,
          'content-type': 'application/json',
          'content-encoding': 'utf-8',
          aggregate: this.definition.name,
          'window-start': String(start),
          'window-end': String(end),
        },
      },
    }
  }

  /** For the status view. */
  get id(): string {
    return this.processorId
  }
}
