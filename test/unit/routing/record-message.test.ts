import { describe, expect, it } from 'vitest'
import { buildTelemetryRecord } from '../../../src/ingest/envelope.js'
import { compileEnrichments } from '../../../src/routing/enrich.js'
import { RecordMessage, isTwinChange } from '../../../src/routing/message.js'
import { compileQuery } from '../../../src/routing/query/index.js'
import { TwinCache } from '../../../src/routing/twin-cache.js'
import type { StoredRecord } from '../../../src/stream/types.js'
import type { Twin } from '../../../src/registry/types.js'

/** A telemetry record exactly as the ingest writes it, read back from partition 0. */
function telemetry(body: string, system: Record<string, string> = {}, app: Array<[string, string | null]> = []): StoredRecord {
  const out = buildTelemetryRecord({ deviceId: 'dev-1', payload: Buffer.from(body), properties: { system, app }, enqueuedAt: Date.UTC(2026, 11, 2, 10), retain: false })
  return { topic: 'telemetry', partition: 0, offset: 0, key: out.key, value: out.value, headers: out.headers ?? {}, timestamp: out.timestamp! }
}

const matches = (condition: string, record: StoredRecord, kind: 'telemetry' | 'device-event' = 'telemetry') => compileQuery(condition).evaluate(new RecordMessage(record, kind, undefined))

describe('RecordMessage: a stream record as conditions read it', () => {
  it('parses $body only for application/json in UTF-8, as IoT Hub does', () => {
    const body = '{"temp": 35}'
    expect(matches('$body.temp > 30', telemetry(body, { contentType: 'application/json', contentEncoding: 'utf-8' }))).toBe(true)
    expect(matches('$body.temp > 30', telemetry(body, { contentType: 'application/json', contentEncoding: 'UTF-8' }))).toBe(true)
    expect(matches('$body.temp > 30', telemetry(body, { contentType: 'application/json' }))).toBeUndefined()
    expect(matches('$body.temp > 30', telemetry(body, { contentType: 'text/plain', contentEncoding: 'utf-8' }))).toBeUndefined()
    expect(matches('$body.temp > 30', telemetry('{"temp": 35', { contentType: 'application/json', contentEncoding: 'utf-8' }))).toBeUndefined()
    const notUtf8 = telemetry('x', { contentType: 'application/json', contentEncoding: 'utf-8' })
    notUtf8.value = Buffer.from([0x7b, 0xff, 0x7d])
    expect(matches('IS_DEFINED($body)', notUtf8)).toBe(false)
  })

  it('reads system properties from the envelope headers and the enqueued time as ISO 8601', () => {
    const r = telemetry('x', { messageId: 'm-1', correlationId: 'c-1', contentType: 'text/plain' })
    expect(matches("$messageId = 'm-1' AND $correlationId = 'c-1' AND $contentType = 'text/plain'", r)).toBe(true)
    expect(matches("$connectionDeviceId = 'dev-1'", r)).toBe(true)
    expect(matches("$enqueuedTime = '2026-12-02T10:00:00.000Z'", r)).toBe(true)
  })

  it('gives application properties back under their own names, also those that collided with gateway headers', () => {
    const r = telemetry('x', {}, [['Level', 'critical'], ['device-id', 'spoofed'], ['flag', null]])
    expect(r.headers['app.device-id']).toBe('spoofed')
    expect(matches("level = 'critical'", r)).toBe(true)
    expect(matches("LEVEL = 'critical' AND flag = ''", r)).toBe(true)
    // The spoofed name is an application property, never $connectionDeviceId.
    expect(matches("$connectionDeviceId = 'dev-1'", r)).toBe(true)
  })

  it('reads device events as JSON with opType, and tells twin changes apart', () => {
    const event = (type: string): StoredRecord => ({ topic: 'device-events', partition: 0, offset: 0, key: 'dev-1', value: Buffer.from(JSON.stringify({ type, deviceId: 'dev-1' })), headers: { 'event-type': type }, timestamp: 0 })
    expect(matches("$body.type = 'connected' AND opType = 'connected' AND $contentType = 'application/json'", event('connected'), 'device-event')).toBe(true)
    expect([event('twin-tags'), event('twin-desired'), event('connected')].map(isTwinChange)).toEqual([true, true, false])
  })
})

describe('enrichments', () => {
  const twin = { tags: { site: '43', loc: { floor: 2 } }, properties: { desired: { interval: 5 }, reported: {} } }

  it('stamps static values, $deviceId, $hubName and twin paths; a missing twin path stamps its own text', () => {
    const e = compileEnrichments(
      [
        { key: 'fixed', value: 'v1' },
        { key: 'dev', value: '$deviceId' },
        { key: 'hub', value: '$hubName' },
        { key: 'site', value: '$twin.tags.site' },
        { key: 'loc', value: '$twin.tags.loc' },
        { key: 'interval', value: '$twin.properties.desired.interval' },
        { key: 'gone', value: '$twin.tags.nope' },
      ],
      'hub.example',
    )
    expect(e.usesTwin).toBe(true)
    const headers = e.apply({ level: 'x', site: 'device-sent' }, 'dev-1', twin)
    expect(headers).toEqual({ level: 'x', fixed: 'v1', dev: 'dev-1', hub: 'hub.example', site: '43', loc: '{"floor":2}', interval: '5', gone: '$twin.tags.nope' })
    expect(e.apply({}, 'dev-1', undefined).site).toBe('$twin.tags.site')
  })

  it('leaves headers as they are without enrichments and says when no twin is needed', () => {
    const e = compileEnrichments([{ key: 'dev', value: '$deviceId' }], 'h')
    expect(e.usesTwin).toBe(false)
    const headers = { a: '1' }
    expect(compileEnrichments([], 'h').apply(headers, 'd', undefined)).toBe(headers)
  })
})

describe('TwinCache', () => {
  function registry(): { reads: string[]; getTwin: (id: string) => Promise<Twin | null>; tags: Record<string, unknown> } {
    const state = {
      reads: [] as string[],
      tags: { v: 1 } as Record<string, unknown>,
      getTwin: async (id: string): Promise<Twin | null> => {
        state.reads.push(id)
        if (id === 'unknown') return null
        return { deviceId: id, desired: { version: 1, properties: {} }, reported: { version: 1, properties: {} }, tags: { version: 1, properties: { ...state.tags } } }
      },
    }
    return state
  }

  it('reads each device once per maxAge, shares concurrent reads, and knows unknown devices', async () => {
    let now = 0
    const reg = registry()
    const cache = new TwinCache(reg, 1000, 100, () => now)
    const [a, b] = await Promise.all([cache.lookup(['d1', 'd1', 'unknown']), cache.lookup(['d1'])])
    expect(reg.reads).toEqual(['d1', 'unknown'])
    expect(a.get('d1')?.tags).toEqual({ v: 1 })
    expect(b.get('d1')?.tags).toEqual({ v: 1 })
    expect(a.get('unknown')).toBeUndefined()
    reg.tags = { v: 2 }
    now = 1000
    expect((await cache.lookup(['d1'])).get('d1')?.tags).toEqual({ v: 1 })
    now = 1001
    expect((await cache.lookup(['d1'])).get('d1')?.tags).toEqual({ v: 2 })
  })

  it('holds at most maxEntries devices, and a lookup still answers for every device it was asked about', async () => {
    const reg = registry()
    const cache = new TwinCache(reg, 60_000, 2, () => 0)
    const found = await cache.lookup(['a', 'b', 'c'])
    expect([...found.keys()]).toEqual(['a', 'b', 'c'])
    expect([...found.values()].every((t) => t !== undefined)).toBe(true)
    reg.reads.length = 0
    await cache.lookup(['a', 'c'])
    // 'a' was dropped (the oldest read); 'c' is still held.
    expect(reg.reads).toEqual(['a'])
  })
})
