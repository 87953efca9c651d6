import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { expect } from 'vitest'
import { connect as mqttConnect, type connectAsync, type IClientOptions } from 'mqtt'
import { generateSasToken } from '../../src/auth/sas.js'
import { rssBytes, storedMessageIds } from '../../bench/lib/sim-bench.js'
import { ensureBuilt, startChildGateway, type ChildGateway, type ChildOptions } from './child-gateway.js'
import { deviceOptions } from './gateway.js'

/**
 * What every test in test/hostile/ needs: a real gateway process (`streamgate start`) on free
 * loopback ports, devices added through its API, the process's RSS sampled while an attack runs,
 * and a canary device that keeps connecting and publishing at QoS 1 meanwhile. After the attack
 * the test asserts the same four things for each attack: the process is up, its RSS grew less
 * than a stated bound, the canary got every PUBACK within a second, and everything acknowledged
 * (the canary's and the test's own publishes) is in the stream.
 */

export const ADMIN_TOKEN = 'hostile-admin-token-0123456789'

export interface HostileGateway extends ChildGateway {
  dataDir: string
  httpUrl: string
  mqttUrl: string
  /** Call the admin API; the body is JSON. */
  api(method: string, path: string, body?: unknown): Promise<Response>
  /** Add a SAS device through the API and return a valid token for it. */
  addSasDevice(deviceId: string, ttlSeconds?: number): Promise<{ deviceId: string; token: string; primaryKey: string }>
  /** Add a password device through the API. */
  addPasswordDevice(deviceId: string, password: string): Promise<void>
  /** The MQTT/TLS or secure WebSocket port, as the banner printed it (when enabled). */
  tlsPort(listener: 'mqtts' | 'wss'): number
  /** Resident set size of the gateway process now, in bytes. */
  rss(): number
  /** True while the process runs and /healthz answers 200. */
  alive(): Promise<boolean>
  /** Every `message-id` header in the telemetry topic (read from the stream file, as `streamgate tail` does). */
  storedMessageIds(): Promise<Set<string>>
  stop(): Promise<void>
}

export interface HostileOptions extends ChildOptions {
  /** STREAMGATE_* variables on top of the defaults (free ports, admin token, log level warn). */
  env?: Record<string, string>
  /** Runs on the new data dir before the gateway starts (e.g. `initDevCerts` for TLS). */
  prepare?: (dataDir: string) => Promise<void> | void
  /** Start on this existing data dir (a restart) instead of a new one; `stop()` still removes it. */
  dataDir?: string
}

export async function startHostileGateway(options: HostileOptions = {}): Promise<HostileGateway> {
  ensureBuilt()
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'streamgate-hostile-'))
  const env = { STREAMGATE_ADMIN_TOKEN: ADMIN_TOKEN, ...options.env }
  await options.prepare?.(dataDir)
  const child = await startChildGateway(dataDir, env, options)
  const httpUrl = `http://127.0.0.1:${child.httpPort}`
  const api = (method: string, path: string, body?: unknown): Promise<Response> =>
    fetch(`${httpUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
  return {
    ...child,
    dataDir,
    httpUrl,
    mqttUrl: `mqtt://127.0.0.1:${child.mqttPort}`,
    api,
    addSasDevice: async (deviceId, ttlSeconds = 3600) => {
      const res = await api('POST', '/api/devices', { deviceId })
      if (res.status !== 201) throw new Error(`adding ${deviceId}: ${res.status} ${await res.text()}`)
      const { primaryKey } = (await res.json()) as { primaryKey: string }
      return { deviceId, primaryKey, token: sasToken(deviceId, primaryKey, ttlSeconds) }
    },
    addPasswordDevice: async (deviceId, password) => {
      const res = await api('POST', '/api/devices', { deviceId, authMethod: 'password', password })
      if (res.status !== 201) throw new Error(`adding ${deviceId}: ${res.status} ${await res.text()}`)
    },
    tlsPort: (listener) => {
      const m = (listener === 'mqtts' ? /MQTT over TLS\s+mqtts:\/\/[^:]+:(\d+)/ : /MQTT over secure WS\s+wss:\/\/[^:]+:(\d+)/).exec(child.output())
      if (!m) throw new Error(`the gateway runs no ${listener} listener:\n${child.output()}`)
      return Number(m[1])
    },
    rss: () => rssOf(child.pid),
    alive: async () => {
      if (child.child.exitCode !== null || child.child.signalCode !== null) return false
      const res = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(() => null)
      return res?.status === 200
    },
    storedMessageIds: () => storedMessageIds(dataDir),
    stop: async () => {
      await child.kill('SIGTERM')
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

export function sasToken(deviceId: string, key: string, ttlSeconds = 3600, host = 'localhost'): string {
  return generateSasToken({ host, deviceId, key, expiresAt: Math.floor(Date.now() / 1000) + ttlSeconds })
}

/** VmRSS of a process from /proc (bytes); 0 once it is gone. */
export const rssOf = rssBytes

/** Samples a process's RSS every `everyMs` until stopped; reports the baseline and the peak. */
export class RssSampler {
  readonly baseline: number
  private peakBytes: number
  private readonly timer: NodeJS.Timeout

  constructor(private readonly pid: number, everyMs = 50) {
    this.baseline = rssOf(pid)
    this.peakBytes = this.baseline
    this.timer = setInterval(() => this.sample(), everyMs)
  }

  sample(): void {
    this.peakBytes = Math.max(this.peakBytes, rssOf(this.pid))
  }

  /** Stop sampling; the growth is peak minus baseline, in bytes. */
  stop(): { baseline: number; peak: number; growth: number } {
    clearInterval(this.timer)
    this.sample()
    return { baseline: this.baseline, peak: this.peakBytes, growth: this.peakBytes - this.baseline }
  }
}

export interface CanaryReport {
  rounds: number
  failures: string[]
  maxConnectMs: number
  maxPubackMs: number
  /** Message ids the gateway acknowledged. */
  acked: string[]
}

/**
 * A device that keeps proving the gateway serves real devices during an attack: every round it
 * opens a new connection (clean session 0, like the Azure SDK), publishes one QoS 1 message and
 * waits for its PUBACK, then disconnects.
 */
export class Canary {
  private running = true
  private readonly done: Promise<void>
  private readonly report: CanaryReport = { rounds: 0, failures: [], maxConnectMs: 0, maxPubackMs: 0, acked: [] }
  /** Message ids are unique per canary, so several attacks on one gateway are told apart. */
  private readonly run = randomBytes(4).toString('hex')

  constructor(
    private readonly mqttUrl: string,
    private readonly device: { deviceId: string; token: string },
    private readonly options: { pauseMs?: number; extra?: IClientOptions } = {},
  ) {
    this.done = this.loop()
  }

  private async loop(): Promise<void> {
    const { deviceId, token } = this.device
    while (this.running) {
      const round = this.report.rounds++
      const t0 = performance.now()
      try {
        const client = await connectWithin(this.mqttUrl, deviceOptions(deviceId, token, { connectTimeout: 10_000, ...this.options.extra }), 10_000)
        const t1 = performance.now()
        const mid = `canary-${this.run}-${round}`
        try {
          await client.publishAsync(`devices/${deviceId}/messages/events/%24.mid=${mid}`, `canary ${round}`, { qos: 1 })
          this.report.acked.push(mid)
          this.report.maxConnectMs = Math.max(this.report.maxConnectMs, t1 - t0)
          this.report.maxPubackMs = Math.max(this.report.maxPubackMs, performance.now() - t1)
        } finally {
          await client.endAsync().catch(() => undefined)
        }
      } catch (err) {
        this.report.failures.push(`round ${round}: ${(err as Error).message}`)
      }
      await new Promise((r) => setTimeout(r, this.options.pauseMs ?? 100))
    }
  }

  /** Let the current round finish, then report. */
  async stop(): Promise<CanaryReport> {
    this.running = false
    await this.done
    return this.report
  }
}

/**
 * connectAsync, bounded: mqtt.js with reconnectPeriod 0 never settles when the server closes the
 * socket after a CONNECT without answering it, so the canary would hang instead of failing.
 */
async function connectWithin(url: string, options: IClientOptions, timeoutMs: number): Promise<Awaited<ReturnType<typeof connectAsync>>> {
  let timer: NodeJS.Timeout | undefined
  const client = mqttConnect(url, options)
  try {
    return await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no CONNACK within ${timeoutMs} ms`)), timeoutMs)
      client.once('connect', () => resolve(client))
      client.once('error', reject)
      client.once('close', () => reject(new Error('closed before CONNACK')))
    })
  } catch (err) {
    client.end(true)
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** Run `attack` while a canary runs and RSS is sampled; returns what the four checks need. */
export async function underAttack<T>(
  gw: HostileGateway,
  canaryDevice: { deviceId: string; token: string },
  attack: () => Promise<T>,
  canaryOptions: { pauseMs?: number; extra?: IClientOptions } = {},
): Promise<{ result: T; canary: CanaryReport; rss: { baseline: number; peak: number; growth: number } }> {
  const rss = new RssSampler(gw.pid)
  const canary = new Canary(gw.mqttUrl, canaryDevice, canaryOptions)
  try {
    const result = await attack()
    // At least one full round after the attack, so the gateway is seen serving once it is over.
    await new Promise((r) => setTimeout(r, 300))
    return { result, canary: await canary.stop(), rss: rss.stop() }
  } catch (err) {
    await canary.stop()
    rss.stop()
    throw err
  }
}

export const MiB = 1024 * 1024

/** Every sample of a gateway process's /metrics, keyed as printed: `name` or `name{label="value",...}`. */
export async function metricSamples(gw: { httpUrl: string }): Promise<Map<string, number>> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  return new Map([...text.matchAll(/^([a-z_][^\s#]*) (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])]))
}

/** One sample of /metrics (0 when the counter has not been touched yet). */
export async function metric(gw: { httpUrl: string }, sample: string): Promise<number> {
  return (await metricSamples(gw)).get(sample) ?? 0
}

/** The sum of a metric over all its label values. */
export async function metricTotal(gw: { httpUrl: string }, name: string): Promise<number> {
  let sum = 0
  for (const [key, value] of await metricSamples(gw)) if (key.startsWith(`${name}{`)) sum += value
  return sum
}

export interface Outcome {
  canary: CanaryReport
  rss: { baseline: number; peak: number; growth: number }
}

/**
 * The four checks of every hostile test: the process is up (and /healthz answers), its RSS grew
 * less than `rssGrowthBytes` during the attack, the canary connected in every round and got each
 * PUBACK within `pubackMs` (1 s), and every message id acknowledged (the canary's and `acked`) is
 * in the stream. Prints the figures, for the record.
 */
export async function expectSurvived(gw: HostileGateway, name: string, outcome: Outcome, bounds: { rssGrowthBytes: number; pubackMs?: number }, acked: Iterable<string> = []): Promise<void> {
  const { canary, rss } = outcome
  const mib = (n: number): string => (n / MiB).toFixed(1)
  console.log(
    `[hostile] ${name}: RSS ${mib(rss.baseline)} -> peak ${mib(rss.peak)} MiB (+${mib(rss.growth)}, bound ${mib(bounds.rssGrowthBytes)}); ` +
      `canary ${canary.rounds} rounds, ${canary.failures.length} failed, max connect ${canary.maxConnectMs.toFixed(0)} ms, max PUBACK ${canary.maxPubackMs.toFixed(0)} ms`,
  )
  expect(await gw.alive(), 'gateway process up and /healthz 200').toBe(true)
  expect(canary.failures, 'canary rounds that failed').toEqual([])
  expect(canary.rounds).toBeGreaterThanOrEqual(2)
  expect(canary.maxPubackMs, 'slowest canary PUBACK (ms)').toBeLessThan(bounds.pubackMs ?? 1000)
  expect(rss.growth, 'RSS growth during the attack (bytes)').toBeLessThan(bounds.rssGrowthBytes)
  const stored = await gw.storedMessageIds()
  const missing = [...canary.acked, ...acked].filter((id) => !stored.has(id))
  expect(missing, 'acknowledged but not in the stream').toEqual([])
}
