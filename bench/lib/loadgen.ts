import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The C load generator (bench/loadgen/loadgen.c) from TypeScript: built with the system C
 * compiler on first use (into dist/, keyed by the source's hash), fed a connections file, its
 * one JSON result parsed. A run whose generator used more than CLIENT_BOUND_CORES of a core is
 * client-bound: its figure says as much about the generator as about the broker.
 */

export const CLIENT_BOUND_CORES = 0.5

export interface LoadgenConnection {
  clientId: string
  username?: string
  password?: string
  /** The topic this connection publishes to. */
  topic: string
}

export interface LoadgenOptions {
  port: number
  host?: string
  /** The connections, or a file written by writeConnections. */
  connections: readonly LoadgenConnection[] | string
  mode: 'saturate' | 'rate' | 'connect'
  /** QoS 1 publishes unacknowledged per connection (default 10). */
  window?: number
  payloadBytes?: number
  seconds?: number
  warmupSeconds?: number
  /** rate mode: publishes per second in all. */
  rate?: number
  /** CONNECTs outstanding at once while connecting (default 200). */
  concurrency?: number
  /**
   * Bind connection i to its own loopback address 127.B.x.y (IP_BIND_ADDRESS_NO_PORT). From one
   * address, a storm of 19,500 connects filled 70 % of the ephemeral port range and the kernel's
   * search for a free port, charged to the generator, made it the bottleneck.
   */
  sourceNet?: number
}

export interface LoadgenResult {
  mode: string
  conns: number
  connected: number
  /** CONNACKs with a non-zero return code. */
  refused: number
  /** Connections that failed or were closed by the broker. */
  failed: number
  sent: number
  acked: number
  /** PUBACKs inside the measured window. */
  windowAcked: number
  seconds: number
  /** windowAcked per second (saturate, rate); connections per second (connect). */
  rate: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
  cpuSeconds: number
  /** The generator's CPU use over the measured window, in cores. */
  cpuShare: number
  clientBound: boolean
}

function repoRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bench', 'loadgen', 'loadgen.c'))) return dir
    if (dirname(dir) === dir) throw new Error('bench/loadgen/loadgen.c not found above this module')
  }
}

/** Path of the built generator; compiles it when the source changed. Throws when there is no C compiler. */
export function buildLoadgen(): string {
  const root = repoRoot()
  const source = join(root, 'bench', 'loadgen', 'loadgen.c')
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 12)
  const binary = join(root, 'dist', 'loadgen', `loadgen-${hash}`)
  if (existsSync(binary)) return binary
  mkdirSync(dirname(binary), { recursive: true })
  const cc = process.env.CC ?? 'cc'
  try {
    execFileSync(cc, ['-O2', '-Wall', '-o', binary, source], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? ''
    throw new Error(`cannot build the load generator with ${cc} (install a C compiler, e.g. apt-get install gcc): ${(err as Error).message}\n${stderr}`)
  }
  return binary
}

/** Whether a C compiler is there to build the generator. */
export function canBuildLoadgen(): boolean {
  try {
    execFileSync(process.env.CC ?? 'cc', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** One line per connection: clientId, username, password, topic, separated by tabs. */
export function writeConnections(file: string, connections: readonly LoadgenConnection[]): string {
  const lines = connections.map((c) => {
    const fields = [c.clientId, c.username ?? '', c.password ?? '', c.topic]
    if (fields.some((f) => /[\t\r\n]/.test(f))) throw new Error(`connection ${c.clientId}: fields must not hold tabs or line breaks`)
    return fields.join('\t')
  })
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 })
  return file
}

function args(o: LoadgenOptions, file: string): string[] {
  const a = ['--creds', file, '--mode', o.mode, '--host', o.host ?? '127.0.0.1', '--port', String(o.port)]
  if (o.window !== undefined) a.push('--window', String(o.window))
  if (o.payloadBytes !== undefined) a.push('--payload', String(o.payloadBytes))
  if (o.seconds !== undefined) a.push('--seconds', String(o.seconds))
  if (o.warmupSeconds !== undefined) a.push('--warmup', String(o.warmupSeconds))
  if (o.rate !== undefined) a.push('--rate', String(o.rate))
  if (o.concurrency !== undefined) a.push('--concurrency', String(o.concurrency))
  if (o.sourceNet !== undefined) a.push('--source-net', String(o.sourceNet))
  return a
}

function connectionsFile(o: LoadgenOptions): string {
  if (typeof o.connections === 'string') return o.connections
  const file = join(dirname(buildLoadgen()), `connections-${process.pid}-${Date.now().toString(36)}.tsv`)
  return writeConnections(file, o.connections)
}

function parseResult(stdout: string): LoadgenResult {
  const line = stdout.split('\n').find((l) => l.startsWith('{'))
  if (!line) throw new Error(`the load generator printed no result:\n${stdout}`)
  const r = JSON.parse(line) as Omit<LoadgenResult, 'clientBound'>
  return { ...r, clientBound: r.cpuShare > CLIENT_BOUND_CORES }
}

/** Runs the generator to the end of its window and returns its result. */
export function runLoadgen(o: LoadgenOptions): Promise<LoadgenResult> {
  const binary = buildLoadgen()
  const file = connectionsFile(o)
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args(o, file), { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.once('error', reject)
    child.once('exit', (code) => {
      try {
        const result = parseResult(stdout)
        if (code !== 0 && result.connected === 0) reject(new Error(`load generator: no connection accepted\n${stderr}`))
        else resolve(result)
      } catch (err) {
        reject(new Error(`${(err as Error).message}\nexit ${code}\n${stderr}`))
      }
    })
  })
}

export interface HeldConnections {
  /** The connect result so far: how many are up, connects per second, CPU share. */
  held: number
  /** Disconnects them all; resolves with the connect figures. */
  release(): Promise<LoadgenResult>
}

/** Connect mode with --hold: resolves once every connection is up (or refused), and keeps them. */
export function holdConnections(o: Omit<LoadgenOptions, 'mode'>): Promise<HeldConnections> {
  const binary = buildLoadgen()
  const file = connectionsFile({ ...o, mode: 'connect' })
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [...args({ ...o, mode: 'connect' }, file), '--hold'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const exited = new Promise<number | null>((r) => child.once('exit', r))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.once('error', reject)
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
      const m = /^held (\d+)$/m.exec(stdout)
      if (!m) return
      child.stdout.removeAllListeners('data')
      child.stdout.on('data', (more: Buffer) => (stdout += more.toString()))
      resolve({
        held: Number(m[1]),
        release: async () => {
          child.stdin.end()
          await exited
          return parseResult(stdout)
        },
      })
    })
    void exited.then((code) => reject(new Error(`load generator exited (${code}) before its connections were up\n${stderr}`)))
  })
}
