import { describe, expect, it } from 'vitest'
import { AggregateProcessor } from '../../../src/analytics/aggregate-processor.js'
import { checkAggregate, type AggregateInput } from '../../../src/analytics/definitions.js'
import type { ProcessorOutput } from '../../../src/analytics/types.js'
import type { StoredRecord } from '../../../src/stream/types.js'

let offset = 0
/** A telemetry record as ingest writes it (JSON body, enqueued time header). */
function rec(deviceId: string, body: unknown, enqueued: number, props: Record<string, string> = {}): StoredRecord {
  return {
    topic: 'telemetry',
    partition: 0,
    offset: offset++,
    key: deviceId,
    value: Buffer.from(JSON.stringify(body)),
    headers: { 'device-id': deviceId, 'enqueued-time': String(enqueued), 'content-type': 'application/json', 'content-encoding': 'utf-8', ...props },
    timestamp: enqueued,
  }
}

const make = (def: Partial<AggregateInput>, state?: unknown): AggregateProcessor =>
  new AggregateProcessor(checkAggregate({ name: 'a', window: { sizeMs: 1000 }, functions: [{ fn: 'avg', path: '$body.v' }], ...def }), state)
const bodies = (outs: ProcessorOutput[]): Array<Record<string, unknown>> => outs.map((o) => JSON.parse(o.record.value.toString()) as Record<string, unknown>)
const T = 1_800_000_000_000

describe('AggregateProcessor', () => {
  it('emits one record per device per tumbling window when the device watermark passes its end, with every function', () => {
    const p = make({ functions: (['count', 'sum', 'avg', 'min', 'max', 'first', 'last'] as const).map((fn) => ({ fn, path: '$body.v' })) })
    const now = T
    const out = p.process([rec('d1', { v: 4 }, T + 100), rec('d1', { v: 'x' }, T + 200), rec('d1', { v: 2 }, T + 300), rec('d1', { v: 9 }, T + 999)], now)
    expect(out).toEqual([])
    const closed = bodies(p.process([rec('d1', { v: 1 }, T + 1000)], now))
    expect(closed).toEqual([
      { windowStart: new Date(T).toISOString(), windowEnd: new Date(T + 1000).toISOString(), group: { deviceId: 'd1' }, count: 4, skipped: 1, count_v: 3, sum_v: 15, avg_v: 5, min_v: 2, max_v: 9, first_v: 4, last_v: 9 },
    ])
    expect(p.counts).toMatchObject({ in: 5, skipped: 1, late: 0 })
  })

  it('keeps a watermark per device: a device whose clock runs an hour late holds back only its own windows', () => {
    const p = make({ timestampBy: '$body.ts' })
    const late = T - 3_600_000
    p.process([rec('slow', { v: 1, ts: late + 10 }, T + 10)], T)
    const out = p.process([rec('fast', { v: 1, ts: T + 10 }, T + 10), rec('fast', { v: 3, ts: T + 20 }, T + 20), rec('fast', { v: 5, ts: T + 1010 }, T + 1010)], T)
    expect(out.map((o) => o.record.key)).toEqual(['fast'])
    expect(bodies(out)[0]).toMatchObject({ windowStart: new Date(T).toISOString(), count: 2, avg_v: 2 })
    const slow = p.process([rec('slow', { v: 7, ts: late + 1500 }, T + 1500)], T)
    expect(slow.map((o) => [o.record.key, o.eventTime])).toEqual([['slow', late + 1000]])
  })

  it('drops a record for a window that closed, and counts it', () => {
    const p = make({ latePolicy: 'drop' })
    p.process([rec('d', { v: 1 }, T + 100), rec('d', { v: 1 }, T + 1100)], T)
    expect(p.process([rec('d', { v: 50 }, T + 900)], T)).toEqual([])
    expect(p.counts.late).toBe(1)
    const out = bodies(p.process([rec('d', { v: 3 }, T + 2000)], T))
    expect(out).toEqual([expect.objectContaining({ windowStart: new Date(T + 1000).toISOString(), count: 1, avg_v: 1 })])
  })

  it('adjusts a late record to the oldest open time with latePolicy adjust, and counts it', () => {
    const p = make({ latePolicy: 'adjust' })
    p.process([rec('d', { v: 1 }, T + 100), rec('d', { v: 1 }, T + 1100)], T)
    p.process([rec('d', { v: 7 }, T + 900)], T)
    expect(p.counts.adjusted).toBe(1)
    const out = bodies(p.process([rec('d', { v: 3 }, T + 2000)], T))
    expect(out).toEqual([expect.objectContaining({ windowStart: new Date(T + 1000).toISOString(), count: 2, avg_v: 4 })])
  })

  it('waits allowedLatenessMs past the end before closing, and takes records that late', () => {
    const p = make({ allowedLatenessMs: 500 })
    p.process([rec('d', { v: 2 }, T + 100)], T)
    expect(p.process([rec('d', { v: 4 }, T + 1200)], T)).toEqual([])
    expect(p.process([rec('d', { v: 6 }, T + 800)], T)).toEqual([])
    const out = bodies(p.process([rec('d', { v: 0 }, T + 1500)], T))
    expect(out).toEqual([expect.objectContaining({ count: 2, avg_v: 4 })])
    expect(p.counts.late).toBe(0)
  })

  it('emits every hopping window a record belongs to', () => {
    const p = make({ window: { type: 'hopping', sizeMs: 2000, hopMs: 1000 }, functions: [{ fn: 'sum', path: '$body.v' }] })
    const first = p.process([rec('d', { v: 1 }, T + 500), rec('d', { v: 10 }, T + 1500)], T)
    const out = bodies([...first, ...p.process([rec('d', { v: 100 }, T + 3000)], T)])
    expect(out.map((o) => [o.windowStart, o.sum_v])).toEqual([
      [new Date(T - 1000).toISOString(), 1],
      [new Date(T).toISOString(), 11],
      [new Date(T + 1000).toISOString(), 10],
    ])
  })

  it('groups by application properties besides the device id', () => {
    const p = make({ groupBy: ['Zone'], functions: [{ fn: 'max', path: '$body.v' }] })
    p.process([rec('d', { v: 1 }, T + 1, { zone: 'a' }), rec('d', { v: 5 }, T + 2, { zone: 'b' }), rec('d', { v: 3 }, T + 3, { zone: 'a' }), rec('d', { v: 9 }, T + 4)], T)
    const out = bodies(p.process([rec('d', { v: 0 }, T + 1000, { zone: 'a' })], T))
    expect(out.map((o) => [o.group, o.max_v])).toEqual([
      [{ deviceId: 'd', zone: 'a' }, 3],
      [{ deviceId: 'd', zone: 'b' }, 5],
      [{ deviceId: 'd', zone: null }, 9],
    ])
  })

  it('aggregates only what the filter matches, and nothing of a body that is not JSON', () => {
    const p = make({ filter: '$body.v > 2' })
    const notJson = { ...rec('d', { v: 100 }, T + 5), headers: { 'device-id': 'd', 'enqueued-time': String(T + 5) } }
    p.process([rec('d', { v: 1 }, T + 1), rec('d', { v: 3 }, T + 2), notJson, rec('d', { v: 5 }, T + 3)], T)
    const out = bodies(p.process([rec('d', { v: 10 }, T + 1000)], T))
    expect(out).toEqual([expect.objectContaining({ count: 2, avg_v: 4 })])
  })

  it('closes a quiet device\'s window by the wall clock once the partition is read to its end', () => {
    const p = make({})
    p.process([rec('d', { v: 2 }, T + 900)], T + 900)
    expect(p.tick(T + 1050, false)).toEqual([])
    expect(p.tick(T + 1050, true)).toEqual([])
    expect(bodies(p.tick(T + 1150, true))).toEqual([expect.objectContaining({ count: 1, avg_v: 2 })])
    expect(p.openWindows).toBe(0)
  })

  it('with timestampBy, lets the wall clock close a device\'s windows only after idleTimeoutMs of silence', () => {
    const p = make({ timestampBy: '$body.ts', idleTimeoutMs: 5000 })
    p.process([rec('d', { v: 2, ts: 100 }, T)], T)
    // The device's clock is its own: a pause of a few seconds leaves its window open.
    expect(p.tick(T + 4999, true)).toEqual([])
    expect(bodies(p.process([rec('d', { v: 4, ts: 900 }, T + 4999)], T + 4999))).toEqual([])
    expect(p.tick(T + 9000, true)).toEqual([])
    expect(bodies(p.tick(T + 10_000, true))).toEqual([expect.objectContaining({ count: 2, avg_v: 3 })])
  })

  it('falls back to the enqueued time for a timestampBy value that is no time or is over an hour ahead', () => {
    const p = make({ timestampBy: '$body.ts' })
    p.process([rec('d', { v: 1, ts: 'soon' }, T + 10), rec('d', { v: 1, ts: T + 7_200_000 }, T + 20)], T)
    expect(p.counts.untimed).toBe(2)
    const out = p.process([rec('d', { v: 1, ts: new Date(T + 1000).toISOString() }, T + 30)], T)
    expect(bodies(out)).toEqual([expect.objectContaining({ windowStart: new Date(T).toISOString(), count: 2 })])
  })

  it('continues from its snapshot exactly where it was (JSON round trip)', () => {
    const a = make({})
    a.process([rec('d', { v: 2 }, T + 100), rec('d', { v: 4 }, T + 200)], T)
    const b = make({}, JSON.parse(JSON.stringify(a.snapshot())))
    expect(bodies(b.process([rec('d', { v: 0 }, T + 1000)], T))).toEqual([expect.objectContaining({ count: 2, avg_v: 3 })])
    expect(b.process([rec('d', { v: 9 }, T + 500)], T)).toEqual([])
    expect(b.counts.late).toBe(1)
  })

  it('gives each output an id unique to its group and window, and the window end as event time', () => {
    const p = make({ groupBy: ['zone'] })
    p.process([rec('d', { v: 1 }, T + 1, { zone: 'a' }), rec('d', { v: 1 }, T + 2, { zone: 'b' })], T)
    const out = p.process([rec('d', { v: 1 }, T + 1000)], T)
    expect(new Set(out.map((o) => o.id)).size).toBe(2)
    expect(out.every((o) => o.eventTime === T + 1000 && o.record.headers?.['window-end'] === String(T + 1000) && o.record.headers?.aggregate === 'a')).toBe(true)
  })
})
