import { buildTelemetryRecord } from '../../src/ingest/envelope.js'
import type { TwinDocument } from '../../src/routing/twin-cache.js'
import type { OutgoingRecord } from '../../src/stream/types.js'

/**
 * What bench/routes routes: telemetry as a fleet of sensors sends it (property bag, JSON body),
 * the ten conditions of the evaluation part, and the endpoints and routes of the end-to-end part.
 * Seeded pseudo-random (mulberry32), so two runs evaluate the same records.
 */

export interface NamedCondition {
  name: string
  condition: string
}

export const REGIONS = ['eu-west', 'eu-north', 'us-east', 'us-west', 'ap-south'] as const

/**
 * Ten conditions of the kinds IoT Hub users write (Microsoft Learn, "IoT Hub message routing
 * query syntax": properties, body, twin): one header, one body field, AND/OR, functions, nested
 * paths with an index, the twin against the body.
 */
export const EVAL_ROUTES: readonly NamedCondition[] = [
  { name: 'hot-path', condition: "processingPath = 'hot'" },
  { name: 'too-hot', condition: '$body.temp > 30' },
  { name: 'critical-humid', condition: "level = 'critical' AND $body.humidity >= 80" },
  { name: 'europe', condition: "region = 'eu-west' OR region = 'eu-north'" },
  { name: 'fleet-00', condition: "STARTSWITH($connectionDeviceId, 'sensor-00')" },
  { name: 'alarms', condition: "LOWER($body.status) = 'alarm'" },
  { name: 'nested', condition: 'IS_DEFINED($body.nested.b.c) AND $body.nested.a[0] > 50' },
  { name: 'plant-a-over', condition: "$twin.tags.x = 'plant-a' AND $body.temp > $twin.properties.desired.threshold" },
  { name: 'json-not-info', condition: "$contentType = 'application/json' AND NOT (level = 'info')" },
  { name: 'beta-or-cold-east', condition: "CONTAINS($body.firmware, 'beta') OR ($body.temp < 0 AND ENDSWITH(region, 'east'))" },
]

/** The one twin every evaluated record reads (the worker looks twins up per batch, before evaluating). */
export const EVAL_TWIN: TwinDocument = {
  tags: { x: 'plant-a', building: '43' },
  properties: { desired: { threshold: 28 }, reported: { firmware: '1.4.2' } },
}

export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const pick = <T>(rnd: () => number, list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!
const round = (x: number, digits: number): number => Number(x.toFixed(digits))

/** A body of about 200 bytes: readings, a status, firmware, and nested fields ($body.nested.a[0]). */
function body(rnd: () => number, deviceId: string, seq: number, at: number): Buffer {
  const status = rnd() < 0.03 ? 'ALARM' : rnd() < 0.1 ? 'degraded' : 'ok'
  const doc = {
    deviceId,
    seq,
    ts: new Date(at).toISOString(),
    temp: round(15 + rnd() * 20 - (rnd() < 0.02 ? 25 : 0), 2),
    humidity: round(30 + rnd() * 60, 1),
    pressure: round(990 + rnd() * 40, 1),
    battery: Math.floor(rnd() * 100),
    status,
    firmware: rnd() < 0.05 ? '1.5.0-beta' : '1.4.2',
    nested: { a: [Math.floor(rnd() * 100), Math.floor(rnd() * 10)], b: rnd() < 0.8 ? { c: 'calibrated' } : {} },
  }
  return Buffer.from(JSON.stringify(doc))
}

/**
 * `count` telemetry records of `devices` sensors as the ingest pipeline stores them: the
 * envelope's headers (content type and encoding set, so `$body` is the parsed JSON), three
 * application properties and a message id.
 */
export function telemetryRecords(count: number, devices = 1000, seed = 42): OutgoingRecord[] {
  const rnd = random(seed)
  const start = Date.now() - count
  const records: OutgoingRecord[] = []
  for (let i = 0; i < count; i++) {
    const deviceId = `sensor-${String(i % devices).padStart(4, '0')}`
    const at = start + i
    const level = rnd() < 0.05 ? 'critical' : rnd() < 0.2 ? 'warning' : 'info'
    const app: Array<[string, string]> = [
      ['processingPath', rnd() < 0.2 ? 'hot' : 'cold'],
      ['level', level],
      ['region', pick(rnd, REGIONS)],
    ]
    const system = { contentType: 'application/json', contentEncoding: 'utf-8', messageId: `${deviceId}-${i}` }
    records.push(buildTelemetryRecord({ deviceId, payload: body(rnd, deviceId, i, at), properties: { system, app }, enqueuedAt: at, retain: false }))
  }
  return records
}

// ---- end to end ----------------------------------------------------------------------------

/**
 * The load generator's payloads are `t=<µs>;` and padding, not JSON: the end-to-end routes read
 * the property bag each connection sends, `$connectionDeviceId` and the twin tags, never `$body`.
 */
export function connectionProperties(i: number): Record<string, string> {
  return {
    processingPath: i % 5 === 0 ? 'hot' : 'cold',
    level: i % 20 === 0 ? 'critical' : i % 4 === 0 ? 'warning' : 'info',
    region: REGIONS[i % REGIONS.length]!,
  }
}

/** Twin tags of connection `i`'s device ($twin.tags.x). */
export const connectionTags = (i: number): Record<string, string> => ({ x: i % 2 === 0 ? 'plant-a' : 'plant-b', building: String(40 + (i % 4)) })

export interface E2eRoute extends NamedCondition {
  endpoint: string
}

export const E2E_ENDPOINTS = ['routed-a', 'routed-b', 'hook'] as const

export const E2E_ROUTES: readonly E2eRoute[] = [
  { endpoint: 'routed-a', name: 'hot-path', condition: "processingPath = 'hot'" },
  { endpoint: 'routed-a', name: 'europe', condition: "region = 'eu-west' OR region = 'eu-north'" },
  { endpoint: 'routed-a', name: 'fleet-early', condition: "STARTSWITH($connectionDeviceId, 'rt-00000')" },
  { endpoint: 'routed-a', name: 'not-info', condition: "NOT (level = 'info') AND LOWER(region) <> 'ap-south'" },
  { endpoint: 'routed-b', name: 'plant-a', condition: "$twin.tags.x = 'plant-a'" },
  { endpoint: 'routed-b', name: 'critical', condition: "level = 'critical'" },
  { endpoint: 'routed-b', name: 'east', condition: "ENDSWITH(region, 'east') AND IS_DEFINED(processingPath)" },
  { endpoint: 'routed-b', name: 'fives', condition: "CONTAINS($connectionDeviceId, '5')" },
  { endpoint: 'hook', name: 'critical-hot', condition: "level = 'critical' AND processingPath = 'hot'" },
  { endpoint: 'hook', name: 'plant-b-warning', condition: "$twin.tags.x = 'plant-b' AND level = 'warning'" },
]
