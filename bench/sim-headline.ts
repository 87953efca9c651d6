import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { parseScenario, type Scenario } from '../device-sim/scenario.js'
import { runSimulation } from '../device-sim/simulate.js'
import type { SimReport } from '../device-sim/report/build.js'
import { benchKafka, localKafkaMissing } from './lib/local-kafka.js'
import { CLIENT_BOUND_CORES } from './lib/loadgen.js'
import { collectMemStats, type MemStats } from './lib/mem-stats.js'
import { gatewayConnections, openSockets, rssBytes, seedRegistry, startBareAedes, startGateway, waitReady, type Server } from './lib/sim-bench.js'

/**
 * bench/sim-headline: the headline figures, measured with the fleet simulator against a gateway
 * child process (embedded stream) and, for ingest, a bare Aedes broker under the same load.
 *   (a) sustained QoS 1 ingest, msgs/s: gateway -> embedded stream, gateway -> Kafka (a local
 *       broker started and removed here, or --kafka-brokers / KAFKA_BROKERS), bare Aedes
 *   (b) PUBACK and end-to-end latency p50/p99/p99.9 at a fixed offered rate
 *   (c) concurrent connections held by one gateway process, and its memory per connection
 *   (d) connect storm rate with SAS authentication
 *
 *   npm run build && node dist/bench/sim-headline.js [--quick] [--only a,b,c,d] [--no-kafka] [--json FILE]
 */
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    only: { type: 'string', default: 'a,b,c,d' },
    'ingest-devices': { type: 'string', default: '200' },
    'ingest-rate': { type: 'string', default: '150' },
    'ingest-seconds': { type: 'string', default: '15' },
    'latency-rate': { type: 'string', default: '5000' },
    'latency-seconds': { type: 'string', default: '15' },
    'ingest-workers': { type: 'string', default: '2' },
    connections: { type: 'string', default: '19500' },
    /** New connections per second while filling the gateway; it accepts a few hundred per second. */
    'connect-ramp': { type: 'string', default: '400' },
    'connect-workers': { type: 'string', default: '4' },
    'storm-devices': { type: 'string', default: '10000' },
    /** Leave the Kafka run out of (a), e.g. where there is no Java. */
    'no-kafka': { type: 'boolean' },
    /** Use these brokers (host:port,...) instead of starting a local one. */
    'kafka-brokers': { type: 'string', default: process.env.KAFKA_BROKERS ?? '' },
    json: { type: 'string' },
  },
})
const quick = values.quick ?? false
const only = new Set(values.only.split(','))
const n = (name: keyof typeof values, quickValue: number): number => (quick ? quickValue : Number(values[name]))
const fmt = (v: number, d = 0): string => v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
const out = (line = ''): void => void process.stdout.write(`${line}\n`)

function scenario(server: Server, extra: Record<string, unknown>): Scenario {
  return parseScenario({ gateway: server.mqttUrl, hubHost: 'localhost', drainS: 3, ...extra }, 'bench')
}

/** Mean acknowledged per second over the steady seconds (ramp-up and the last second dropped). */
function sustained(report: SimReport, duration: number): number {
  const steady = report.timeline.filter((t) => t.second >= 2 && t.second < duration - 1)
  return steady.length === 0 ? 0 : steady.reduce((s, t) => s + t.acked, 0) / steady.length
}

async function withDataDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-simbench-'))
  try {
    return await fn(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const results: Record<string, unknown> = {}

/** Why (a) runs without Kafka, or null when it runs with it; checked before anything is measured. */
const kafkaSkipped: string | null = values['no-kafka'] ? '--no-kafka given' : null
if (!kafkaSkipped && only.has('a') && !values['kafka-brokers'] && localKafkaMissing()) {
  process.stderr.write(`bench/sim-headline: (a) needs Kafka: ${localKafkaMissing()}. Pass --no-kafka to run without it.\n`)
  process.exit(2)
}

/**
 * CPU the simulator used while `run` ran, in cores: this process (its threads) plus simulator
 * worker processes that ended within it (Linux /proc/self/stat: utime, stime, cutime, cstime).
 * Measured before the server under test stops, so the server's own CPU is not in it.
 */
function ownCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')
  return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) / 100
}

async function measuredSim(run: () => Promise<SimReport>): Promise<{ report: SimReport; simCores: number }> {
  const cpu0 = ownCpuSeconds()
  const t0 = performance.now()
  const report = await run()
  return { report, simCores: (ownCpuSeconds() - cpu0) / ((performance.now() - t0) / 1000) }
}

/** The load generator must not be what is measured: above half a core, a run is client-bound. */
const boundNote = (cores: number): string => `; simulator ${fmt(cores * 100)} % of a core${cores > CLIENT_BOUND_CORES ? ' CLIENT-BOUND' : ''}`

interface IngestRun {
  name: string
  simCores: number
  report: SimReport
  /** Mean acked msgs/s over the steady seconds. */
  rate: number
}

/** One gateway run of (a): its own data dir and registry, the simulator reading the stream back. */
async function ingestGateway(name: string, load: Record<string, unknown>, devices: number, stream: (dir: string) => { args: string[]; sim: Record<string, unknown> }): Promise<IngestRun> {
  const { report, simCores } = await withDataDir(async (dir) => {
    const credentials = await seedRegistry(dir, 'ing-', devices)
    const target = stream(dir)
    const server = await startGateway(dir, {}, target.args)
    try {
      // Kafka: ready once the topics exist; the load starts only then.
      await waitReady(server)
      return await measuredSim(() => runSimulation(scenario(server, { ...load, credentials, ...target.sim })))
    } finally {
      await server.stop()
    }
  })
  return { name, report, simCores, rate: sustained(report, Number(load.duration)) }
}

async function ingestBare(load: Record<string, unknown>, devices: number): Promise<IngestRun> {
  const { report, simCores } = await withDataDir(async (dir) => {
    // Bare Aedes authenticates nobody: any key will do; the simulator still signs tokens.
    const credentials = join(dir, 'creds.json')
    writeFileSync(credentials, JSON.stringify(Array.from({ length: devices }, (_, i) => ({ deviceId: `ing-${String(i + 1).padStart(6, '0')}`, key: 'AAAA' }))))
    const server = await startBareAedes()
    try {
      return await measuredSim(() => runSimulation(scenario(server, { ...load, credentials })))
    } finally {
      await server.stop()
    }
  })
  return { name: 'bare Aedes 1.2', report, simCores, rate: sustained(report, Number(load.duration)) }
}

/** The gateway on Kafka: a config file that both the gateway and the simulator's stream reader load. */
async function ingestKafka(load: Record<string, unknown>, devices: number): Promise<IngestRun> {
  const kafka = await benchKafka(values['kafka-brokers'])
  out(`    Kafka: ${kafka.source}`)
  try {
    return await ingestGateway('gateway -> Kafka', load, devices, (dir) => {
      const file = join(dir, 'gateway-kafka.yaml')
      // JSON is YAML; a fresh topic prefix per run keeps earlier runs' records out of the count.
      const config = { dataDir: dir, stream: { backend: 'kafka', topicPrefix: `bench-${Date.now().toString(36)}.`, kafka: { brokers: kafka.brokers } } }
      writeFileSync(file, JSON.stringify(config, null, 2))
      return { args: ['--config', file], sim: { streamConfig: file } }
    })
  } finally {
    await kafka.release()
  }
}

function ingestLine(r: IngestRun, bare: IngestRun): string {
  const c = r.report.counts
  const stream = c.stored === null ? '' : `, acked ${fmt(c.acked)}, stored ${fmt(c.stored)}${c.stored === c.acked ? ' (= acked)' : ''}, duplicated ${fmt(c.duplicated ?? 0)}, lost ${fmt(c.lost)}`
  return `    ${r.name.padEnd(27)} ${fmt(r.rate).padStart(7)} msgs/s${r === bare ? '' : ` (${fmt(r.rate / bare.rate, 2)} x bare)`}${stream}, PUBACK p50 ${fmt(r.report.latencyMs.puback.p50, 2)} ms p99 ${fmt(r.report.latencyMs.puback.p99, 2)} ms${boundNote(r.simCores)}`
}

async function ingest(): Promise<void> {
  const devices = n('ingest-devices', 50)
  const rate = n('ingest-rate', 100)
  const seconds = n('ingest-seconds', 6)
  const workers = n('ingest-workers', 1)
  const load = { duration: seconds, workers, groups: [{ count: devices, rate, qos: 1, payloadSize: 200 }] }
  out(`(a) sustained QoS 1 ingest, ${devices} devices x ${rate} msgs/s offered (${fmt(devices * rate)}/s), 200-byte payloads, ${seconds} s, ${workers} simulator process(es)`)
  const runs = [await ingestGateway('gateway -> embedded stream', load, devices, (dir) => ({ args: [], sim: { dataDir: dir } }))]
  const bare = await ingestBare(load, devices)
  if (!kafkaSkipped) runs.push(await ingestKafka(load, devices))
  for (const r of [...runs, bare]) out(ingestLine(r, bare))
  if (kafkaSkipped) out(`    gateway -> Kafka: SKIPPED (${kafkaSkipped})`)
  const entry = (r: IngestRun): Record<string, unknown> => ({ rate: r.rate, simulatorCores: r.simCores, clientBound: r.simCores > CLIENT_BOUND_CORES, ratioToBare: r.rate / bare.rate, counts: r.report.counts, puback: r.report.latencyMs.puback, e2e: r.report.latencyMs.e2e })
  results.ingest = { offered: devices * rate, seconds, workers, embedded: entry(runs[0]!), kafka: runs[1] ? entry(runs[1]) : { skipped: kafkaSkipped }, bare: entry(bare) }
}

async function latency(): Promise<void> {
  const total = n('latency-rate', 1000)
  const seconds = n('latency-seconds', 6)
  const devices = 100
  const { report, simCores } = await withDataDir(async (dir) => {
    const credentials = await seedRegistry(dir, 'lat-', devices)
    const server = await startGateway(dir)
    try {
      return await measuredSim(() => runSimulation(scenario(server, { duration: seconds, credentials, dataDir: dir, groups: [{ count: devices, rate: total / devices, qos: 1, payloadSize: 200 }] })))
    } finally {
      await server.stop()
    }
  })
  const { puback, e2e } = report.latencyMs
  results.latency = { offered: total, seconds, simulatorCores: simCores, clientBound: simCores > CLIENT_BOUND_CORES, puback, e2e, sent: report.counts.sent, stored: report.counts.stored, lost: report.counts.lost }
  out(`(b) latency at ${fmt(total)} msgs/s (${devices} devices x ${fmt(total / devices)}/s, QoS 1, ${seconds} s): sent ${fmt(report.counts.sent)}, stored ${fmt(report.counts.stored ?? 0)}, lost ${fmt(report.counts.lost)}${boundNote(simCores)}`)
  out(`    PUBACK      p50 ${fmt(puback.p50, 2)} ms  p99 ${fmt(puback.p99, 2)} ms  p99.9 ${fmt(puback.p999, 2)} ms`)
  out(`    end to end  p50 ${fmt(e2e.p50, 2)} ms  p99 ${fmt(e2e.p99, 2)} ms  p99.9 ${fmt(e2e.p999, 2)} ms  (publish -> record readable in the stream)`)
}

interface Held {
  held: number
  baselineRss: number
  heldRss: number
  bytesPerConnection: number
  /** After a full garbage collection in the server, idle and with the connections held. */
  afterGc: { idle: MemStats; held: MemStats; count: number }
  report: SimReport
}

const SOURCE_IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7', '127.0.0.8', '127.0.0.9']

/**
 * Fill a server with `count` idle connections (the simulator's mqtt driver: keepalive 180 s, clean
 * session 0) and measure its RSS: idle before (after a warm-up), and when the most connections
 * were held; the difference over that count is the memory per connection. `connected` is the
 * server's own count, sampled once a second. Once all are held (or 3 s before the end), the
 * server also reports its memory after a full garbage collection, as it did idle.
 */
async function holdConnections(server: Server, count: number, credentials: string, connected: () => Promise<number>): Promise<Held> {
  const workers = n('connect-workers', 2)
  const ramp = n('connect-ramp', 1000)
  // Warm-up: 20 devices connect, publish and leave, so one-time costs (code compiled on first use,
  // mqtt-packet's 65,536 cached message-id buffers, prepared statements) are in the idle figure.
  await runSimulation(scenario(server, { duration: 2, drainS: 1, credentials, groups: [{ count: 20, rate: 2, qos: 1 }] }))
  await new Promise((r) => setTimeout(r, 2000))
  const pid = server.child.pid!
  const idleGc = await collectMemStats(server.child, server.memStatsFile)
  await new Promise((r) => setTimeout(r, 1000))
  const baselineRss = rssBytes(pid)
  let held = 0
  let heldRss = 0
  const heldGc: { taken: Promise<{ stats: MemStats; count: number }> | null } = { taken: null }
  const takeHeldGc = (): void => {
    heldGc.taken ??= connected().then(async (c) => ({ stats: await collectMemStats(server.child, server.memStatsFile), count: c }))
  }
  const sampler = setInterval(() => {
    void connected().then((c) => {
      if (c >= held) {
        held = c
        heldRss = rssBytes(pid)
      }
      // One more second of RSS samples first, then the collection.
      if (c >= count && held >= count && heldRss > 0) setTimeout(takeHeldGc, 1000)
    })
  }, 1000)
  const duration = Math.ceil(count / ramp) + 8
  const fallback = setTimeout(takeHeldGc, (duration - 3) * 1000)
  let report: SimReport
  try {
    report = await runSimulation(scenario(server, { duration, ramp, credentials, workers, sourceIps: SOURCE_IPS, groups: [{ count, rate: 0 }] }))
  } finally {
    clearInterval(sampler)
    clearTimeout(fallback)
  }
  const gc = await (heldGc.taken ?? Promise.reject(new Error('no memory figures with the connections held')))
  return { held, baselineRss, heldRss, bytesPerConnection: (heldRss - baselineRss) / Math.max(1, held), afterGc: { idle: idleGc, held: gc.stats, count: gc.count }, report }
}

function heldLines(name: string, h: Held): string[] {
  const mb = (b: number): string => fmt(b / 2 ** 20, 1)
  const per = (held: number, idle: number): string => fmt((held - idle) / Math.max(1, h.afterGc.count) / 1024, 1)
  const { idle, held } = h.afterGc
  return [
    `    ${name.padEnd(14)} ${fmt(h.held).padStart(6)} held, RSS ${mb(h.baselineRss)} MB idle -> ${mb(h.heldRss)} MB: ${fmt(h.bytesPerConnection / 1024, 1).padStart(5)} KB per connection; connect failures ${fmt(h.report.counts.connectFailures)} ${JSON.stringify(h.report.errors)}`,
    `    ${''.padEnd(14)} after a full GC (${fmt(h.afterGc.count)} held): RSS ${per(held.rss, idle.rss)} KB/conn = V8 heap used ${per(held.heapUsed, idle.heapUsed)} + external ${per(held.external, idle.external)} + the rest ${per(held.rss - held.heapUsed - held.external, idle.rss - idle.heapUsed - idle.external)} (heap reserved ${per(held.heapTotal, idle.heapTotal)})`,
  ]
}

async function connections(): Promise<void> {
  const count = n('connections', 2000)
  await withDataDir(async (dir) => {
    const credentials = await seedRegistry(dir, 'con-', Math.max(count, n('storm-devices', 1000)))
    const server = await startGateway(dir)
    let gw: Held
    try {
      gw = await holdConnections(server, count, credentials, () => gatewayConnections(server.httpUrl!))
      if (only.has('d')) {
        // The storm starts once the gateway has let go of the fleet above (19,500 disconnects).
        await settle(server)
        await storm(server, credentials)
      }
    } finally {
      await server.stop()
    }
    // The same fleet against bare Aedes; it keeps no count we can ask for, so its open sockets count.
    const bare = await startBareAedes()
    let b: Held
    try {
      const idleSockets = openSockets(bare.child.pid!)
      b = await holdConnections(bare, count, credentials, async () => openSockets(bare.child.pid!) - idleSockets)
    } finally {
      await bare.stop()
    }
    const entry = (h: Held): Record<string, unknown> => ({ held: h.held, connectFailures: h.report.counts.connectFailures, errors: h.report.errors, baselineRss: h.baselineRss, heldRss: h.heldRss, bytesPerConnection: h.bytesPerConnection, afterGc: h.afterGc })
    results.connections = { target: count, workers: n('connect-workers', 2), ramp: n('connect-ramp', 1000), gateway: entry(gw), bare: entry(b), ratio: gw.bytesPerConnection / b.bytesPerConnection }
    out(`(c) connections held by one process, ${fmt(count)} asked (${n('connect-workers', 2)} simulator workers, ${SOURCE_IPS.length} source addresses, ramp ${n('connect-ramp', 1000)}/s, keepalive 180 s)`)
    for (const line of [...heldLines('gateway', gw), ...heldLines('bare Aedes 1.2', b)]) out(line)
    out(`    memory per connection gateway/bare: ${fmt(gw.bytesPerConnection / b.bytesPerConnection, 2)}`)
  })
}

/** Long enough for 10,000 devices at a few hundred connects per second: the run ends at this time. */
const STORM_SECONDS = quick ? 15 : 40

/** Until the gateway counts no connections (at most 60 s), then 3 s more. */
async function settle(server: Server): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline && (await gatewayConnections(server.httpUrl!)) > 0) await new Promise((r) => setTimeout(r, 500))
  await new Promise((r) => setTimeout(r, 3000))
}

async function storm(server: Server, credentials: string): Promise<void> {
  const devices = n('storm-devices', 1000)
  const report = await runSimulation(scenario(server, { duration: STORM_SECONDS, ramp: 0, credentials, workers: 2, prefix: 'con-', groups: [{ count: devices, rate: 0 }] }))
  results.storm = { devices, connectPhase: report.connectPhase, connect: report.latencyMs.connect, failures: report.counts.connectFailures, errors: report.errors }
  out(`(d) connect storm: ${fmt(devices)} devices at once (SAS, 2 workers, <= 500 in flight each): ${fmt(report.connectPhase.devices)} connected in ${fmt(report.connectPhase.seconds, 2)} s = ${fmt(report.connectPhase.perSecond)} connects/s`)
  out(`    connect time p50 ${fmt(report.latencyMs.connect.p50, 1)} ms  p99 ${fmt(report.latencyMs.connect.p99, 1)} ms; failures ${fmt(report.counts.connectFailures)}`)
  // The same storm against bare Aedes shows what the simulator itself can drive.
  const bare = await startBareAedes()
  try {
    const b = await runSimulation(scenario(bare, { duration: STORM_SECONDS, ramp: 0, credentials, workers: 2, groups: [{ count: devices, rate: 0 }] }))
    results.stormBare = { connectPhase: b.connectPhase, connect: b.latencyMs.connect }
    out(`    same storm against bare Aedes (no auth): ${fmt(b.connectPhase.seconds, 2)} s = ${fmt(b.connectPhase.perSecond)} connects/s, p50 ${fmt(b.latencyMs.connect.p50, 1)} ms`)
  } finally {
    await bare.stop()
  }
}

out(`bench/sim-headline${quick ? ' (quick)' : ''}: ${new Date().toISOString()}`)
if (only.has('a')) await ingest()
if (only.has('b')) await latency()
if (only.has('c')) await connections()
else if (only.has('d')) {
  await withDataDir(async (dir) => {
    const credentials = await seedRegistry(dir, 'con-', n('storm-devices', 1000))
    const server = await startGateway(dir)
    try {
      await storm(server, credentials)
    } finally {
      await server.stop()
    }
  })
}
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2))
