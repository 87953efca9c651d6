import { LATENCIES, type LatencyName, type StatsSnapshot, type TimelineLatency, type TimelineSnapshot } from '../stats.js'
import { summarizeEncoded, type LatencySummary } from '../stats-merge.js'
import type { Scenario } from '../scenario.js'
import type { StreamTally } from '../stream-tracker.js'

/**
 * The report: every figure of a run, as written by --json and drawn by --html. Loss is counted
 * against the stream when the run could read it (`lossBasis: 'stream'`): produced minus found.
 * Without it only what the simulator itself saw counts: QoS 1 never acknowledged plus QoS 0
 * produced while offline (`lossBasis: 'acks'`).
 */

/** A second of the run as the report shows it: the snapshot's counts, its histograms as percentiles. */
export interface TimelinePoint extends Omit<TimelineSnapshot, TimelineLatency> {
  pubackP50: number
  pubackP99: number
  e2eP50: number
  e2eP99: number
}

export interface SimReport {
  runId: string
  startedAt: string
  durationS: number
  gateway: string
  devices: number
  workers: number
  groups: Array<{ name: string; count: number; driver: string; rate: number; qos: number }>
  events: Scenario['events']
  counts: {
    sent: number
    sentQos0: number
    sentQos1: number
    acked: number
    unacked: number
    droppedOffline: number
    stored: number | null
    duplicated: number | null
    lost: number
    connects: number
    connectFailures: number
    disconnects: number
    c2dSent: number
    c2dReceived: number
    methodsInvoked: number
    methodsReturned: number
    methodsAnswered: number
    twinReported: number
  }
  /** The fleet's first connections: how many, how long from the first attempt to the last success, at what rate. */
  connectPhase: { devices: number; seconds: number; perSecond: number }
  lossBasis: 'stream' | 'acks'
  errors: Record<string, number>
  latencyMs: Record<LatencyName, LatencySummary>
  /** targetPerS: what the groups' rates ask for; sentPerS falls short when the simulator lacks CPU. */
  throughput: { targetPerS: number; sentPerS: number; ackedPerS: number; storedPerS: number | null }
  timeline: TimelinePoint[]
}

export function buildReport(scenario: Scenario, snapshot: StatsSnapshot, tally: StreamTally | null, meta: { runId: string; startedAt: number; elapsedS: number }): SimReport {
  const c = snapshot.counters
  const unacked = c.sentQos1 - c.acked
  // Per second of telemetry: the duration, or less when the run was stopped early.
  const seconds = Math.max(0.001, Math.min(scenario.duration, meta.elapsedS))
  const rate = (n: number): number => Math.round((n / seconds) * 10) / 10
  return {
    runId: meta.runId,
    startedAt: new Date(meta.startedAt).toISOString(),
    durationS: meta.elapsedS,
    gateway: scenario.gateway,
    devices: scenario.groups.reduce((n, g) => n + g.count, 0),
    workers: scenario.workers,
    groups: scenario.groups.map((g) => ({ name: g.name, count: g.count, driver: g.driver, rate: g.rate, qos: g.qos })),
    events: scenario.events,
    counts: {
      sent: c.sent,
      sentQos0: c.sentQos0,
      sentQos1: c.sentQos1,
      acked: c.acked,
      unacked,
      droppedOffline: c.droppedOffline,
      stored: tally?.stored ?? null,
      duplicated: tally?.duplicated ?? null,
      lost: tally ? tally.lost : unacked + c.droppedOffline,
      connects: c.connects,
      connectFailures: c.connectFailures,
      disconnects: c.disconnects,
      c2dSent: c.c2dSent,
      c2dReceived: c.c2dReceived,
      methodsInvoked: c.methodsInvoked,
      methodsReturned: c.methodsReturned,
      methodsAnswered: c.methodsAnswered,
      twinReported: c.twinReported,
    },
    connectPhase: connectPhase(c.initialConnects, snapshot.lastInitialConnectAt, snapshot.firstConnectAttemptAt || meta.startedAt),
    lossBasis: tally ? 'stream' : 'acks',
    errors: snapshot.errors,
    latencyMs: Object.fromEntries(LATENCIES.map((name) => [name, summarizeEncoded(snapshot.histograms[name])])) as Record<LatencyName, LatencySummary>,
    throughput: { targetPerS: scenario.groups.reduce((n, g) => n + g.count * g.rate, 0), sentPerS: rate(c.sent), ackedPerS: rate(c.acked), storedPerS: tally ? rate(tally.stored) : null },
    timeline: snapshot.timeline.map((t) => {
      const puback = summarizeEncoded(t.puback)
      const e2e = summarizeEncoded(t.e2e)
      return { second: t.second, sent: t.sent, acked: t.acked, stored: t.stored, disconnects: t.disconnects, connected: t.connected, pubackP50: puback.p50, pubackP99: puback.p99, e2eP50: e2e.p50, e2eP99: e2e.p99 }
    }),
  }
}

function connectPhase(devices: number, lastAt: number, startedAt: number): SimReport['connectPhase'] {
  const seconds = devices === 0 ? 0 : Math.max(0.001, (lastAt - startedAt) / 1000)
  return { devices, seconds: Math.round(seconds * 1000) / 1000, perSecond: devices === 0 ? 0 : Math.round(devices / seconds) }
}
