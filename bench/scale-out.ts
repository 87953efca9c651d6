import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { openStateStores } from '../src/app/backends.js'
import { loadConfig } from '../src/config/load.js'
import { benchKafka } from './lib/local-kafka.js'
import { benchPostgres } from './lib/local-postgres.js'
import { cpuSecondsByName, cpuSecondsOf, startFleetProcess, type FleetProcess } from './lib/device-fleet.js'
import { CLIENT_BOUND_CORES } from './lib/loadgen.js'
import { BENCH_ADMIN_TOKEN, mqttPort, rssBytes, sasCredentials, startGateway, type SeededDevice, type Server } from './lib/sim-bench.js'

/**
 * Several instances acting as one, at fleet scale (docs/scale-out.md, "Sizing"): N gateway
 * processes on one PostgreSQL (state) and one Kafka (streams); a fleet of answering devices held
 * by the C load generator, spread over the instances, each device on its own loopback address;
 * then cloud-to-device messages and direct methods to random devices through random instances;
 * then one instance SIGKILLed and the time until its devices are connected again elsewhere.
 *
 *   npm run bench:scale-out -- --instances 7 --devices 100000
 *   npm run bench:scale-out -- --instances 5 --devices 78000
 *
 * One process holds at most 20,000 open files here, so an instance holds at most that minus its
 * reserves (19,744 with the defaults): the fleet must fit on the instances, and to come back after
 * the kill, on one instance fewer. The benchmark checks both before it starts.
 * Flags: --kafka host:port and --postgres URL use servers you run (else local ones are started).
 */
const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '7' },
    devices: { type: 'string', default: '100000' },
    c2d: { type: 'string', default: '1000' },
    methods: { type: 'string', default: '1000' },
    'per-fleet-process': { type: 'string', default: '17000' },
    concurrency: { type: 'string', default: '400' },
    'api-concurrency': { type: 'string', default: '32' },
    kafka: { type: 'string', default: process.env.KAFKA_BROKERS ?? '' },
    postgres: { type: 'string', default: process.env.POSTGRES_URL ?? '' },
    partitions: { type: 'string', default: '8' },
  },
})
const INSTANCES = Number(values.instances)
const DEVICES = Number(values.devices)
const C2D = Number(values.c2d)
const METHODS = Number(values.methods)
const PER_PROCESS = Number(values['per-fleet-process'])
const API_CONCURRENCY = Number(values['api-concurrency'])
const FD_LIMIT = 20_000
const PER_INSTANCE = FD_LIMIT - 128 - 128 // limits.fdReserve and http.maxConnections, their defaults

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)]!
const log = (line: string): void => console.log(line)

function percentiles(samples: number[]): { p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b)
  const at = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN }
}

/** Runs `task` over `items` with at most `limit` at once. */
async function pool<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await task(items[next++]!)
  }))
}

async function api(server: Server, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${server.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null }
}

async function seed(postgresUrl: string, schema: string, count: number): Promise<SeededDevice[]> {
  const config = loadConfig({ env: {}, overrides: { 'state.backend': 'postgres', 'state.postgres.url': postgresUrl, 'state.postgres.schema': schema, 'state.postgres.poolSize': '16', 'log.level': 'silent' } })
  const stores = openStateStores(config, 'tool', 'streamgate-bench-seed')
  const registry = stores.registry()
  await registry.start()
  const devices: SeededDevice[] = new Array(count)
  const ids = Array.from({ length: count }, (_, i) => i)
  await pool(ids, 32, async (i) => {
    const deviceId = `so${String(i + 1).padStart(6, '0')}`
    devices[i] = { deviceId, key: (await registry.create({ deviceId })).primaryKey }
  })
  await registry.stop()
  await stores.end()
  return devices
}

interface PgSnapshot {
  commits: number
  rowsWritten: number
  rowsRead: number
  cpuSeconds: number
  at: number
}

async function pgSnapshot(client: pg.Client): Promise<PgSnapshot> {
  const { rows } = await client.query<{ c: string; w: string; r: string }>(
    `select xact_commit::text as c, (tup_inserted + tup_updated + tup_deleted)::text as w, tup_fetched::text as r
       from pg_stat_database where datname = current_database()`,
  )
  return { commits: Number(rows[0]!.c), rowsWritten: Number(rows[0]!.w), rowsRead: Number(rows[0]!.r), cpuSeconds: cpuSecondsByName('postgres'), at: Date.now() }
}

function pgLoad(a: PgSnapshot, b: PgSnapshot): string {
  const s = (b.at - a.at) / 1000
  return `${fmt((b.commits - a.commits) / s)} commits/s, ${fmt((b.rowsWritten - a.rowsWritten) / s)} rows written/s, ${fmt((b.rowsRead - a.rowsRead) / s)} rows read/s, server CPU ${fmt((b.cpuSeconds - a.cpuSeconds) / s, 2)} cores`
}

async function main(): Promise<void> {
  if (DEVICES > INSTANCES * PER_INSTANCE) {
    throw new Error(`${fmt(DEVICES)} devices do not fit on ${INSTANCES} instances here: each holds at most ${fmt(PER_INSTANCE)} connections (open-file limit ${fmt(FD_LIMIT)} minus its reserves); use --instances ${Math.ceil(DEVICES / PER_INSTANCE)} or more`)
  }
  const survivable = DEVICES <= (INSTANCES - 1) * PER_INSTANCE
  log(`# bench/scale-out: ${INSTANCES} instances, ${fmt(DEVICES)} devices, ${fmt(C2D)} C2D messages, ${fmt(METHODS)} methods`)
  if (!survivable) log(`note: ${INSTANCES - 1} instances hold at most ${fmt((INSTANCES - 1) * PER_INSTANCE)}: after the kill not every device can come back`)

  const postgres = await benchPostgres(values.postgres, 100 + INSTANCES * 20)
  const kafka = await benchKafka(values.kafka)
  const work = mkdtempSync(join(tmpdir(), 'streamgate-bench-scale-'))
  const schema = `bench_scale_${Date.now().toString(36)}`
  const prefix = `bench-scale-${Date.now().toString(36)}-`
  const servers: Server[] = []
  const fleets: FleetProcess[] = []
  const admin = new pg.Client({ connectionString: postgres.url })
  try {
    log(`PostgreSQL: ${postgres.source}; Kafka: ${kafka.source}`)
    await admin.connect()
    let t = Date.now()
    const devices = await seed(postgres.url, schema, DEVICES)
    log(`seeded ${fmt(DEVICES)} devices through the registry in ${fmt((Date.now() - t) / 1000, 1)} s`)

    t = Date.now()
    for (let i = 0; i < INSTANCES; i++) {
      const dataDir = join(work, `i${i}`)
      servers.push(await startGateway(dataDir, {
        STREAMGATE_STATE_BACKEND: 'postgres',
        STREAMGATE_POSTGRES_URL: postgres.url,
        STREAMGATE_STREAM_BACKEND: 'kafka',
        STREAMGATE_KAFKA_BROKERS: kafka.brokers.join(','),
      }, ['--set', `state.postgres.schema=${schema}`, '--set', `stream.topicPrefix=${prefix}`, '--set', `stream.partitions=${values.partitions}`, '--set', `cluster.instanceId=i${i}`]))
    }
    for (const s of servers) {
      const deadline = Date.now() + 120_000
      while ((await fetch(`${s.httpUrl}/readyz`).catch(() => null))?.status !== 200) {
        if (Date.now() > deadline) throw new Error(`instance ${s.httpUrl} not ready`)
        await sleep(200)
      }
    }
    const rssIdle = servers.map((s) => rssBytes(s.child.pid!))
    log(`${INSTANCES} instances ready in ${fmt((Date.now() - t) / 1000, 1)} s, RSS idle ${rssIdle.map((b) => fmt(b / 2 ** 20)).join(' / ')} MiB`)

    // The fleet: device i starts on instance (i % INSTANCES); each generator process its slice.
    const creds = sasCredentials(devices)
    const ports = servers.map(mqttPort)
    const pg0 = await pgSnapshot(admin)
    const fleetCpu0: number[] = []
    const t0 = Date.now()
    for (let from = 0, k = 0; from < DEVICES; from += PER_PROCESS, k++) {
      const slice = Array.from({ length: Math.min(PER_PROCESS, DEVICES - from) }, (_, j) => ({ ...creds(from + j), topic: `devices/${devices[from + j]!.deviceId}/messages/events/` }))
      const fleet = startFleetProcess({ connections: slice, ports, portOffset: from % INSTANCES, sourceNet: 40 + k, concurrency: Number(values.concurrency), connectTimeoutSeconds: 1800, file: join(work, `fleet-${k}.tsv`) })
      fleets.push(fleet)
      fleetCpu0.push(cpuSecondsOf(fleet.child.pid!))
    }
    const progress = setInterval(() => {
      const up = fleets.reduce((n, f) => n + f.status().ready, 0)
      process.stderr.write(`  ${fmt(up)} of ${fmt(DEVICES)} connected after ${fmt((Date.now() - t0) / 1000)} s\n`)
    }, 10_000)
    const held = (await Promise.all(fleets.map((f) => f.held))).reduce((a, b) => a + b, 0)
    clearInterval(progress)
    const connectSeconds = (Date.now() - t0) / 1000
    const pg1 = await pgSnapshot(admin)
    const fleetCpu = fleets.reduce((n, f, i) => n + cpuSecondsOf(f.child.pid!) - fleetCpu0[i]!, 0)
    const connectShare = fleetCpu / connectSeconds
    log('')
    log(`## Connect: ${fmt(held)} of ${fmt(DEVICES)} devices subscribed in ${fmt(connectSeconds, 1)} s = ${fmt(held / connectSeconds)} connects/s (CONNECT with SAS, CONNACK, SUBSCRIBE twice, SUBACK)`)
    log(`generator: ${fleets.length} processes, ${fmt(connectShare, 2)} cores${connectShare > CLIENT_BOUND_CORES ? ' — CLIENT-BOUND' : ''}`)
    log(`PostgreSQL during the storm: ${pgLoad(pg0, pg1)}`)
    await sleep(3000) // heartbeats carry the connection counts
    const listed = (await api(servers[0]!, 'GET', '/api/instances')).body as { instances: Array<{ instanceId: string; connections: number; alive?: boolean }> }
    const connsOf = new Map(listed.instances.map((i) => [i.instanceId, i.connections]))
    log('')
    log('| instance | connections | RSS idle | RSS held | per connection |')
    log('| --- | --- | --- | --- | --- |')
    servers.forEach((s, i) => {
      const conns = connsOf.get(`i${i}`) ?? 0
      const rss = rssBytes(s.child.pid!)
      log(`| i${i} | ${fmt(conns)} | ${fmt(rssIdle[i]! / 2 ** 20)} MiB | ${fmt(rss / 2 ** 20)} MiB | ${conns ? fmt((rss - rssIdle[i]!) / conns / 1024, 1) : '-'} KB |`)
    })

    // Commands to random devices through random instances.
    const deviceIds = devices.map((d) => d.deviceId)
    const received = new Map<string, number>()
    const methodSeen = new Map<string, number>()
    let c2dTotal = 0
    for (const f of fleets) f.onEvent((kind, id, at) => {
      if (kind === 'c2d') {
        c2dTotal++
        if (!received.has(id)) received.set(id, at)
      } else methodSeen.set(id, at)
    })
    const shuffled = [...deviceIds].sort(() => Math.random() - 0.5)
    const c2dTargets = shuffled.slice(0, C2D)
    const methodTargets = shuffled.slice(C2D, C2D + METHODS)
    const sentAt = new Map<string, number>()
    const refusedSends: string[] = []
    const pg2 = await pgSnapshot(admin)
    let tc = Date.now()
    await pool(c2dTargets, API_CONCURRENCY, async (id) => {
      const at = Date.now()
      const res = await api(pick(servers), 'POST', `/api/devices/${id}/messages`, { payload: { n: id }, ttlSeconds: 600 })
      if (res.status === 202) sentAt.set(id, at)
      else refusedSends.push(`${id}: ${res.status} ${JSON.stringify(res.body)}`)
    })
    const sendSeconds = (Date.now() - tc) / 1000
    const deadline = Date.now() + 120_000
    while (received.size < sentAt.size && Date.now() < deadline) await sleep(50)
    const c2dLatency = percentiles([...sentAt].filter(([id]) => received.has(id)).map(([id, at]) => received.get(id)! - at))
    // Completed: the device's PUBACK took the message off its queue.
    let stillQueued = 0
    await sleep(1000)
    await pool(c2dTargets, API_CONCURRENCY, async (id) => {
      const res = await api(pick(servers), 'GET', `/api/devices/${id}/messages`)
      if (((res.body as { messages?: unknown[] }).messages ?? []).length > 0) stillQueued++
    })
    log('')
    log(`## C2D: ${fmt(sentAt.size)} of ${fmt(C2D)} accepted (202) through random instances in ${fmt(sendSeconds, 1)} s, ${fmt(received.size)} received by their device (${fmt(c2dTotal)} deliveries), ${stillQueued} still queued afterwards`)
    log(`API accepted → device received: p50 ${fmt(c2dLatency.p50, 1)} ms, p99 ${fmt(c2dLatency.p99, 1)} ms, max ${fmt(c2dLatency.max, 1)} ms`)
    for (const r of refusedSends.slice(0, 5)) log(`  refused: ${r}`)

    tc = Date.now()
    const methodMs: number[] = []
    const methodFailures: string[] = []
    await pool(methodTargets, API_CONCURRENCY, async (id) => {
      const at = Date.now()
      const res = await api(pick(servers), 'POST', `/api/devices/${id}/methods/ping`, { payload: { at }, responseTimeoutSeconds: 30 })
      const body = res.body as { status?: number; payload?: { ok?: boolean } }
      if (res.status === 200 && body.status === 200 && body.payload?.ok === true) methodMs.push(Date.now() - at)
      else methodFailures.push(`${id}: ${res.status} ${JSON.stringify(res.body)}`)
    })
    const methodSeconds = (Date.now() - tc) / 1000
    const pg3 = await pgSnapshot(admin)
    const m = percentiles(methodMs)
    log(`## Methods: ${fmt(methodMs.length)} of ${fmt(METHODS)} answered through random instances in ${fmt(methodSeconds, 1)} s, ${methodFailures.length} failed`)
    log(`API call → answer: p50 ${fmt(m.p50, 1)} ms, p99 ${fmt(m.p99, 1)} ms, max ${fmt(m.max, 1)} ms`)
    for (const f of methodFailures.slice(0, 5)) log(`  failed: ${f}`)
    log(`PostgreSQL during the commands: ${pgLoad(pg2, pg3)}`)

    // Kill one instance; its devices reconnect to the next instance in their list.
    const victim = INSTANCES - 1
    const victimConns = connsOf.get(`i${victim}`) ?? 0
    const target = survivable ? DEVICES : Math.min(DEVICES, (INSTANCES - 1) * PER_INSTANCE)
    const pg4 = await pgSnapshot(admin)
    const killedAt = Date.now()
    servers[victim]!.child.kill('SIGKILL')
    let lowest = DEVICES
    let backAt = 0
    const killDeadline = killedAt + 300_000
    while (Date.now() < killDeadline) {
      await sleep(100)
      const up = fleets.reduce((n, f) => n + f.status().ready, 0)
      lowest = Math.min(lowest, up)
      if (lowest < DEVICES && up >= target) {
        backAt = Date.now()
        break
      }
    }
    const pg5 = await pgSnapshot(admin)
    log('')
    if (backAt) log(`## Kill: instance i${victim} (${fmt(victimConns)} devices) SIGKILLed; ${fmt(DEVICES - lowest)} devices were down at most; all ${fmt(target)} connected again after ${fmt((backAt - killedAt) / 1000, 1)} s (reconnect after 0.5-2.5 s, to the next instance)`)
    else log(`## Kill: instance i${victim} SIGKILLed; devices did not all come back within 300 s (lowest ${fmt(lowest)}, now ${fmt(fleets.reduce((n, f) => n + f.status().ready, 0))})`)
    log(`PostgreSQL during the recovery: ${pgLoad(pg4, pg5)}`)

    // Methods to devices that were on the dead instance, through the survivors.
    const moved = deviceIds.filter((_, i) => i % INSTANCES === victim).sort(() => Math.random() - 0.5).slice(0, 200)
    const survivors = servers.slice(0, victim)
    let movedOk = 0
    const movedMs: number[] = []
    await pool(moved, API_CONCURRENCY, async (id) => {
      const at = Date.now()
      const res = await api(pick(survivors), 'POST', `/api/devices/${id}/methods/ping`, { responseTimeoutSeconds: 30, connectTimeoutSeconds: 10 })
      if (res.status !== 200 || (res.body as { status?: number }).status !== 200) return
      movedOk++
      movedMs.push(Date.now() - at)
    })
    const mm = percentiles(movedMs)
    log(`methods to ${moved.length} devices of the dead instance, after: ${movedOk} answered (p50 ${fmt(mm.p50, 1)} ms, p99 ${fmt(mm.p99, 1)} ms)`)
    const cpuTotal = fleets.reduce((n, f, i) => n + cpuSecondsOf(f.child.pid!) - fleetCpu0[i]!, 0)
    log(`generator over the whole run: ${fmt(cpuTotal, 1)} CPU s in ${fmt((Date.now() - t0) / 1000, 1)} s = ${fmt(cpuTotal / ((Date.now() - t0) / 1000), 2)} cores`)
  } finally {
    for (const f of fleets) await f.release().catch(() => undefined)
    for (const s of servers) await s.stop().catch(() => undefined)
    await admin.end().catch(() => undefined)
    await kafka.release().catch((err: unknown) => console.error('kafka release', err))
    await postgres.release().catch((err: unknown) => console.error('postgres release', err))
    rmSync(work, { recursive: true, force: true })
  }
}

await main()
