import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { connectionTags, E2E_ENDPOINTS, E2E_ROUTES } from './routes-fixtures.js'
import { BENCH_ADMIN_TOKEN, type SeededDevice } from './sim-bench.js'

/**
 * What bench/routes' end-to-end part needs around the gateway child: its routing defined through
 * the HTTP API, a webhook endpoint served by this process, the gateway's counters read from
 * /metrics, and a process's CPU time from /proc.
 */

export interface RoutingScrape {
  /** Seconds since the run's origin (performance.now() based). */
  at: number
  /** streamgate_telemetry_records_total, every QoS: the telemetry topic's growth. */
  telemetry: number
  delivered: Record<string, number>
  /** streamgate_endpoint_lag summed over the endpoint's source topics. */
  lag: Record<string, number>
}

const auth = { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` }

/** One metric line: name, optional labels, value (Prometheus text format 0.0.4). */
const LINE = /^([a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN)$/

function label(labels: string | undefined, name: string): string {
  return new RegExp(`(?:^|,)${name}="([^"]*)"`).exec(labels ?? '')?.[1] ?? ''
}

export async function scrapeRouting(httpUrl: string, origin: number): Promise<RoutingScrape> {
  const text = await (await fetch(`${httpUrl}/metrics`, { headers: auth })).text()
  const at = (performance.now() - origin) / 1000
  const scrape: RoutingScrape = { at, telemetry: 0, delivered: {}, lag: {} }
  for (const line of text.split('\n')) {
    const m = LINE.exec(line)
    if (!m) continue
    const [, name, labels, raw] = m
    const value = Number(raw)
    if (name === 'streamgate_telemetry_records_total') scrape.telemetry += value
    else if (name === 'streamgate_endpoint_delivered_total') scrape.delivered[label(labels, 'endpoint')] = value
    else if (name === 'streamgate_endpoint_lag') {
      const endpoint = label(labels, 'endpoint')
      scrape.lag[endpoint] = (scrape.lag[endpoint] ?? 0) + value
    }
  }
  return scrape
}

/** User plus system CPU seconds of a process and its threads (Linux /proc/<pid>/stat, USER_HZ 100). */
export function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** CPU seconds the whole machine spent busy (Linux /proc/stat: every state but idle and iowait). */
export function machineBusySeconds(): number {
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  return ticks.reduce((n, t, i) => (i === 3 || i === 4 ? n : n + t), 0) / 100
}

export interface WebhookServer {
  url: string
  posts: number
  bytes: number
  close(): Promise<void>
}

/** A webhook endpoint that reads each POST to its end and answers 200 (its CPU is the load side's). */
export async function startWebhookServer(): Promise<WebhookServer> {
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => (hook.bytes += chunk.length))
    req.on('end', () => {
      hook.posts++
      res.writeHead(200, { 'content-length': '0' }).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const hook: WebhookServer = {
    url: `http://127.0.0.1:${port}/hook`,
    posts: 0,
    bytes: 0,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  return hook
}

async function put(httpUrl: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(`${httpUrl}/api${path}`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (res.status !== 200 && res.status !== 201) throw new Error(`PUT ${path}: ${res.status} ${await res.text()}`)
}

/** Endpoints routed-a, routed-b (stream topics) and hook (webhook: its defaults but for maxBatch when given), then the ten routes. */
export async function defineRouting(httpUrl: string, webhookUrl: string, webhookMaxBatch?: number): Promise<void> {
  const hook = { type: 'webhook', url: webhookUrl, ...(webhookMaxBatch === undefined ? {} : { maxBatch: webhookMaxBatch }) }
  for (const name of E2E_ENDPOINTS) await put(httpUrl, `/endpoints/${name}`, name === 'hook' ? hook : { type: 'stream', topic: name })
  for (const route of E2E_ROUTES) await put(httpUrl, `/routes/${route.name}`, { source: 'telemetry', condition: route.condition, endpoints: [route.endpoint] })
}

/** The endpoints as GET /api/endpoints shows them once the run is over. */
export async function endpointListing(httpUrl: string): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(`${httpUrl}/api/endpoints`, { headers: auth })
  return ((await res.json()) as { endpoints: Array<Record<string, unknown>> }).endpoints
}

/** Twin tags of the seeded devices ($twin.tags.x), written into the registry before the gateway starts. */
export async function tagDevices(dataDir: string, devices: readonly SeededDevice[]): Promise<void> {
  const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
  await registry.start()
  try {
    for (let i = 0; i < devices.length; i++) await registry.patchTwin(devices[i]!.deviceId, 'tags', connectionTags(i), { maxBytes: 32 * 1024, maxDepth: 10 })
  } finally {
    await registry.stop()
  }
}
