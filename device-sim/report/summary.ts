import type { SimReport } from './build.js'
import type { Progress } from '../workers.js'

/** The terminal output: a live line once a second (TTY only) and the final table. */

export function progressLine(elapsedS: number, p: Progress, previousSent: number): string {
  return `[${elapsedS.toFixed(0).padStart(4)} s] connected ${p.connected}  msgs/s ${p.sent - previousSent}  sent ${p.sent}  acked ${p.acked}  PUBACK p99 ${p.pubackP99Ms.toFixed(2)} ms  errors ${p.errors}`
}

const fmt = (n: number | null, digits = 0): string => (n === null ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }))

export function summaryTable(r: SimReport): string {
  const c = r.counts
  const lines = [
    `streamgate-sim run ${r.runId}: ${r.devices} devices, ${r.workers} process(es), ${r.durationS.toFixed(1)} s, ${r.gateway}`,
    '',
    'counts',
    `  sent ${fmt(c.sent)} (QoS 0 ${fmt(c.sentQos0)}, QoS 1 ${fmt(c.sentQos1)})   acked ${fmt(c.acked)}   unacked ${fmt(c.unacked)}`,
    `  stored ${fmt(c.stored)}   duplicated ${fmt(c.duplicated)}   lost ${fmt(c.lost)} (by ${r.lossBasis})   dropped offline (QoS 0) ${fmt(c.droppedOffline)}`,
    `  fleet connected: ${fmt(r.connectPhase.devices)} devices in ${fmt(r.connectPhase.seconds, 2)} s (${fmt(r.connectPhase.perSecond)}/s)`,
    `  connects ${fmt(c.connects)}   connect failures ${fmt(c.connectFailures)}   disconnects ${fmt(c.disconnects)}`,
    `  c2d sent ${fmt(c.c2dSent)} received ${fmt(c.c2dReceived)}   methods invoked ${fmt(c.methodsInvoked)} answered ${fmt(c.methodsAnswered)} returned ${fmt(c.methodsReturned)}   twin reported ${fmt(c.twinReported)}`,
    '',
    `throughput  sent ${fmt(r.throughput.sentPerS, 1)}/s (target ${fmt(r.throughput.targetPerS, 1)}/s)   acked ${fmt(r.throughput.ackedPerS, 1)}/s   stored ${fmt(r.throughput.storedPerS, 1)}/s`,
    '',
    'latency (ms)        count       p50       p90       p99     p99.9       max',
  ]
  for (const [name, s] of Object.entries(r.latencyMs)) {
    if (s.count === 0) continue
    lines.push(`  ${name.padEnd(12)} ${fmt(s.count).padStart(10)} ${[s.p50, s.p90, s.p99, s.p999, s.max].map((v) => fmt(v, 2).padStart(9)).join(' ')}`)
  }
  const errors = Object.entries(r.errors).sort(([, a], [, b]) => b - a)
  lines.push('', errors.length === 0 ? 'errors: none' : 'errors by code')
  for (const [code, n] of errors) lines.push(`  ${code.padEnd(28)} ${fmt(n)}`)
  return lines.join('\n') + '\n'
}
