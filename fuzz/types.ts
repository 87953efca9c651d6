import type { Bounds, Finding, SessionResult } from './driver.js'
import type { EdgeLimits } from './session.js'
import type { Tally } from './tally.js'

/** The shapes of a fuzz run: its target, options, failures and report (the run itself is run.ts). */

export interface FuzzTarget {
  host?: string
  mqttPort: number
  /** The HTTP port (MQTT over WebSocket); without it every session runs over TCP. */
  httpPort?: number
  mqttUrl: string
  output(): string
  /** Process running and /healthz 200. */
  alive(): Promise<boolean>
  /** True once the process has exited. */
  exited(): boolean
  /** Resident set size in bytes. */
  rss(): number
  /** Every `message-id` header in the telemetry topic. */
  storedMessageIds(): Promise<Set<string>>
}

/** Loopback addresses the fuzz connections come from (Linux routes all of 127/8 to lo). */
export const DEFAULT_FUZZ_ADDRESSES: readonly string[] = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']

export interface FuzzDevice {
  deviceId: string
  primaryKey: string
}

export interface FuzzOptions {
  target: FuzzTarget
  /** FUZZ_DEVICES registered SAS devices, index i being fuzzDeviceId(i). */
  devices: FuzzDevice[]
  /** A device of its own for the canary; none: no canary. */
  canary?: FuzzDevice
  seed: number
  /** Stop once this many packets were sent. */
  packets: number
  concurrency: number
  /**
   * Source addresses of the fuzz connections, used in turn. Apart from the canary's (127.0.0.1):
   * what the gateway does per source address (failed-login counts, pending connections) then
   * falls on the fuzzer, and the canary sees only what every device would see.
   */
  localAddresses?: string[]
  /** Run the WebSocket sessions over TCP instead (to look past a crash on the HTTP port). */
  tcpOnly?: boolean
  /** Run these cases only, in this order (a replay); default: 0, 1, 2, ... */
  cases?: number[]
  limits: EdgeLimits
  bounds?: Partial<Bounds>
  rssGrowthBytes: number
  canaryPubackMs?: number
  /** Drain and check every this many packets (with `cases`, after every case when 0). */
  checkpointPackets?: number
  /** Stop (and fail) when the run takes longer. */
  maxDurationMs?: number
  /** Stop at the first failure. */
  stopOnFailure?: boolean
  log?: (line: string) => void
  /** Called with each case's result (a replay prints them). */
  onResult?: (result: SessionResult) => void
}

export type FailureKind = Finding['kind'] | 'process-exited' | 'healthz' | 'output' | 'canary' | 'rss' | 'lost' | 'stalled'

export interface Failure {
  kind: FailureKind
  signature: string
  what: string
  /** The case that broke it, when known; `step` is its step. */
  case?: number
  step?: number
  /** Otherwise the cases in flight at the time. */
  suspects?: number[]
}

export interface FuzzReport {
  seed: number
  tally: ReturnType<Tally['summary']>
  durationMs: number
  rss: { baseline: number; peak: number }
  canary: { rounds: number; failed: number; maxConnectMs: number; maxPubackMs: number }
  acked: string[]
  failures: Failure[]
}

