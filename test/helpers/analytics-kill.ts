import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, sasFor, waitFor } from './gateway.js'
import { api, sleep } from './commands.js'
import { CLI, type ChildGateway } from './child-gateway.js'
import { publishJson } from './routing.js'
import type { EventStream, StoredRecord } from '../../src/stream/types.js'
import type { Device } from '../../src/registry/types.js'

/**
 * Aggregates and alerts through SIGKILLs of the gateway process, on either stream backend: window
 * state and pending outputs are checkpointed in the registry (analytics/processor-runner.ts), so
 * every window is emitted exactly once with exactly the records the telemetry topic holds, and an
 * alert's `for` wait and its open state survive a restart without being repeated or lost.
 */
export const KILL_ARGS = ['--set', 'analytics.pollMs=20', '--set', 'analytics.emitIntervalMs=0', '--set', 'analytics.checkpointIntervalMs=100', '--set', 'analytics.retryDelayMs=100']
const TOKEN = 'child-admin-token-0123456789'
const WINDOW_MS = 500
const STEP_MS = 25
const PER_DEVICE = 400
const trace = (what: string): void => {
  if (process.env.KILL_TRACE) console.log(`${new Date().toISOString()} ${what}`)
}

export interface KillContext {
  dataDir: string
  /** Device ids are prefixed with this (a Kafka broker may be shared). */
  prefix: string
  /** A gateway process on the data dir, on this backend, with KILL_ARGS. */
  start(): Promise<ChildGateway>
  /** Every record of a topic (name without the stream prefix), read with no gateway running. */
  readTopic(topic: string): Promise<StoredRecord[]>
}

/** Runs the scenario; returns the last gateway (stopped) for the caller's cleanup. */
export class KillScenarios {
  gateway: ChildGateway | null = null
  private readonly clients: MqttClient[] = []

  constructor(private readonly ctx: KillContext) {}

  async close(): Promise<void> {
    for (const c of this.clients) await c.endAsync(true).catch(() => undefined)
    await this.gateway?.kill()
  }

  private call(method: string, path: string, body?: unknown) {
    return api(`http://127.0.0.1:${this.gateway!.httpPort}`, method, path, body, { token: TOKEN })
  }

  private async connect(d: Device): Promise<MqttClient> {
    const c = await connectDevice(`mqtt://127.0.0.1:${this.gateway!.mqttPort}`, d.deviceId, sasFor(d), { reconnectPeriod: 0 })
    c.on('error', () => undefined)
    this.clients.push(c)
    return c
  }

  async windowsExactlyOnce(): Promise<void> {
    const { ctx } = this
    const call = this.call.bind(this)
    const connect = this.connect.bind(this)
    let gateway = (this.gateway = await ctx.start())

    const put = await call('PUT', '/api/aggregates/kill-sum', {
      window: { sizeMs: WINDOW_MS },
      timestampBy: '$body.ts',
      functions: [{ fn: 'sum', path: '$body.v' }, { fn: 'count', path: '$body.v' }],
      output: 'kill-out',
    })
    expect(put.status).toBe(201)
    const devices: Device[] = []
    for (const id of ['k-a', 'k-b', 'k-c'].map((d) => ctx.prefix + d)) devices.push((await call('POST', '/api/devices', { deviceId: id })).body as Device)
    const T = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS - 600_000
    // The next value each device sends: a publish that got its PUBACK is in the stream; one that
    // did not is sent again after the restart (and may then be in the stream twice: at least once).
    const next = new Map(devices.map((d) => [d.deviceId, 0]))
    let acked = 0
    const send = async (): Promise<void> => {
      await Promise.all(
        devices.map(async (d) => {
          const client = await connect(d)
          // mqtt.js keeps a QoS 1 publish pending across a lost connection (to resend it): the close ends the wait.
          const closed = new Promise<never>((_, reject) => client.once('close', () => reject(new Error('connection closed'))))
          closed.catch(() => undefined)
          try {
            for (let i = next.get(d.deviceId)!; i < PER_DEVICE; i++) {
              await Promise.race([publishJson(client, d.deviceId, { ts: T + i * STEP_MS, v: i }), closed])
              next.set(d.deviceId, i + 1)
              acked++
            }
          } catch {
            // The gateway died under the publisher.
          }
        }),
      )
    }
    for (const killAt of [250, 550, 850]) {
      const sending = send()
      await waitFor(() => acked >= killAt, 60_000, `${killAt} acknowledged publishes`)
      await gateway.kill('SIGKILL')
      await sending
      trace(`killed at ${acked} acknowledged`)
      gateway = this.gateway = await ctx.start()
      trace('restarted')
    }
    await send()
    trace(`sent all: ${acked}`)
    // One record far ahead closes every window of each device.
    for (const d of devices) {
      const client = await connect(d)
      await publishJson(client, d.deviceId, { ts: T + PER_DEVICE * STEP_MS + 10 * WINDOW_MS, v: 0 })
    }
    const windowsPerDevice = (PER_DEVICE * STEP_MS) / WINDOW_MS
    await waitFor(async () => {
      const agg = (await call('GET', '/api/aggregates/kill-sum')).body as { status: { lag: number } | null }
      return agg.status?.lag === 0
    }, 30_000, 'the aggregate caught up')
    trace('caught up')
    await sleep(500)
    await gateway.kill('SIGTERM')
    this.gateway = null
    trace('stopped')

    const records = await ctx.readTopic('telemetry')
    const expected = new Map<string, { sum: number; count: number }>()
    for (const r of records) {
      const body = JSON.parse(r.value.toString()) as { ts: number; v: number }
      const start = Math.floor(body.ts / WINDOW_MS) * WINDOW_MS
      if (start >= T + PER_DEVICE * STEP_MS) continue
      const key = `${r.key}@${start}`
      const e = expected.get(key) ?? { sum: 0, count: 0 }
      e.sum += body.v
      e.count++
      expected.set(key, e)
    }
    expect(records.length).toBeGreaterThanOrEqual(devices.length * PER_DEVICE)
    const outputs = (await ctx.readTopic('kill-out')).map((r) => JSON.parse(r.value.toString()) as { windowStart: string; group: { deviceId: string }; sum_v: number; count_v: number })
    const got = new Map<string, { sum: number; count: number }>()
    const seen: string[] = []
    for (const o of outputs) {
      // The closing record's own window closes too (by the wall clock); it is not part of the count.
      if (Date.parse(o.windowStart) >= T + PER_DEVICE * STEP_MS) continue
      const key = `${o.group.deviceId}@${Date.parse(o.windowStart)}`
      seen.push(key)
      got.set(key, { sum: o.sum_v, count: o.count_v })
    }
    const resent = records.length - devices.length * (PER_DEVICE + 1)
    console.log(`aggregates through 3 SIGKILLs: ${records.length} telemetry records (${resent} sent twice after a lost PUBACK), ${outputs.length} windows written, ${seen.length - new Set(seen).size} twice`)
    expect(seen.length - new Set(seen).size).toBe(0)
    expect(expected.size).toBe(devices.length * windowsPerDevice)
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(expected))
  }

  async alertAcrossRestarts(): Promise<void> {
    const { ctx } = this
    const call = this.call.bind(this)
    const connect = this.connect.bind(this)
    let gateway = (this.gateway = await ctx.start())

    expect((await call('PUT', '/api/alert-rules/overheat', { condition: '$body.temp > 80', forMs: 5000, value: '$body.temp', severity: 'critical' })).status).toBe(201)
    const d = (await call('POST', '/api/devices', { deviceId: `${ctx.prefix}k-hot` })).body as Device
    const hot = async (ms: number, temp: number): Promise<void> => {
      const client = await connect(d)
      for (const end = Date.now() + ms; Date.now() < end; ) {
        await publishJson(client, d.deviceId, { temp })
        await sleep(200)
      }
      await client.endAsync()
    }
    const firstViolation = Date.now()
    await hot(3000, 90)
    await gateway.kill('SIGKILL')
    gateway = this.gateway = await ctx.start()
    // At least a few messages after the restart (a Kafka gateway takes seconds to start).
    await hot(Math.max(1500, firstViolation + 6500 - Date.now()), 91)
    const open = await waitFor(async () => {
      const list = (await call('GET', '/api/alerts')).body as { alerts: Array<{ rule: string; deviceId: string; since: string; raisedAt: string; value: unknown }> }
      return list.alerts.find((a) => a.rule === 'overheat')
    }, 15_000, 'the open alert')
    // The wait counted from the first violating message, before the kill.
    expect(Date.parse(open.raisedAt) - Date.parse(open.since)).toBeGreaterThanOrEqual(5000)
    expect(Date.parse(open.since) - firstViolation).toBeLessThan(1000)
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'alerts', 'list', '--data-dir', ctx.dataDir, '--admin-token', TOKEN])
    expect(stdout).toMatch(new RegExp(`overheat\\s+${ctx.prefix}k-hot\\s+critical`))

    await gateway.kill('SIGKILL')
    gateway = this.gateway = await ctx.start()
    await hot(600, 95)
    await hot(400, 20)
    await waitFor(async () => ((await call('GET', '/api/alerts')).body as { alerts: unknown[] }).alerts.length === 0, 15_000, 'the alert cleared')
    await gateway.kill('SIGKILL')
    gateway = this.gateway = await ctx.start()
    await hot(400, 20)
    await sleep(500)
    await gateway.kill('SIGTERM')
    this.gateway = null
    const alerts = (await ctx.readTopic('alerts')).map((r) => JSON.parse(r.value.toString()) as { type: string; rule: string; value: unknown })
    expect(alerts.filter((a) => a.rule === 'overheat').map((a) => a.type)).toEqual(['alert-raised', 'alert-cleared'])
    expect(alerts.find((a) => a.type === 'alert-cleared')?.value).toBe(20)
  }
}

/** Every record of a topic on a started stream, all partitions. */
export async function readWhole(stream: EventStream, topic: string): Promise<StoredRecord[]> {
  const out: StoredRecord[] = []
  for (const p of await stream.offsets(topic)) {
    for (let offset = p.low; offset < p.high; ) {
      const batch = await stream.read(topic, p.partition, offset, 5000)
      if (batch.length === 0) break
      out.push(...batch)
      offset = batch[batch.length - 1]!.offset + 1
    }
  }
  return out
}
