import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { buildLoadgen, writeConnections, type LoadgenConnection } from './loadgen.js'

/**
 * A fleet of answering devices held by the C load generator (`--device --hold --reconnect`): each
 * connection subscribes to its cloud-to-device topic and to methods, completes every message and
 * answers every method, and when its gateway goes away connects again to the next one. One process
 * holds at most what its open-file limit allows, so a large fleet is several of them.
 */
export interface FleetProcessOptions {
  connections: readonly LoadgenConnection[]
  /** MQTT ports of the instances; connection i starts on ports[(i + portOffset) % n]. */
  ports: readonly number[]
  portOffset: number
  /** Binds connection i to 127.<sourceNet>.<i/250>.<i%250+1>. */
  sourceNet: number
  concurrency: number
  connectTimeoutSeconds: number
  file: string
}

export interface FleetStatus {
  ready: number
  reconnects: number
  atMs: number
}

export interface FleetProcess {
  child: ChildProcess
  /** Resolves with the number of connections up once every one is (or the connect timeout passed). */
  held: Promise<number>
  /** The latest "status" line. */
  status(): FleetStatus
  /** Called for every cloud-to-device message and method request a device of this process saw. */
  onEvent(handler: (kind: 'c2d' | 'method', deviceId: string, atMs: number) => void): void
  /** Closes stdin (the generator disconnects everything) and resolves with its final JSON. */
  release(): Promise<Record<string, number>>
}

export function startFleetProcess(o: FleetProcessOptions): FleetProcess {
  const binary = buildLoadgen()
  writeConnections(o.file, o.connections)
  const args = [
    '--creds', o.file, '--mode', 'connect', '--hold', '--device', '--reconnect',
    '--ports', o.ports.join(','), '--port-offset', String(o.portOffset), '--source-net', String(o.sourceNet),
    '--concurrency', String(o.concurrency), '--connect-timeout', String(o.connectTimeoutSeconds), '--keepalive', '0',
  ]
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)))
  let latest: FleetStatus = { ready: 0, reconnects: 0, atMs: Date.now() }
  const handlers: Array<(kind: 'c2d' | 'method', deviceId: string, atMs: number) => void> = []
  let result: Record<string, number> | null = null
  let heldResolve!: (n: number) => void
  let heldReject!: (err: Error) => void
  const held = new Promise<number>((res, rej) => ((heldResolve = res), (heldReject = rej)))
  const exited = new Promise<number | null>((r) => child.once('exit', r))
  void exited.then((code) => heldReject(new Error(`load generator exited (${code}) before its devices were up\n${stderr}`)))
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const [kind, a, b, c] = line.split(' ')
    if (kind === 'status') latest = { ready: Number(a), reconnects: Number(b), atMs: Number(c) / 1000 }
    else if (kind === 'c2d' || kind === 'method') for (const h of handlers) h(kind, a!, Number(b) / 1000)
    else if (kind === 'held') heldResolve(Number(a))
    else if (line.startsWith('{')) result = JSON.parse(line) as Record<string, number>
  })
  return {
    child,
    held,
    status: () => latest,
    onEvent: (h) => void handlers.push(h),
    release: async () => {
      child.stdin!.end()
      await exited
      if (!result) throw new Error(`load generator printed no result\n${stderr}`)
      return result
    },
  }
}

/** CPU time of a process so far (Linux /proc/<pid>/stat, utime + stime), in seconds; 0 once it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readStat(pid)
    return stat ? (stat.utime + stat.stime) / 100 : 0
  } catch {
    return 0
  }
}

function readStat(pid: number): { comm: string; utime: number; stime: number; cutime: number; cstime: number } | null {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const close = text.lastIndexOf(')')
  const comm = text.slice(text.indexOf('(') + 1, close)
  const fields = text.slice(close + 2).split(' ')
  // Fields after the name start at 3 (state); utime is field 14, stime 15.
  // cutime and cstime (16, 17) hold the CPU of children that exited and were reaped.
  return { comm, utime: Number(fields[11]), stime: Number(fields[12]), cutime: Number(fields[13]), cstime: Number(fields[14]) }
}

/**
 * CPU seconds used so far by every process whose name starts with `prefix` (e.g. the PostgreSQL server's),
 * counting children that already exited (a PostgreSQL backend's CPU moves to the postmaster when it ends).
 */
export function cpuSecondsByName(prefix: string): number {
  let total = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readStat(Number(entry))
      if (stat && stat.comm.startsWith(prefix)) total += (stat.utime + stat.stime + stat.cutime + stat.cstime) / 100
    } catch {
      // Gone between the listing and the read.
    }
  }
  return total
}
