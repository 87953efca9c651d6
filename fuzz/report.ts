import type { Failure, FuzzReport } from './run.js'
import { caseOf, type EdgeLimits } from './session.js'
import { hex } from './wire.js'

const mib = (n: number): string => (n / 1048576).toFixed(1)

/** The figures of a run, one line each. */
export function formatReport(r: FuzzReport): string {
  const t = r.tally
  const kv = (m: Record<string, number>): string =>
    Object.entries(m)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || '-'
  return [
    `[fuzz] seed ${r.seed}: ${t.packets} packets (${mib(t.bytes)} MiB) over ${t.connections} connections in ${(r.durationMs / 1000).toFixed(1)} s: ${t.packetsPerSecond} packets/s, ${t.connectionsPerSecond} connections/s`,
    `[fuzz] sessions: ${kv(t.logins)}; ended: ${kv(t.ends)}; ms per session: p50 ${t.sessionMs.p50}, p90 ${t.sessionMs.p90}, p99 ${t.sessionMs.p99}, max ${t.sessionMs.max}`,
    `[fuzz] WebSocket upgrades (HTTP status): ${kv(t.upgrades)}; CONNACK codes: ${kv(t.connacks)}; from the gateway: ${kv(t.received)}; QoS 1 telemetry acknowledged: ${t.acked}`,
    `[fuzz] RSS ${mib(r.rss.baseline)} -> peak ${mib(r.rss.peak)} MiB (+${mib(r.rss.peak - r.rss.baseline)}); canary ${r.canary.rounds} rounds, ${r.canary.failed} failed, max connect ${r.canary.maxConnectMs.toFixed(0)} ms, max PUBACK ${r.canary.maxPubackMs.toFixed(0)} ms`,
    ...(t.parseErrors > 0 ? [`[fuzz] note: on ${t.parseErrors} connections the gateway's bytes did not parse as MQTT 3.1.1: ${t.parseErrorSamples.join('; ')}`] : []),
    `[fuzz] failures: ${new Set(r.failures.map((f) => f.signature)).size} distinct, ${r.failures.length} in all`,
  ].join('\n')
}

/** One case, step by step, in hex: what to paste into an issue, and how to replay it. */
export function describeCase(seed: number, index: number, limits: EdgeLimits, maxHexBytes = 600): string {
  const s = caseOf(seed, index, limits)
  const over = s.transport.kind === 'ws' ? `, MQTT over WebSocket: GET ${JSON.stringify(s.transport.path.length > 200 ? `${s.transport.path.slice(0, 200)}…` : s.transport.path)} sub-protocol ${s.transport.protocol ?? '(none)'}` : ''
  const lines = [`  case ${index} (${s.login === 'valid' ? `valid session of ${s.deviceId}, clean ${s.clean ? 1 : 0}, keepalive ${s.keepalive}` : `raw session, from the first byte`}${over}); replay: npm run fuzz -- --seed ${seed} --case ${index}`]
  if (s.login === 'valid') lines.push(`    #-  CONNECT of ${s.deviceId}, user localhost/${s.deviceId}/?api-version=2021-04-12, a valid SAS token made at run time; waits for CONNACK 0`)
  s.steps.forEach((step, i) => {
    const expect = step.expect ? ` [expect ${step.expect.kind}${'why' in step.expect ? `: ${step.expect.why}` : ''}]` : ''
    lines.push(`    #${i}  ${step.label}${step.framed ? '' : ' (damaged)'}${expect}`)
    lines.push(`         ${hex(step.bytes, maxHexBytes)}`)
  })
  return lines.join('\n')
}

interface Group {
  first: Failure
  all: Failure[]
}

/** Failures grouped by cause, each with its first case in hex (or the suspects when the case is not known). */
export function formatFailures(r: FuzzReport, limits: EdgeLimits, examples = 2): string {
  if (r.failures.length === 0) return `[fuzz] seed ${r.seed}: no failures`
  const groups = new Map<string, Group>()
  for (const f of r.failures) {
    const g = groups.get(f.signature)
    if (g) g.all.push(f)
    else groups.set(f.signature, { first: f, all: [f] })
  }
  const out = [`[fuzz] FAILURES with seed ${r.seed} (replay the run: npm run fuzz -- --seed ${r.seed} --packets ${r.tally.packets}): ${groups.size} distinct`]
  let n = 0
  for (const [signature, g] of groups) {
    n++
    const cases = [...new Set(g.all.flatMap((f) => (f.case === undefined ? [] : [f.case])))]
    out.push('', `${n}) ${signature}: ${g.all.length} time(s)${cases.length > 0 ? `, cases ${cases.slice(0, 20).join(', ')}${cases.length > 20 ? ', ...' : ''}` : ''}`)
    out.push(`   ${g.first.what.split('\n').join('\n   ')}`)
    for (const index of cases.slice(0, examples)) {
      const f = g.all.find((x) => x.case === index)!
      if (f.step !== undefined) out.push(`   case ${index}, step #${f.step}: ${f.what}`)
      out.push(describeCase(r.seed, index, limits))
    }
    const suspects = g.first.suspects ?? []
    if (cases.length === 0 && suspects.length > 0) {
      out.push(`   cases in flight at the time: ${suspects.slice(0, 60).join(', ')}${suspects.length > 60 ? ', ...' : ''}`)
      out.push(`   find the one: npm run fuzz -- --seed ${r.seed} --cases ${suspects.slice(0, 60).join(',')} (runs them one at a time, checking after each)`)
      for (const index of suspects.slice(-examples)) out.push(describeCase(r.seed, index, limits))
    }
  }
  return out.join('\n')
}
