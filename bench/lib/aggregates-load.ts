import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { PublisherOptions } from './aggregates-publisher.js'
import { CLIENT_BOUND_CORES, runLoadgen, type LoadgenResult } from './loadgen.js'

/**
 * The load of bench/aggregates, either generator behind one call:
 *
 *   json  aggregates-publisher.ts, a Node child process: JSON bodies, so the aggregate functions
 *         have numbers to fold. Node costs more CPU per message than the C generator; on a
 *         2-core machine it takes a share of what the gateway could use (its share is printed;
 *         above CLIENT_BOUND_CORES the run is client-bound).
 *   c     bench/loadgen/loadgen.c: cheap, so the gateway is the limit, but its payloads are
 *         `t=<µs>;` and padding (never JSON), so every function skips every record (`skipped`)
 *         and only the windowing, the counts and the outputs are exercised.
 */

export type LoadKind = 'json' | 'c'

export interface AggregateLoadOptions {
  kind: LoadKind
  port: number
  /** A connections file (loadgen.ts writeConnections). */
  connections: string
  window: number
  payloadBytes: number
  seconds: number
  warmupSeconds: number
  /** Publishes per second in all; absent: saturate. */
  rate?: number
}

export interface StartedLoad {
  done: Promise<LoadgenResult>
  /** The generator's process (for CPU samples); null for the C generator (runLoadgen does not say). */
  pid: number | null
}

const publisher = join(dirname(fileURLToPath(import.meta.url)), 'aggregates-publisher.js')

export function startLoad(o: AggregateLoadOptions): StartedLoad {
  if (o.kind === 'c') {
    const mode = o.rate === undefined ? 'saturate' : 'rate'
    return { pid: null, done: runLoadgen({ port: o.port, connections: o.connections, mode, window: o.window, payloadBytes: o.payloadBytes, seconds: o.seconds, warmupSeconds: o.warmupSeconds, ...(o.rate === undefined ? {} : { rate: o.rate }) }) }
  }
  const options: PublisherOptions = { port: o.port, host: '127.0.0.1', connections: o.connections, window: o.window, seconds: o.seconds, warmupSeconds: o.warmupSeconds, rate: o.rate ?? 0, payloadBytes: o.payloadBytes, concurrency: 200 }
  const child = spawn(process.execPath, [publisher, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] })
  const done = new Promise<LoadgenResult>((resolve, reject) => {
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.once('error', reject)
    child.once('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('{"mode"'))
      if (!line) return reject(new Error(`the JSON publisher printed no result (exit ${code}):\n${stdout}\n${stderr}`))
      const r = JSON.parse(line) as Omit<LoadgenResult, 'clientBound'>
      resolve({ ...r, clientBound: r.cpuShare > CLIENT_BOUND_CORES })
    })
  })
  return { pid: child.pid ?? null, done }
}
