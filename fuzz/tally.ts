import type { SessionResult } from './driver.js'

/** Counts over a run: packets, connections and how each ended, what the gateway sent back. */
export class Tally {
  packets = 0
  bytes = 0
  connections = 0
  readonly logins: Record<string, number> = {}
  readonly upgrades: Record<string, number> = {}
  readonly ends: Record<string, number> = {}
  readonly connacks: Record<string, number> = {}
  readonly received: Record<string, number> = {}
  acked = 0
  /** Connections on which the gateway's own bytes did not parse as MQTT 3.1.1, with the first few errors. */
  parseErrors = 0
  readonly parseErrorSamples: string[] = []
  private readonly durations: number[] = []

  add(r: SessionResult): void {
    this.packets += r.packetsSent
    this.bytes += r.bytesSent
    if (r.end !== 'connect-failed') this.connections++
    bump(this.logins, `${r.login}${r.transport === 'ws' ? ' ws' : ''}`)
    if (r.upgrade !== null) bump(this.upgrades, String(r.upgrade))
    bump(this.ends, r.end)
    if (r.connack !== null) bump(this.connacks, String(r.connack))
    for (const [cmd, n] of Object.entries(r.received)) this.received[cmd] = (this.received[cmd] ?? 0) + n
    this.acked += r.acked.length
    this.durations.push(r.endedAt - r.startedAt)
    if (r.parseError) {
      this.parseErrors++
      if (this.parseErrorSamples.length < 5) this.parseErrorSamples.push(`case ${r.index}: ${r.parseError}`)
    }
  }

  summary(durationMs: number) {
    const s = durationMs / 1000
    return {
      packets: this.packets,
      bytes: this.bytes,
      connections: this.connections,
      packetsPerSecond: Math.round(this.packets / s),
      connectionsPerSecond: Math.round(this.connections / s),
      logins: { ...this.logins },
      upgrades: { ...this.upgrades },
      ends: { ...this.ends },
      connacks: { ...this.connacks },
      received: { ...this.received },
      acked: this.acked,
      parseErrors: this.parseErrors,
      parseErrorSamples: [...this.parseErrorSamples],
      sessionMs: percentiles(this.durations),
    }
  }

  progress(durationMs: number, rssGrowth: number): string {
    return `[fuzz] ${this.packets} packets, ${this.connections} connections, ${Math.round(this.packets / (durationMs / 1000))} packets/s, RSS +${(rssGrowth / 1048576).toFixed(1)} MiB`
  }
}

function bump(m: Record<string, number>, key: string): void {
  m[key] = (m[key] ?? 0) + 1
}

function percentiles(values: number[]): { p50: number; p90: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number): number => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0)
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: Math.round(sorted[sorted.length - 1] ?? 0) }
}
