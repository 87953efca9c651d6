import * as hdr from 'hdr-histogram-js'

/**
 * What one simulator process measures. Latencies go into HDR histograms in microseconds (3
 * significant digits, up to one hour); counts are plain integers. A Stats turns into a
 * StatsSnapshot (JSON-safe: histograms as compressed base64) so worker processes can send theirs
 * to the parent, which merges them (stats-merge.ts) and summarises the result.
 */

export const LATENCIES = ['connect', 'puback', 'e2e', 'c2d', 'method'] as const
export type LatencyName = (typeof LATENCIES)[number]

export const COUNTERS = [
  'sent',
  'sentQos0',
  'sentQos1',
  'acked',
  /** QoS 0 messages produced while the device had no connection: never on the wire. */
  'droppedOffline',
  'connects',
  /** Devices whose first connection succeeded (the ramp or storm at the start). */
  'initialConnects',
  'connectFailures',
  'disconnects',
  'c2dSent',
  'c2dReceived',
  'methodsInvoked',
  'methodsReturned',
  'methodsAnswered',
  'twinReported',
] as const
export type CounterName = (typeof COUNTERS)[number]
export type Counters = Record<CounterName, number>

/** Histograms kept per second of the run, for the over-time charts. */
export const TIMELINE_LATENCIES = ['puback', 'e2e'] as const
export type TimelineLatency = (typeof TIMELINE_LATENCIES)[number]

export interface TimelineSnapshot {
  second: number
  sent: number
  acked: number
  stored: number
  /** Connections lost in that second. */
  disconnects: number
  /** Devices connected at the end of that second. */
  connected: number
  puback: string
  e2e: string
}

export interface StatsSnapshot {
  counters: Counters
  errors: Record<string, number>
  histograms: Record<LatencyName, string>
  timeline: TimelineSnapshot[]
  /** Highest sequence number each device used: its count of telemetry messages produced. */
  sentByDevice: Record<string, number>
  /** Epoch ms of the last first-time connect: with startedAt, the fleet's connect rate. */
  lastInitialConnectAt: number
  /** Epoch ms of the first connection attempt (0 = none): worker start-up is not connect time. */
  firstConnectAttemptAt: number
}

export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 })
}

/**
 * The per-second histograms of the timeline: two significant digits, packed buckets and a 60 s
 * ceiling (higher values are clamped), about 2 KB each instead of ~90 KB, so an hour-long run keeps
 * its timeline in a few MB.
 */
const TIMELINE_MAX_US = 60_000_000
export function newTimelineHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: TIMELINE_MAX_US, numberOfSignificantValueDigits: 2, bitBucketSize: 'packed' })
}

export function encodeHistogram(histogram: hdr.Histogram): string {
  return hdr.encodeIntoCompressedBase64(histogram)
}

export function decodeHistogram(base64: string): hdr.Histogram {
  if (base64 === '') return newHistogram()
  return hdr.decodeFromCompressedBase64(base64)
}

interface Slot {
  sent: number
  acked: number
  stored: number
  disconnects: number
  connected: number
  histograms: Record<TimelineLatency, hdr.Histogram | null>
}

function zeroCounters(): Counters {
  return Object.fromEntries(COUNTERS.map((name) => [name, 0])) as Counters
}

export class Stats {
  readonly counters = zeroCounters()
  readonly errors = new Map<string, number>()
  readonly sentByDevice = new Map<string, number>()
  private readonly histograms = Object.fromEntries(LATENCIES.map((name) => [name, newHistogram()])) as Record<LatencyName, hdr.Histogram>
  private readonly slots: Slot[] = []
  lastInitialConnectAt = 0
  firstConnectAttemptAt = 0
  /** Devices currently connected; the runner keeps it, the timeline samples it. */
  connected = 0

  /** `startedAt`: epoch ms shared by every process of a run, so seconds line up when merged. */
  constructor(readonly startedAt: number) {}

  count(name: CounterName, n = 1): void {
    this.counters[name] += n
    if (name === 'sent') this.slot().sent += n
    else if (name === 'acked') this.slot().acked += n
    else if (name === 'disconnects') this.slot().disconnects += n
  }

  countStored(n = 1): void {
    this.slot().stored += n
  }

  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
  }

  /** Record a latency in microseconds (rounded up to 1 so a sub-microsecond value still counts). */
  record(name: LatencyName, micros: number): void {
    const value = Math.max(1, Math.round(micros))
    this.histograms[name].recordValue(value)
    if (name === 'puback' || name === 'e2e') {
      const slot = this.slot()
      ;(slot.histograms[name] ??= newTimelineHistogram()).recordValue(Math.min(value, TIMELINE_MAX_US))
    }
  }

  deviceSent(deviceId: string, seq: number): void {
    this.sentByDevice.set(deviceId, seq)
  }

  /** p99 of a latency over the whole run so far, in ms (the live progress line). */
  p99Ms(name: LatencyName): number {
    return this.histograms[name].totalCount === 0 ? 0 : this.histograms[name].getValueAtPercentile(99) / 1000
  }

  /** Mark the connected gauge for the current second (called by the once-a-second tick). */
  sample(): void {
    this.slot().connected = this.connected
  }

  snapshot(): StatsSnapshot {
    return {
      counters: { ...this.counters },
      errors: Object.fromEntries(this.errors),
      histograms: Object.fromEntries(LATENCIES.map((name) => [name, encodeHistogram(this.histograms[name])])) as Record<LatencyName, string>,
      timeline: this.slots.flatMap((slot, second) =>
        slot === undefined
          ? []
          : [
              {
                second,
                sent: slot.sent,
                acked: slot.acked,
                stored: slot.stored,
                disconnects: slot.disconnects,
                connected: slot.connected,
                puback: slot.histograms.puback ? encodeHistogram(slot.histograms.puback) : '',
                e2e: slot.histograms.e2e ? encodeHistogram(slot.histograms.e2e) : '',
              },
            ],
      ),
      sentByDevice: Object.fromEntries(this.sentByDevice),
      lastInitialConnectAt: this.lastInitialConnectAt,
      firstConnectAttemptAt: this.firstConnectAttemptAt,
    }
  }

  private slot(): Slot {
    const second = Math.max(0, Math.floor((Date.now() - this.startedAt) / 1000))
    let slot = this.slots[second]
    if (slot === undefined) {
      slot = { sent: 0, acked: 0, stored: 0, disconnects: 0, connected: this.connected, histograms: { puback: null, e2e: null } }
      this.slots[second] = slot
    }
    return slot
  }
}
