import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import { parseArgs } from 'node:util'
import { benchKafka, freePort, hasCommand, localKafkaMissing } from './lib/local-kafka.js'
import { holdConnections, runLoadgen, writeConnections, type LoadgenConnection, type LoadgenResult } from './lib/loadgen.js'
import { producerAlone } from './lib/producer-alone.js'
import { BENCH_ADMIN_TOKEN, mqttPort, rssBytes, sasCredentials, seedDevices, startBareAedes, startGateway, waitReady, type SeededDevice, type Server } from './lib/sim-bench.js'

/**
 * bench/compare: streamgate side by side with a bare in-memory Aedes broker (and Mosquitto when
 * it is installed), under the C load generator (bench/loadgen), repeated with the targets
 * alternating; medians, ranges and gateway/bare ratios, and the generator's CPU share of every
 * run. A figure with a client-bound run (the generator above half a core) gets no ratio.
 *
 *   ingest   QoS 1 PUBACKs/s at saturation: 100 connections x 10 in flight, 200-byte payloads
 *   latency  PUBACK p50/p99 at a fixed 5,000 msg/s over the same 100 connections
 *   connect  connect storm (SAS for the gateway), connects/s, then RSS per held connection
 *   kafka    gateway on Kafka at saturation vs a kafkajs producer alone (a local broker from
 *            scripts/kafka-local.sh, or --brokers; skipped, saying why, without Java and Maven)
 *
 *   npm run bench:compare [-- --reps 3 --only ingest,latency,connect,kafka --seconds 10 --devices 19500 --json FILE]
 *                         [--gateway-main OTHER/dist/src/cli/main.js] [--gateway-env KEY=VALUE ...]
 */
const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    only: { type: 'string', default: 'ingest,latency,connect,kafka' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    conns: { type: 'string', default: '100' },
    window: { type: 'string', default: '10' },
    payload: { type: 'string', default: '200' },
    rate: { type: 'string', default: '5000' },
    devices: { type: 'string', default: '19500' },
    concurrency: { type: 'string', default: '500' },
    partitions: { type: 'string', default: '8' },
    brokers: { type: 'string', default: process.env.KAFKA_BROKERS ?? '' },
    'no-mosquitto': { type: 'boolean' },
    /** Run this build of the gateway instead (another checkout's dist/src/cli/main.js), for before/after figures. */
    'gateway-main': { type: 'string' },
    /** Extra gateway environment, e.g. STREAMGATE_STREAM__EMBEDDED__WRITER_THREAD=false. */
    'gateway-env': { type: 'string', multiple: true, default: [] },
    json: { type: 'string' },
  },
})
const REPS = Number(values.reps)
const ONLY = new Set(values.only.split(','))
const SECONDS = Number(values.seconds)
const WARMUP = Number(values.warmup)
const CONNS = Number(values.conns)
const WINDOW = Number(values.window)
const PAYLOAD = Number(values.payload)
const RATE = Number(values.rate)
const DEVICES = Number(values.devices)
const CONCURRENCY = Number(values.concurrency)
const GATEWAY_ENV = Object.fromEntries(values['gateway-env'].map((kv) => kv.split('=', 2) as [string, string]))

const out = (line = ''): void => void process.stdout.write(`${line}\n`)
const fmt = (v: number, d = 0): string => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a')

type TargetName = 'streamgate' | 'bare Aedes' | 'Mosquitto'
interface Target {
  name: TargetName
  start(): Promise<Server>
  connections(count: number): LoadgenConnection[]
}

interface Sample {
  target: string
  figure: string
  value: number
  unit: string
  cpuShare: number
  clientBound: boolean
  detail?: Record<string, number>
}

// ---- targets ----------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'streamgate-compare-'))
const templateDir = join(work, 'template')
let seeded: SeededDevice[] = []

/** The gateway's registry with every device the largest scenario needs, seeded once and copied per run. */
async function seedTemplate(): Promise<void> {
  const count = Math.max(CONNS, ONLY.has('connect') ? DEVICES : 0)
  const t0 = Date.now()
  seeded = await seedDevices(templateDir, 'cmp-', count)
  out(`seeded ${fmt(count)} SAS devices in ${fmt((Date.now() - t0) / 1000, 1)} s (not measured)`)
}

function freshDataDir(): string {
  const dir = mkdtempSync(join(work, 'gw-'))
  for (const f of readdirSync(templateDir)) if (f.startsWith('registry.db')) copyFileSync(join(templateDir, f), join(dir, f))
  return dir
}

const iotHubTopic = (deviceId: string): string => `devices/${deviceId}/messages/events/`

function gatewayTarget(env: Record<string, string> = {}): Target {
  let dataDir = ''
  return {
    name: 'streamgate',
    async start() {
      dataDir = freshDataDir()
      const server = await startGateway(dataDir, { ...GATEWAY_ENV, ...env }, [], [], values['gateway-main'])
      await waitReady(server, 60_000)
      return {
        ...server,
        stop: async () => {
          await server.stop()
          rmSync(dataDir, { recursive: true, force: true })
        },
      }
    },
    connections(count) {
      const creds = sasCredentials(seeded)
      return Array.from({ length: count }, (_, i) => ({ ...creds(i), topic: iotHubTopic(seeded[i]!.deviceId) }))
    },
  }
}

/** Same client ids and topics as the gateway's devices, no credentials (nothing checks them). */
const anonymous = (count: number): LoadgenConnection[] =>
  Array.from({ length: count }, (_, i) => {
    const clientId = seeded[i]?.deviceId ?? `cmp-${String(i + 1).padStart(6, '0')}`
    return { clientId, topic: iotHubTopic(clientId) }
  })

const bareTarget: Target = { name: 'bare Aedes', start: startBareAedes, connections: anonymous }

function mosquittoTarget(binary: string): Target {
  return {
    name: 'Mosquitto',
    async start() {
      const port = await freePort()
      const conf = join(work, `mosquitto-${port}.conf`)
      writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nlog_dest none\n`)
      // One process, its open-file limit raised to the hard limit (it does not raise it itself).
      const child = spawn('sh', ['-c', `ulimit -n "$(ulimit -Hn)"; exec "${binary}" -c "${conf}"`], { stdio: ['ignore', 'ignore', 'inherit'] })
      for (let i = 0; ; i++) {
        if (await canConnect(port)) break
        if (child.exitCode !== null || i > 100) throw new Error('mosquitto did not start')
        await new Promise((r) => setTimeout(r, 50))
      }
      return {
        child,
        mqttUrl: `mqtt://127.0.0.1:${port}`,
        httpUrl: null,
        memStatsFile: '',
        stop: async () => {
          if (child.exitCode === null) {
            const exited = new Promise((r) => child.once('exit', r))
            child.kill('SIGTERM')
            await exited
          }
          rmSync(conf, { force: true })
        },
      }
    },
    connections: anonymous,
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/** The server's own process (mosquitto runs under `sh -c ... exec`, so the pid is its own). */
const serverPid = (server: Server): number => server.child.pid!

// ---- scenarios ----------------------------------------------------------------------------

function sample(target: Target, figure: string, value: number, unit: string, r: LoadgenResult, detail?: Record<string, number>): Sample {
  if (r.refused + r.failed > 0) throw new Error(`${target.name} ${figure}: ${r.refused} refused, ${r.failed} failed connections`)
  return { target: target.name, figure, value, unit, cpuShare: r.cpuShare, clientBound: r.clientBound, ...(detail ? { detail } : {}) }
}

async function withServer<T>(target: Target, use: (server: Server) => Promise<T>): Promise<T> {
  const server = await target.start()
  try {
    return await use(server)
  } finally {
    await server.stop()
  }
}

async function ingest(target: Target): Promise<Sample[]> {
  return withServer(target, async (server) => {
    const file = writeConnections(join(work, `ingest-${target.name.replace(/\W/g, '')}.tsv`), target.connections(CONNS))
    const r = await runLoadgen({ port: mqttPort(server), connections: file, mode: 'saturate', window: WINDOW, payloadBytes: PAYLOAD, seconds: SECONDS, warmupSeconds: WARMUP })
    // The gateway's figure counts only if nothing was lost: every message sent was acknowledged and is in the stream once.
    const stored = server.httpUrl ? await storedTelemetry(server.httpUrl) : null
    if (stored !== null && !(r.sent === r.acked && r.acked === stored)) {
      throw new Error(`${target.name} ingest: sent ${r.sent}, acked ${r.acked}, stored ${stored} (they must be equal)`)
    }
    return [sample(target, 'ingest', r.rate, 'PUBACKs/s', r, stored === null ? undefined : { sent: r.sent, acked: r.acked, stored })]
  })
}

/** Records in the gateway's telemetry topic (GET /api/streams), embedded or Kafka. */
async function storedTelemetry(httpUrl: string): Promise<number> {
  const res = await fetch(`${httpUrl}/api/streams`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } })
  if (!res.ok) throw new Error(`GET /api/streams answered ${res.status}`)
  const { topics } = (await res.json()) as { topics: Array<{ topic: string; records: number }> }
  const telemetry = topics.find((t) => t.topic === 'telemetry' || t.topic.endsWith('.telemetry') || t.topic.endsWith('telemetry'))
  if (!telemetry) throw new Error(`the gateway lists no telemetry topic (${topics.map((t) => t.topic).join(', ')})`)
  return telemetry.records
}

async function latency(target: Target): Promise<Sample[]> {
  return withServer(target, async (server) => {
    const file = writeConnections(join(work, `latency-${target.name.replace(/\W/g, '')}.tsv`), target.connections(CONNS))
    const r = await runLoadgen({ port: mqttPort(server), connections: file, mode: 'rate', rate: RATE, window: WINDOW, payloadBytes: PAYLOAD, seconds: SECONDS, warmupSeconds: WARMUP })
    if (r.rate < RATE * 0.95) throw new Error(`${target.name} latency: offered ${RATE}/s, acknowledged ${fmt(r.rate)}/s (behind: the figure would be meaningless)`)
    return [sample(target, 'PUBACK p50', r.p50Ms, 'ms', r), sample(target, 'PUBACK p99', r.p99Ms, 'ms', r)]
  })
}

async function connectStorm(target: Target): Promise<Sample[]> {
  return withServer(target, async (server) => {
    const file = writeConnections(join(work, `connect-${target.name.replace(/\W/g, '')}.tsv`), target.connections(DEVICES))
    await new Promise((r) => setTimeout(r, 1000))
    const before = rssBytes(serverPid(server))
    // One loopback source address per connection: see LoadgenOptions.sourceNet (without it the generator was client-bound).
    const held = await holdConnections({ port: mqttPort(server), connections: file, concurrency: CONCURRENCY, sourceNet: 7 })
    await new Promise((r) => setTimeout(r, 2000))
    const after = rssBytes(serverPid(server))
    const r = await held.release()
    const perConn = (after - before) / Math.max(held.held, 1)
    return [
      sample(target, 'connects/s', r.rate, 'connects/s', r, { held: held.held }),
      {
        // Read with every connection idle: the generator's CPU during the storm does not enter it.
        ...sample(target, 'RSS per held connection', perConn / 1024, 'KiB', r, { rssBeforeMiB: before / 2 ** 20, rssHeldMiB: after / 2 ** 20 }),
        clientBound: false,
      },
    ]
  })
}

// ---- report -------------------------------------------------------------------------------

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

function report(samples: Sample[], targets: string[]): void {
  const figures = [...new Set(samples.map((s) => s.figure))]
  out()
  out(`| figure | ${targets.join(' | ')} | streamgate / bare Aedes | generator CPU (max) |`)
  out(`|---|${targets.map(() => '---|').join('')}---|---|`)
  for (const figure of figures) {
    const of = (t: string): Sample[] => samples.filter((s) => s.figure === figure && s.target === t)
    const unit = samples.find((s) => s.figure === figure)!.unit
    const digits = unit === 'ms' || unit === 'KiB' ? 2 : 0
    const cells = targets.map((t) => {
      const xs = of(t).map((s) => s.value)
      if (xs.length === 0) return '–'
      const bound = of(t).some((s) => s.clientBound) ? ' (client-bound)' : ''
      return `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})${bound}`
    })
    const gw = of('streamgate')
    const bare = of('bare Aedes')
    const anyBound = [...gw, ...bare].some((s) => s.clientBound)
    const ratio = gw.length && bare.length && !anyBound ? fmt(median(gw.map((s) => s.value)) / median(bare.map((s) => s.value)), 2) : anyBound ? 'not quoted (client-bound)' : '–'
    const cpu = Math.max(...samples.filter((s) => s.figure === figure).map((s) => s.cpuShare))
    out(`| ${figure} (${unit}) | ${cells.join(' | ')} | ${ratio} | ${fmt(cpu * 100)} % of a core |`)
  }
}

function goals(samples: Sample[]): void {
  const ratio = (figure: string): number | null => {
    const gw = samples.filter((s) => s.figure === figure && s.target === 'streamgate')
    const bare = samples.filter((s) => s.figure === figure && s.target === 'bare Aedes')
    if (!gw.length || !bare.length || [...gw, ...bare].some((s) => s.clientBound)) return null
    return median(gw.map((s) => s.value)) / median(bare.map((s) => s.value))
  }
  const kafka = (): number | null => {
    const gw = samples.filter((s) => s.figure === 'Kafka ingest' && s.target === 'streamgate')
    const alone = samples.filter((s) => s.figure === 'Kafka ingest' && s.target === 'kafkajs alone')
    if (!gw.length || !alone.length || gw.some((s) => s.clientBound)) return null
    return median(gw.map((s) => s.value)) / median(alone.map((s) => s.value))
  }
  const rows: Array<[string, number | null, (r: number) => boolean, string]> = [
    ['G1 ingest at saturation, streamgate / bare', ratio('ingest'), (r) => r >= 0.8, '>= 0.80'],
    ['G2 Kafka ingest, streamgate / kafkajs alone', kafka(), (r) => r >= 0.8, '>= 0.80'],
    ['G3 connect storm, streamgate / bare', ratio('connects/s'), (r) => r >= 0.8, '>= 0.80'],
    ['G4 PUBACK p99 at 5,000 msg/s, streamgate / bare', ratio('PUBACK p99'), (r) => r <= 2, '<= 2.00'],
    ['G5 RSS per connection, streamgate / bare', ratio('RSS per held connection'), (r) => r <= 0.6, '<= 0.60'],
  ]
  out()
  out('| goal | ratio | target | met |')
  out('|---|---|---|---|')
  for (const [name, r, ok, want] of rows) out(`| ${name} | ${r === null ? 'not measured' : fmt(r, 2)} | ${want} | ${r === null ? '–' : ok(r) ? 'yes' : 'no'} |`)
}

// ---- run ----------------------------------------------------------------------------------

const targets: Target[] = [gatewayTarget(), bareTarget]
const mosquitto = values['no-mosquitto'] ? null : hasCommand('mosquitto') ? 'mosquitto' : existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : null
if (mosquitto) targets.push(mosquittoTarget(mosquitto))

out(`bench/compare: ${REPS} repetitions, targets alternating (${targets.map((t) => t.name).join(', ')}); ${CONNS} connections x ${WINDOW} QoS 1 in flight, ${PAYLOAD}-byte payloads, ${SECONDS} s measured after ${WARMUP} s warm-up; latency at ${fmt(RATE)} msg/s; connect storm of ${fmt(DEVICES)}`)
out(`node ${process.version}; a run is client-bound when the load generator used more than half a core`)
const samples: Sample[] = []
try {
  await seedTemplate()
  const scenarios: Array<[string, (t: Target) => Promise<Sample[]>]> = [
    ['ingest', ingest],
    ['latency', latency],
    ['connect', connectStorm],
  ]
  for (let rep = 0; rep < REPS; rep++) {
    // Alternate who goes first, so that no target always runs on a warmer (or hotter) machine.
    const order = rep % 2 === 0 ? targets : [...targets].reverse()
    for (const [name, run] of scenarios) {
      if (!ONLY.has(name)) continue
      for (const target of order) {
        const got = await run(target)
        samples.push(...got)
        out(`  rep ${rep + 1} ${name.padEnd(7)} ${target.name.padEnd(11)} ${got.map((s) => `${s.figure} ${fmt(s.value, s.unit === 'ms' || s.unit === 'KiB' ? 2 : 0)} ${s.unit}${s.detail?.stored !== undefined ? ` (sent = acked = stored ${fmt(s.detail.stored)})` : ''}`).join(', ')}; generator ${fmt(got[0]!.cpuShare * 100)} % of a core${got[0]!.clientBound ? ' CLIENT-BOUND' : ''}`)
      }
    }
  }
  // G2 needs a broker: --brokers / KAFKA_BROKERS, or a local one (Java 17+ and Maven).
  const kafkaSkipped = ONLY.has('kafka') && !values.brokers ? localKafkaMissing() : null
  if (kafkaSkipped) {
    out(`  kafka: SKIPPED (${kafkaSkipped})`)
    ONLY.delete('kafka')
  }
  if (ONLY.has('kafka')) samples.push(...(await kafkaRuns()))
  report(
    samples,
    targets.map((t) => t.name),
  )
  if (ONLY.has('kafka')) reportKafka(samples)
  goals(samples)
  if (values.json) writeFileSync(values.json, JSON.stringify({ options: values, samples }, null, 2))
} finally {
  rmSync(work, { recursive: true, force: true })
}

/** G2: the gateway on Kafka at saturation, then kafkajs alone with as many records outstanding, alternating. */
async function kafkaRuns(): Promise<Sample[]> {
  const kafka = await benchKafka(values.brokers)
  const partitions = Number(values.partitions)
  const got: Sample[] = []
  try {
    for (let rep = 0; rep < REPS; rep++) {
      const prefix = `cmp-${Date.now().toString(36)}.`
      const gateway = gatewayTarget({ STREAMGATE_STREAM_BACKEND: 'kafka', STREAMGATE_KAFKA_BROKERS: kafka.brokers.join(','), STREAMGATE_TOPIC_PREFIX: prefix, STREAMGATE_PARTITIONS: String(partitions) })
      const runGateway = async (): Promise<void> => {
        const [s] = await ingest(gateway)
        got.push({ ...s!, figure: 'Kafka ingest' })
        out(`  rep ${rep + 1} kafka   streamgate  ${fmt(s!.value)} PUBACKs/s; sent = acked = stored ${fmt(s!.detail?.stored ?? NaN)}; generator ${fmt(s!.cpuShare * 100)} % of a core${s!.clientBound ? ' CLIENT-BOUND' : ''}`)
      }
      const runAlone = async (): Promise<void> => {
        const r = await producerAlone({ brokers: kafka.brokers, topic: `${prefix}producer-alone`, partitions, devices: CONNS, window: WINDOW, payload: Buffer.alloc(PAYLOAD, 'x'), seconds: SECONDS, warmupSeconds: WARMUP, deviceId: (i) => seeded[i]!.deviceId })
        got.push({ target: 'kafkajs alone', figure: 'Kafka ingest', value: r.rate, unit: 'records/s', cpuShare: 0, clientBound: false, detail: { batchSize: r.batchSize, p99Ms: r.p99Ms } })
        out(`  rep ${rep + 1} kafka   kafkajs alone ${fmt(r.rate)} records/s (batches of ${r.batchSize})`)
      }
      if (rep % 2 === 0) {
        await runGateway()
        await runAlone()
      } else {
        await runAlone()
        await runGateway()
      }
    }
  } finally {
    await kafka.release()
  }
  return got
}

function reportKafka(samples: Sample[]): void {
  const of = (t: string): number[] => samples.filter((s) => s.figure === 'Kafka ingest' && s.target === t).map((s) => s.value)
  out()
  out(`Kafka (${values.brokers ? 'given brokers' : 'local single broker'}): streamgate ${fmt(median(of('streamgate')))} PUBACKs/s, kafkajs alone ${fmt(median(of('kafkajs alone')))} records/s (medians of ${REPS})`)
}
