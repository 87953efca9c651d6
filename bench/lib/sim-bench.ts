import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { createEventStream } from '../../src/app/backends.js'
import { loadConfig } from '../../src/config/load.js'
import type { EventStream, StoredRecord } from '../../src/stream/types.js'
import { generateSasToken } from '../../src/auth/sas.js'
import { waitForLine } from './child-output.js'
import { memStatsChild } from './mem-stats.js'

/**
 * Processes and fixtures for bench/sim-headline: a gateway or a bare Aedes broker as a child
 * process (one core each, its own open-file limit), a registry filled directly (faster than
 * 19,500 API calls and not what is measured), the gateway's RSS and connection gauge.
 */

const here = dirname(fileURLToPath(import.meta.url))
export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789'

export interface Server {
  child: ChildProcess
  mqttUrl: string
  httpUrl: string | null
  /** Where the child writes its memory figures on request (see mem-stats.ts). */
  memStatsFile: string
  stop(): Promise<void>
}

/** Each server child can report its memory (mem-stats.ts); its file sits in the temp dir. */
function memStatsFor(name: string): { file: string; nodeArgs: string[]; env: Record<string, string> } {
  const file = join(tmpdir(), `streamgate-bench-mem-${name}-${process.pid}-${Date.now().toString(36)}.json`)
  return { file, ...memStatsChild(file) }
}

function stopper(child: ChildProcess, memStatsFile: string): () => Promise<void> {
  return async () => {
    rmSync(memStatsFile, { force: true })
    // A child killed by a signal (the scale-out benchmark SIGKILLs one) has exitCode null.
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGTERM')
    await exited
  }
}

/** `nodeArgs`: extra options for node itself (e.g. --cpu-prof); `main`: another build's dist/src/cli/main.js (before/after runs). */
export async function startGateway(dataDir: string, env: Record<string, string> = {}, args: string[] = [], nodeArgs: string[] = [], main = join(here, '..', '..', 'src', 'cli', 'main.js')): Promise<Server> {
  const mem = memStatsFor('gateway')
  const child = spawn(process.execPath, [...nodeArgs, ...mem.nodeArgs, main, 'start', ...args], {
    env: {
      ...mem.env,
      ...process.env,
      STREAMGATE_DATA_DIR: dataDir,
      STREAMGATE_MQTT_PORT: '0',
      STREAMGATE_HTTP_PORT: '0',
      STREAMGATE_LOG_LEVEL: 'warn',
      STREAMGATE_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      // The load comes from a handful of loopback addresses, thousands of devices each, where a
      // real fleet connects from as many addresses as it has devices: the per-address bound on
      // connections not yet authenticated would measure the load generator, not the gateway.
      STREAMGATE_LIMITS__MAX_PENDING_CONNECTIONS_PER_ADDRESS: '20000',
      STREAMGATE_LIMITS__MAX_PENDING_CONNECTIONS: '20000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const m = await waitForLine(child, /mqtt:\/\/([^:\s]+):(\d+)[\s\S]*?http:\/\/([^:\s]+):(\d+)\/api/)
  return { child, mqttUrl: `mqtt://127.0.0.1:${m[2]}`, httpUrl: `http://127.0.0.1:${m[4]}`, memStatsFile: mem.file, stop: stopper(child, mem.file) }
}

export async function startBareAedes(): Promise<Server> {
  const mem = memStatsFor('bare')
  const child = spawn(process.execPath, [...mem.nodeArgs, join(here, '..', 'bare-aedes.js')], { env: { ...process.env, ...mem.env }, stdio: ['ignore', 'pipe', 'inherit'] })
  const m = await waitForLine(child, /listening (\d+)/)
  return { child, mqttUrl: `mqtt://127.0.0.1:${m[1]}`, httpUrl: null, memStatsFile: mem.file, stop: stopper(child, mem.file) }
}

/** Resolves once the gateway answers /readyz with 200 (Kafka: its topics exist), or throws after `timeoutMs`. */
export async function waitReady(server: Server, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if ((await fetch(`${server.httpUrl}/readyz`).catch(() => null))?.status === 200) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`the gateway was not ready within ${timeoutMs / 1000} s (is its stream reachable?)`)
}

export interface SeededDevice {
  deviceId: string
  key: string
}

/** Create `count` SAS devices (`<prefix>000001`, ...) directly in the data dir's registry. */
export async function seedDevices(dataDir: string, prefix: string, count: number): Promise<SeededDevice[]> {
  const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
  await registry.start()
  const devices: SeededDevice[] = []
  for (let i = 1; i <= count; i++) {
    const deviceId = `${prefix}${String(i).padStart(6, '0')}`
    devices.push({ deviceId, key: (await registry.create({ deviceId })).primaryKey })
  }
  await registry.stop()
  return devices
}

/** seedDevices, and a credentials file the simulator reads. */
export async function seedRegistry(dataDir: string, prefix: string, count: number): Promise<string> {
  const file = join(dataDir, 'sim-credentials.json')
  writeFileSync(file, JSON.stringify(await seedDevices(dataDir, prefix, count)))
  return file
}

/** IoT Hub-style MQTT credentials (SAS token, valid an hour) for device `i` of a seeded fleet. */
export function sasCredentials(devices: readonly SeededDevice[]): (i: number) => { clientId: string; username: string; password: string } {
  const expiresAt = Math.floor(Date.now() / 1000) + 3600
  return (i) => {
    const { deviceId, key } = devices[i]!
    return { clientId: deviceId, username: `localhost/${deviceId}/?api-version=2021-04-12`, password: generateSasToken({ host: 'localhost', deviceId, key, expiresAt }) }
  }
}

/** The port of a server's mqtt:// URL. */
export const mqttPort = (server: Server): number => Number(new URL(server.mqttUrl).port)

/** Resident set size of a process, in bytes (Linux /proc); 0 once it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** The embedded stream of `dataDir` opened as a tool (no retention): to read, or to write while no gateway runs. */
export async function withStream<T>(dataDir: string, use: (stream: EventStream, partitions: number) => Promise<T>): Promise<T> {
  const config = loadConfig({ env: {}, overrides: { dataDir, 'log.level': 'silent' } })
  const stream = createEventStream(config, 'tool')
  await stream.start([])
  try {
    return await use(stream, config.stream.partitions)
  } finally {
    await stream.stop()
  }
}

/** Every record of a topic of `dataDir`'s embedded stream, by partition then offset (none when it does not exist). */
export async function readTopic(dataDir: string, topic: string): Promise<StoredRecord[]> {
  return withStream(dataDir, async (stream) => {
    const out: StoredRecord[] = []
    for (const p of await stream.offsets(topic).catch(() => [])) {
      for (let offset = p.low; offset < p.high; ) {
        const batch = await stream.read(topic, p.partition, offset, 5000)
        if (batch.length === 0) break
        out.push(...batch)
        offset = batch[batch.length - 1]!.offset + 1
      }
    }
    return out
  })
}

/** Every `message-id` header of the telemetry topic, as `streamgate tail` would read it. */
export async function storedMessageIds(dataDir: string): Promise<Set<string>> {
  const ids = new Set<string>()
  for (const r of await readTopic(dataDir, 'telemetry')) if (r.headers['message-id'] !== undefined) ids.add(r.headers['message-id'])
  return ids
}

/** Open sockets of a process (Linux /proc): for a server, its connections plus its listeners. */
export function openSockets(pid: number): number {
  const dir = `/proc/${pid}/fd`
  let sockets = 0
  for (const fd of readdirSync(dir)) {
    try {
      if (readlinkSync(`${dir}/${fd}`).startsWith('socket:')) sockets++
    } catch {
      // Closed between the listing and the read.
    }
  }
  return sockets
}

/** The gateway's own count of open device connections (Prometheus gauge). */
export async function gatewayConnections(httpUrl: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } })).text()
  const m = /^streamgate_mqtt_connections\s+(\d+)/m.exec(text)
  return m ? Number(m[1]) : 0
}
