import { setTimeout as sleep } from 'node:timers/promises'
import * as hdr from 'hdr-histogram-js'
import { RawPublisher, type RawClientOptions } from './raw-client.js'

/**
 * The closed-loop QoS 1 load shared by bench/ingest and bench/kafka-ingest: every device keeps
 * `window` publishes unacknowledged and sends the next one on each PUBACK. Only PUBACKs inside
 * the measured period (after the warm-up) count.
 */
export interface ClosedLoopOptions {
  port: number
  devices: number
  window: number
  payload: Buffer
  warmupSeconds: number
  seconds: number
  /** Time left for the last PUBACKs before the sockets close. */
  drainMs: number
  client: (i: number) => Omit<RawClientOptions, 'host' | 'port'>
}

/** The command-line options of the closed-loop benchmarks, as node:util parseArgs specs. */
export const LOAD_OPTIONS = {
  devices: { type: 'string', default: '200' },
  seconds: { type: 'string', default: '15' },
  warmup: { type: 'string', default: '3' },
  window: { type: 'string', default: '8' },
  payload: { type: 'string', default: '200' },
  /** Write a V8 CPU profile of the gateway process into this directory. */
  'profile-dir': { type: 'string' },
} as const

export type ClosedLoopLoad = Pick<ClosedLoopOptions, 'devices' | 'window' | 'payload' | 'warmupSeconds' | 'seconds'>

/** The load LOAD_OPTIONS describe. */
export function loadFromArgs(v: { devices: string; seconds: string; warmup: string; window: string; payload: string }): ClosedLoopLoad {
  return { devices: Number(v.devices), seconds: Number(v.seconds), warmupSeconds: Number(v.warmup), window: Number(v.window), payload: Buffer.alloc(Number(v.payload), 'x') }
}

/** Node options that write a CPU profile of the gateway into `dir`, when given. */
export const profileArgs = (dir: string | undefined): string[] => (dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [])

export interface ClosedLoopFigures {
  messages: number
  seconds: number
  rate: number
  /** PUBACK latency percentiles, ms. */
  p50: number
  p99: number
  p999: number
}

export async function runClosedLoop(o: ClosedLoopOptions): Promise<ClosedLoopFigures> {
  const clients: RawPublisher[] = []
  for (let i = 0; i < o.devices; i++) {
    const c = new RawPublisher({ host: '127.0.0.1', port: o.port, ...o.client(i) })
    await c.connect()
    clients.push(c)
  }
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
  let measuring = false
  let counted = 0
  let stop = false
  clients.forEach((c, i) => {
    const topic = `devices/${o.client(i).clientId}/messages/events/`
    const pump = (): void => {
      while (!stop && c.inFlight < o.window) c.publish(topic, o.payload)
    }
    c.onAck = (ns) => {
      if (measuring) {
        counted++
        histogram.recordValue(Number(ns / 1000n))
      }
      pump()
    }
    pump()
  })
  await sleep(o.warmupSeconds * 1000)
  measuring = true
  const t0 = process.hrtime.bigint()
  await sleep(o.seconds * 1000)
  measuring = false
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  stop = true
  await sleep(o.drainMs)
  for (const c of clients) c.close()
  const figures = {
    messages: counted,
    seconds: elapsed,
    rate: counted / elapsed,
    p50: histogram.getValueAtPercentile(50) / 1000,
    p99: histogram.getValueAtPercentile(99) / 1000,
    p999: histogram.getValueAtPercentile(99.9) / 1000,
  }
  histogram.destroy()
  return figures
}
