import { expect } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, readAll, sasFor, waitFor, type TestGateway } from './gateway.js'
import { api } from './commands.js'
import { publishJson } from './routing.js'
import type { StoredRecord } from '../../src/stream/types.js'

/** Analytics settings that make a test quick: short polls, no emit batching, fast reloads. */
export const FAST_ANALYTICS = {
  'analytics.pollMs': '20',
  'analytics.emitIntervalMs': '0',
  'analytics.checkpointIntervalMs': '200',
  'analytics.reloadIntervalMs': '200',
  'analytics.retryDelayMs': '200',
}

export interface WindowRecord {
  windowStart: string
  windowEnd: string
  group: Record<string, unknown>
  count: number
  skipped: number
  [field: string]: unknown
}

export async function put(baseUrl: string, path: string, body: unknown, token?: string): Promise<unknown> {
  const res = await api(baseUrl, 'PUT', path, body, token === undefined ? {} : { token })
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300)
  return res.body
}

export async function device(gw: TestGateway, id: string, clients: MqttClient[]): Promise<MqttClient> {
  const d = await gw.gateway.registry.create({ deviceId: id })
  const client = await connectDevice(gw.mqttUrl, id, sasFor(d))
  clients.push(client)
  return client
}

/** Output records of one aggregate, parsed, in (device, windowStart) order. */
export function windows(records: StoredRecord[], aggregate: string): WindowRecord[] {
  return records
    .filter((r) => r.headers.aggregate === aggregate)
    .map((r) => JSON.parse(r.value.toString()) as WindowRecord)
    .sort((a, b) => String(a.group.deviceId).localeCompare(String(b.group.deviceId)) || a.windowStart.localeCompare(b.windowStart))
}

export async function waitForWindows(gw: TestGateway, topic: string, aggregate: string, n: number, timeoutMs = 20_000): Promise<WindowRecord[]> {
  return waitFor(async () => {
    const got = windows(await readAll(gw.gateway, topic).catch(() => []), aggregate)
    return got.length >= n && got
  }, timeoutMs, `${n} windows of ${aggregate}`)
}

const iso = (t: number): string => new Date(t).toISOString()

/**
 * Exact counts and averages per device per window for a known input (event time from the body,
 * so the windows do not depend on when the messages arrive), and a device whose clock runs an
 * hour late that does not delay another's windows. Runs on either stream backend.
 */
export async function exactWindowsScenario(gw: TestGateway, prefix: string, clients: MqttClient[], outputTopic: string): Promise<void> {
  const name = `${prefix}temp`
  await put(gw.httpUrl, `/api/aggregates/${name}`, {
    source: 'telemetry',
    window: { type: 'tumbling', sizeMs: 1000 },
    timestampBy: '$body.ts',
    functions: (['count', 'sum', 'avg', 'min', 'max', 'first', 'last'] as const).map((fn) => ({ fn, path: '$body.temp' })),
    output: outputTopic.slice(gw.config.stream.topicPrefix.length),
  })
  const fastId = `${prefix}fast`
  const slowId = `${prefix}slow`
  const fast = await device(gw, fastId, clients)
  const slow = await device(gw, slowId, clients)
  const T = Math.floor(Date.now() / 1000) * 1000 - 30_000
  const S = T - 3_600_000

  // The late device opens a window first and keeps it open while the other's windows close.
  await publishJson(slow, slowId, { ts: S + 100, temp: 1 })
  const input: Array<[number, unknown]> = [
    [T + 100, 10],
    [T + 500, 20],
    [T + 900, 'hot'],
    [T + 1200, 5],
    [T + 1700, 7],
    [T + 2100, 1],
  ]
  for (const [ts, temp] of input) await publishJson(fast, fastId, { ts, temp })
  // Late for a window that closed: dropped and counted.
  await publishJson(fast, fastId, { ts: T + 300, temp: 1000 })
  const fastWindows = await waitForWindows(gw, outputTopic, name, 2)
  const all = (start: number, count: number, skipped: number, nums: number[]): WindowRecord => ({
    windowStart: iso(start),
    windowEnd: iso(start + 1000),
    group: { deviceId: fastId },
    count,
    skipped,
    count_temp: nums.length,
    sum_temp: nums.reduce((a, b) => a + b, 0),
    avg_temp: nums.reduce((a, b) => a + b, 0) / nums.length,
    min_temp: Math.min(...nums),
    max_temp: Math.max(...nums),
    first_temp: nums[0],
    last_temp: nums[nums.length - 1],
  })
  expect(fastWindows).toEqual([all(T, 3, 1, [10, 20]), all(T + 1000, 2, 0, [5, 7])])
  // The slow device's window is still open: its clock, not the other's, closes it.
  expect(windows(await readAll(gw.gateway, outputTopic), name).filter((w) => w.group.deviceId === slowId)).toEqual([])
  await publishJson(slow, slowId, { ts: S + 600, temp: 3 })
  await publishJson(slow, slowId, { ts: S + 1000, temp: 100 })
  const slowWindows = await waitFor(async () => {
    const got = windows(await readAll(gw.gateway, outputTopic), name).filter((w) => w.group.deviceId === slowId)
    return got.length >= 1 && got
  }, 20_000, 'the slow device window')
  expect(slowWindows[0]).toMatchObject({ windowStart: iso(S), count: 2, avg_temp: 2, min_temp: 1, max_temp: 3 })

  const status = (await api(gw.httpUrl, 'GET', `/api/aggregates/${name}`)).body as { status: { counts: Record<string, number> } }
  expect(status.status.counts).toMatchObject({ late: 1, skipped: 1 })
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  expect(metrics).toMatch(new RegExp(`streamgate_aggregate_records_total\\{aggregate="${name}",outcome="late"\\} 1`))
  expect(metrics).toMatch(new RegExp(`streamgate_aggregate_emit_delay_seconds_count\\{aggregate="${name}"\\} [1-9]`))
  // Nothing emitted twice.
  const ids = (await readAll(gw.gateway, outputTopic)).filter((r) => r.headers.aggregate === name).map((r) => r.headers['output-id'])
  expect(new Set(ids).size).toBe(ids.length)
}
