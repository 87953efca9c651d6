import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Stats, decodeHistogram } from '../../device-sim/stats.js'
import { mergeSnapshots, summarizeEncoded } from '../../device-sim/stats-merge.js'
import { buildReport } from '../../device-sim/report/build.js'
import { parseScenario } from '../../device-sim/scenario.js'
import { addProgress } from '../../device-sim/workers.js'

const T0 = Date.UTC(2026, 0, 1)

describe('simulator stats and their merging', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.setSystemTime(T0)
  })
  afterEach(() => vi.useRealTimers())

  function worker(latencies: number[], sentBy: Record<string, number>): Stats {
    const s = new Stats(T0)
    for (const [id, n] of Object.entries(sentBy)) {
      for (let i = 1; i <= n; i++) {
        s.count('sent')
        s.count('sentQos1')
        s.deviceSent(id, i)
      }
    }
    for (const us of latencies) {
      s.count('acked')
      s.record('puback', us)
    }
    s.error('CONNACK_5')
    return s
  }

  it('adds counters, errors and histograms exactly (percentiles of the union, not averages)', () => {
    const a = worker([1000, 1000, 1000, 1000], { d1: 2, d2: 2 })
    vi.setSystemTime(T0 + 1500)
    const b = worker([100_000, 100_000, 100_000, 100_000], { d3: 4 })
    b.error('ECONNRESET')
    const merged = mergeSnapshots([a.snapshot(), b.snapshot()])
    expect(merged.counters.sent).toBe(8)
    expect(merged.counters.acked).toBe(8)
    expect(merged.errors).toEqual({ CONNACK_5: 2, ECONNRESET: 1 })
    expect(merged.sentByDevice).toEqual({ d1: 2, d2: 2, d3: 4 })
    const puback = summarizeEncoded(merged.histograms.puback)
    expect(puback.count).toBe(8)
    expect(puback.p50).toBeCloseTo(1, 1)
    expect(puback.max).toBeCloseTo(100, 0)
    expect(puback.p99).toBeGreaterThan(99)
  })

  it('joins timelines by second of the shared run clock', () => {
    const a = worker([2000], { d1: 3 })
    vi.setSystemTime(T0 + 1200)
    a.count('sent')
    const b = worker([4000], { d2: 1 })
    const merged = mergeSnapshots([a.snapshot(), b.snapshot()])
    expect(merged.timeline.map((t) => [t.second, t.sent, t.acked])).toEqual([
      [0, 3, 1],
      [1, 2, 1],
    ])
    expect(decodeHistogram(merged.timeline[1]!.puback).totalCount).toBe(1)
  })

  it('an empty histogram merges and summarises as zeros', () => {
    const merged = mergeSnapshots([new Stats(T0).snapshot(), new Stats(T0).snapshot()])
    expect(summarizeEncoded(merged.histograms.e2e)).toEqual({ count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 })
  })

  it('the report counts loss by the stream when it was read, else by acknowledgements', () => {
    const s = worker([1000], { d1: 3 })
    s.count('droppedOffline')
    const scenario = parseScenario({ duration: 1, groups: [{ count: 1 }] }, 'test')
    const meta = { runId: 'r', startedAt: T0, elapsedS: 1 }
    const byAcks = buildReport(scenario, s.snapshot(), null, meta)
    expect(byAcks.lossBasis).toBe('acks')
    expect(byAcks.counts.unacked).toBe(2)
    expect(byAcks.counts.lost).toBe(3)
    const byStream = buildReport(scenario, s.snapshot(), { stored: 2, duplicated: 1, lost: 1 }, meta)
    expect(byStream.lossBasis).toBe('stream')
    expect(byStream.counts).toMatchObject({ stored: 2, duplicated: 1, lost: 1 })
  })

  it('progress from workers adds up, with the worst p99', () => {
    const p = addProgress([
      { connected: 2, sent: 10, acked: 9, errors: 1, pubackP99Ms: 3 },
      { connected: 3, sent: 5, acked: 5, errors: 0, pubackP99Ms: 7 },
    ])
    expect(p).toEqual({ connected: 5, sent: 15, acked: 14, errors: 1, pubackP99Ms: 7 })
  })
})
