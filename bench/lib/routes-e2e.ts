import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { telemetryTopic } from '../../device-sim/drivers/mqtt-topics.js'
import { buildTelemetryRecord } from '../../src/ingest/envelope.js'
import { RecordMessage } from '../../src/routing/message.js'
import { compileQuery } from '../../src/routing/query/index.js'
import type { StoredRecord } from '../../src/stream/types.js'
import { profileArgs } from './closed-loop.js'
import { CLIENT_BOUND_CORES, runLoadgen, writeConnections, type LoadgenResult } from './loadgen.js'
import { connectionProperties, connectionTags, E2E_ENDPOINTS, E2E_ROUTES } from './routes-fixtures.js'
import { cpuSecondsOf, defineRouting, endpointListing, machineBusySeconds, scrapeRouting, startWebhookServer, tagDevices, type RoutingScrape, type WebhookServer } from './routes-probe.js'
import { mqttPort, sasCredentials, seedDevices, startGateway, waitReady, type SeededDevice, type Server } from './sim-bench.js'

/**
 * bench/routes, part 2: the built gateway as a child process (embedded stream), saturated QoS 1
 * ingest from the C load generator, once with ten routes over three endpoints (two stream
 * topics, one webhook served by this process) and once with none. Every second /metrics is read:
 * telemetry records written, messages each endpoint delivered, each endpoint's lag. An endpoint
 * keeps up when it handles records (ingest minus lag growth) as fast as they arrive.
 */

export interface E2eOptions {
  seconds: number
  warmupSeconds: number
  conns: number
  window: number
  payload: number
  /** Write a V8 CPU profile of the routed gateway into this directory. */
  profileDir?: string
  /** The webhook endpoint's maxBatch (records read per POST and commit); its default when absent. */
  webhookMaxBatch?: number
  log: (line: string) => void
}

export interface EndpointFigures {
  name: string
  /** Records handled (evaluated, delivered when matched, committed) per second over the window. */
  processedPerSecond: number
  deliveredPerSecond: number
  /** processed / ingest over the window. */
  ratio: number
  maxLag: number
  lagAtLoadEnd: number
  /** Of the records written, the share delivered (after the drain) and the share the routes select. */
  deliveredShare: number
  expectedShare: number
  health: string
  failedAttempts: number
  deadLettered: number
}

export interface E2eRun {
  routes: number
  /** The load generator's PUBACKs per second over its measured window. */
  ingestPerSecond: number
  /** Telemetry records written per second over the sampled window (the gateway's counter). */
  recordsPerSecond: number
  windowSeconds: number
  loadgen: LoadgenResult
  /** The gateway process (all its threads), in cores, over the sampled window. */
  gatewayCores: number
  /** This process (webhook server, sampling), in cores, over the window: load side like the generator. */
  benchCores: number
  loadSideCores: number
  /** Every other process on the machine, in cores: the gateway had those taken from it. */
  otherCores: number
  clientBound: boolean
  /** Records the endpoints appended to their stream topics per record ingested (after the drain). */
  streamWritesPerRecord: number
  endpoints: EndpointFigures[]
  /** Seconds from the end of the load until every endpoint's lag was 0; null without routes, or when it was not 0 within DRAIN_LIMIT_S. */
  drainSeconds: number | null
  webhook: { posts: number; bytes: number }
}

const DRAIN_LIMIT_S = 120
const lagOf = (s: RoutingScrape, endpoint: string): number => s.lag[endpoint] ?? 0

/** Per endpoint, the share of the load's records its routes select (the generator spreads its load evenly). */
function expectedShares(conns: number): Record<string, number> {
  const queries = E2E_ROUTES.map((r) => ({ endpoint: r.endpoint, query: compileQuery(r.condition) }))
  const hits: Record<string, number> = {}
  for (let i = 0; i < conns; i++) {
    const deviceId = `rt-${String(i + 1).padStart(6, '0')}`
    const out = buildTelemetryRecord({ deviceId, payload: Buffer.from('t=0;'), properties: { system: {}, app: Object.entries(connectionProperties(i)) }, enqueuedAt: 0, retain: false })
    const record: StoredRecord = { topic: 'telemetry', partition: 0, offset: 0, key: out.key, value: out.value, headers: out.headers ?? {}, timestamp: 0 }
    const message = new RecordMessage(record, 'telemetry', { tags: connectionTags(i), properties: { desired: {}, reported: {} } })
    for (const endpoint of E2E_ENDPOINTS) if (queries.some((q) => q.endpoint === endpoint && q.query.evaluate(message) === true)) hits[endpoint] = (hits[endpoint] ?? 0) + 1
  }
  return Object.fromEntries(E2E_ENDPOINTS.map((e) => [e, (hits[e] ?? 0) / conns]))
}

interface Sampled extends RoutingScrape {
  gatewayCpu: number
  benchCpu: number
  machineCpu: number
}

/** Scrape every second while `load` runs; each sample also carries both processes' CPU seconds. */
async function sampleDuring<T>(httpUrl: string, pid: number, origin: number, load: Promise<T>, onSample: (s: Sampled) => void): Promise<{ result: T; samples: Sampled[]; loadEnd: number }> {
  const samples: Sampled[] = []
  let done = false
  const finished = load.finally(() => (done = true))
  while (!done) {
    const bench = process.cpuUsage()
    const s: Sampled = { ...(await scrapeRouting(httpUrl, origin)), gatewayCpu: cpuSecondsOf(pid), benchCpu: (bench.user + bench.system) / 1e6, machineCpu: machineBusySeconds() }
    if (!done) {
      samples.push(s)
      onSample(s)
    }
    await Promise.race([sleep(1000 - ((performance.now() - origin) % 1000)), finished.catch(() => undefined)])
  }
  const result = await finished
  return { result, samples, loadEnd: (performance.now() - origin) / 1000 }
}

/** Poll every 200 ms after the load until every endpoint's lag is 0. */
async function drain(httpUrl: string, origin: number, loadEnd: number, samples: RoutingScrape[]): Promise<number | null> {
  while ((performance.now() - origin) / 1000 - loadEnd < DRAIN_LIMIT_S) {
    const s = await scrapeRouting(httpUrl, origin)
    samples.push(s)
    if (E2E_ENDPOINTS.every((e) => lagOf(s, e) === 0)) return s.at - loadEnd
    await sleep(200)
  }
  return null
}

function fmt(v: number): string {
  return Math.round(v).toLocaleString('en-US')
}

function progressLine(prev: Sampled | undefined, s: Sampled, routed: boolean): string {
  if (!prev) return `    t=${s.at.toFixed(1).padStart(4)} s  records ${fmt(s.telemetry)}`
  const dt = s.at - prev.at
  const parts = [`    t=${s.at.toFixed(1).padStart(4)} s  ingest ${fmt((s.telemetry - prev.telemetry) / dt).padStart(7)}/s`]
  if (routed) for (const e of E2E_ENDPOINTS) parts.push(`${e} +${fmt(((s.delivered[e] ?? 0) - (prev.delivered[e] ?? 0)) / dt)}/s lag ${fmt(lagOf(s, e))}`)
  parts.push(`gateway ${fmt(((s.gatewayCpu - prev.gatewayCpu) / dt) * 100)} % cpu, machine ${fmt(((s.machineCpu - prev.machineCpu) / dt) * 100)} %`)
  return parts.join('; ')
}

/** The sampled window: from the end of the generator's warm-up to the last sample before it stopped. */
function measuredWindow(samples: Sampled[], warmupSeconds: number): [Sampled, Sampled] {
  const inside = samples.filter((s) => s.at >= warmupSeconds + 0.5)
  if (inside.length < 2) throw new Error(`only ${inside.length} samples after the warm-up: run longer (--seconds)`)
  return [inside[0]!, inside[inside.length - 1]!]
}

function endpointFigures(window: [Sampled, Sampled], all: RoutingScrape[], loadEndSample: RoutingScrape, listing: Array<Record<string, unknown>>, expected: Record<string, number>): EndpointFigures[] {
  const [a, b] = window
  const dt = b.at - a.at
  const ingest = (b.telemetry - a.telemetry) / dt
  const last = all[all.length - 1]!
  return E2E_ENDPOINTS.map((name) => {
    const processed = ingest - (lagOf(b, name) - lagOf(a, name)) / dt
    const listed = listing.find((e) => e.name === name) ?? {}
    return {
      name,
      processedPerSecond: processed,
      deliveredPerSecond: ((b.delivered[name] ?? 0) - (a.delivered[name] ?? 0)) / dt,
      ratio: processed / ingest,
      maxLag: Math.max(...all.map((s) => lagOf(s, name))),
      lagAtLoadEnd: lagOf(loadEndSample, name),
      deliveredShare: (last.delivered[name] ?? 0) / Math.max(last.telemetry, 1),
      expectedShare: expected[name] ?? 0,
      health: String(listed.health ?? 'unknown'),
      failedAttempts: Number(listed.failedAttempts ?? 0),
      deadLettered: Number(listed.deadLettered ?? 0),
    }
  })
}

interface Loaded {
  loadgen: LoadgenResult
  samples: Sampled[]
  /** Samples and the drain's scrapes after them. */
  all: RoutingScrape[]
  loadEnd: number
  drainSeconds: number | null
}

/** The load from every seeded device (its property bag in the topic), sampled each second, then the drain. */
async function loadAndSample(o: E2eOptions, gateway: Server, devices: SeededDevice[], dataDir: string, routed: boolean): Promise<Loaded> {
  const creds = sasCredentials(devices)
  const file = writeConnections(join(dataDir, 'connections.tsv'), devices.map((d, i) => ({ ...creds(i), topic: telemetryTopic(d.deviceId, connectionProperties(i)) })))
  const origin = performance.now()
  const load = runLoadgen({ port: mqttPort(gateway), connections: file, mode: 'saturate', window: o.window, payloadBytes: o.payload, seconds: o.seconds, warmupSeconds: o.warmupSeconds })
  let prev: Sampled | undefined
  const { result: loadgen, samples, loadEnd } = await sampleDuring(gateway.httpUrl!, gateway.child.pid!, origin, load, (s) => {
    o.log(progressLine(prev, s, routed))
    prev = s
  })
  const all: RoutingScrape[] = [...samples]
  const drainSeconds = routed ? await drain(gateway.httpUrl!, origin, loadEnd, all) : null
  return { loadgen, samples, all, loadEnd, drainSeconds }
}

function runFigures(o: E2eOptions, run: Loaded, listing: Array<Record<string, unknown>> | null, webhook: WebhookServer | null): E2eRun {
  const { loadgen, all } = run
  const window = measuredWindow(run.samples, o.warmupSeconds)
  const [a, b] = window
  const dt = b.at - a.at
  const benchCores = (b.benchCpu - a.benchCpu) / dt
  const loadSideCores = loadgen.cpuShare + benchCores
  const gatewayCores = (b.gatewayCpu - a.gatewayCpu) / dt
  const last = all[all.length - 1]!
  const loadEndSample = all.find((s) => s.at >= run.loadEnd) ?? last
  const streamWrites = (last.delivered['routed-a'] ?? 0) + (last.delivered['routed-b'] ?? 0)
  return {
    routes: listing ? E2E_ROUTES.length : 0,
    ingestPerSecond: loadgen.rate,
    recordsPerSecond: (b.telemetry - a.telemetry) / dt,
    windowSeconds: dt,
    loadgen,
    gatewayCores,
    benchCores,
    loadSideCores,
    otherCores: Math.max(0, (b.machineCpu - a.machineCpu) / dt - gatewayCores - loadSideCores),
    // compare.ts' rule (generator above half a core), with this process counted on the load side too.
    clientBound: loadSideCores > CLIENT_BOUND_CORES,
    streamWritesPerRecord: streamWrites / Math.max(last.telemetry, 1),
    endpoints: listing ? endpointFigures(window, all, loadEndSample, listing, expectedShares(o.conns)) : [],
    drainSeconds: run.drainSeconds,
    webhook: { posts: webhook?.posts ?? 0, bytes: webhook?.bytes ?? 0 },
  }
}

/** One run: a fresh data dir and gateway, the routing when `routed`, the load, the drain. */
export async function runE2e(o: E2eOptions, routed: boolean): Promise<E2eRun> {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-routes-e2e-'))
  let gateway: Server | null = null
  let webhook: WebhookServer | null = null
  try {
    const devices = await seedDevices(dataDir, 'rt-', o.conns)
    if (routed) await tagDevices(dataDir, devices)
    gateway = await startGateway(dataDir, {}, [], routed ? profileArgs(o.profileDir) : [])
    await waitReady(gateway)
    if (routed) {
      webhook = await startWebhookServer()
      await defineRouting(gateway.httpUrl!, webhook.url, o.webhookMaxBatch)
    }
    const run = await loadAndSample(o, gateway, devices, dataDir, routed)
    return runFigures(o, run, routed ? await endpointListing(gateway.httpUrl!) : null, webhook)
  } finally {
    await gateway?.stop()
    await webhook?.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}
