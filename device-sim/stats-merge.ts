import type * as hdr from 'hdr-histogram-js'
import { COUNTERS, LATENCIES, decodeHistogram, encodeHistogram, type Counters, type LatencyName, type StatsSnapshot, type TimelineSnapshot } from './stats.js'

/**
 * Merging worker snapshots and turning the merged one into the report figures. Histograms are
 * added bucket by bucket (never averaged percentiles), counters summed, timelines joined by second.
 */

export function mergeSnapshots(snapshots: readonly StatsSnapshot[]): StatsSnapshot {
  const counters = Object.fromEntries(COUNTERS.map((name) => [name, 0])) as Counters
  const errors: Record<string, number> = {}
  const sentByDevice: Record<string, number> = {}
  const bySecond = new Map<number, TimelineSnapshot[]>()
  for (const s of snapshots) {
    for (const name of COUNTERS) counters[name] += s.counters[name]
    for (const [code, n] of Object.entries(s.errors)) errors[code] = (errors[code] ?? 0) + n
    // A device lives in exactly one process, but a merge must not lose a count if it did not.
    for (const [id, seq] of Object.entries(s.sentByDevice)) sentByDevice[id] = Math.max(sentByDevice[id] ?? 0, seq)
    for (const t of s.timeline) bySecond.set(t.second, [...(bySecond.get(t.second) ?? []), t])
  }
  const histograms = Object.fromEntries(
    LATENCIES.map((name) => [name, addEncoded(snapshots.map((s) => s.histograms[name]))]),
  ) as Record<LatencyName, string>
  const timeline = [...bySecond.entries()]
    .sort(([a], [b]) => a - b)
    .map(([second, slots]) => ({
      second,
      sent: sum(slots, (t) => t.sent),
      acked: sum(slots, (t) => t.acked),
      stored: sum(slots, (t) => t.stored),
      disconnects: sum(slots, (t) => t.disconnects),
      connected: sum(slots, (t) => t.connected),
      puback: addEncoded(slots.map((t) => t.puback)),
      e2e: addEncoded(slots.map((t) => t.e2e)),
    }))
  const lastInitialConnectAt = Math.max(0, ...snapshots.map((s) => s.lastInitialConnectAt))
  const attempts = snapshots.map((s) => s.firstConnectAttemptAt).filter((t) => t > 0)
  const firstConnectAttemptAt = attempts.length === 0 ? 0 : Math.min(...attempts)
  return { counters, errors, histograms, timeline, sentByDevice, lastInitialConnectAt, firstConnectAttemptAt }
}

function sum<T>(items: readonly T[], pick: (item: T) => number): number {
  return items.reduce((total, item) => total + pick(item), 0)
}

function addEncoded(encoded: readonly string[]): string {
  const present = encoded.filter((e) => e !== '')
  if (present.length === 0) return ''
  if (present.length === 1) return present[0]!
  const total = decodeHistogram(present[0]!)
  for (const e of present.slice(1)) total.add(decodeHistogram(e))
  return encodeHistogram(total)
}

export interface LatencySummary {
  count: number
  min: number
  mean: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

/** Milliseconds, three decimals (the histograms hold microseconds). */
export function summarizeHistogram(histogram: hdr.Histogram): LatencySummary {
  const ms = (us: number): number => Math.round(us) / 1000
  if (histogram.totalCount === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 }
  return {
    count: histogram.totalCount,
    min: ms(histogram.minNonZeroValue),
    mean: ms(histogram.mean),
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
  }
}

export function summarizeEncoded(encoded: string): LatencySummary {
  return summarizeHistogram(decodeHistogram(encoded))
}
