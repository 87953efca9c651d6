import { describe, expect, it } from 'vitest'
import { AlertProcessor } from '../../../src/analytics/alert-processor.js'
import { checkAlertRule, type AlertRuleInput } from '../../../src/analytics/definitions.js'
import type { ProcessorOutput } from '../../../src/analytics/types.js'
import type { StoredRecord } from '../../../src/stream/types.js'

let offset = 0
function rec(deviceId: string, body: unknown, enqueued: number, headers: Record<string, string> = {}): StoredRecord {
  return {
    topic: 'telemetry',
    partition: 0,
    offset: offset++,
    key: deviceId,
    value: Buffer.from(JSON.stringify(body)),
    headers: { 'device-id': deviceId, 'enqueued-time': String(enqueued), 'content-type': 'application/json', 'content-encoding': 'utf-8', ...headers },
    timestamp: enqueued,
  }
}
const make = (rule: Partial<AlertRuleInput>, state?: unknown): AlertProcessor => new AlertProcessor(checkAlertRule({ name: 'hot', condition: '$body.temp > 80', ...rule }), state)
const events = (outs: ProcessorOutput[]): Array<Record<string, unknown>> => outs.map((o) => JSON.parse(o.record.value.toString()) as Record<string, unknown>)
const T = 1_800_000_000_000

describe('AlertProcessor', () => {
  it('raises at once without forMs and clears when the condition no longer holds, one open alert per device', () => {
    const p = make({ value: '$body.temp' })
    const raised = events(p.process([rec('d', { temp: 90 }, T), rec('d', { temp: 95 }, T + 10), rec('e', { temp: 10 }, T + 20)], T))
    expect(raised).toEqual([{ type: 'alert-raised', rule: 'hot', deviceId: 'd', severity: 'warning', value: 90, time: new Date(T).toISOString(), since: new Date(T).toISOString(), raisedAt: new Date(T).toISOString() }])
    expect(p.open()).toEqual([expect.objectContaining({ rule: 'hot', deviceId: 'd', value: 95 })])
    const cleared = events(p.process([rec('d', { temp: 70 }, T + 30)], T))
    expect(cleared).toEqual([expect.objectContaining({ type: 'alert-cleared', deviceId: 'd', value: 70, reason: 'condition', time: new Date(T + 30).toISOString() })])
    expect(p.open()).toEqual([])
  })

  it('raises only once the condition held for forMs of event time, and a non-violating record restarts the wait', () => {
    const p = make({ forMs: 5000 })
    expect(p.process([rec('d', { temp: 90 }, T), rec('d', { temp: 90 }, T + 4000)], T)).toEqual([])
    expect(p.process([rec('d', { temp: 20 }, T + 4500), rec('d', { temp: 90 }, T + 5000), rec('d', { temp: 90 }, T + 9000)], T)).toEqual([])
    const out = p.process([rec('d', { temp: 90 }, T + 10_000), rec('d', { temp: 91 }, T + 11_000)], T)
    expect(events(out).map((e) => [e.type, e.since, e.time])).toEqual([['alert-raised', new Date(T + 5000).toISOString(), new Date(T + 10_000).toISOString()]])
  })

  it('keeps the alert open until clearCondition holds (hysteresis)', () => {
    const p = make({ clearCondition: '$body.temp < 60' })
    p.process([rec('d', { temp: 90 }, T)], T)
    expect(p.process([rec('d', { temp: 70 }, T + 1)], T)).toEqual([])
    expect(events(p.process([rec('d', { temp: 50 }, T + 2)], T))).toEqual([expect.objectContaining({ type: 'alert-cleared', reason: 'clearCondition' })])
  })

  it('clears after clearAfterMs without a violating record, once the partition is read to its end', () => {
    const p = make({ clearAfterMs: 1000 })
    p.process([rec('d', { temp: 90 }, T)], T)
    expect(p.tick(T + 999, true)).toEqual([])
    expect(p.tick(T + 2000, false)).toEqual([])
    expect(events(p.tick(T + 2000, true))).toEqual([expect.objectContaining({ type: 'alert-cleared', reason: 'timeout' })])
  })

  it('reads an aggregate\'s output with the window end as event time, and only that aggregate\'s records', () => {
    const p = make({ source: { aggregate: 'avg' }, condition: '$body.avg_temp > 80', forMs: 2000 })
    const win = (end: number, avg: number, aggregate = 'avg'): StoredRecord => rec('d', { avg_temp: avg }, T + 60_000, { aggregate, 'window-end': String(end) })
    expect(p.process([win(T + 1000, 90), win(T + 2000, 90), win(T + 2500, 99, 'other')], T)).toEqual([])
    expect(events(p.process([win(T + 3000, 85)], T)).map((e) => [e.type, e.time])).toEqual([['alert-raised', new Date(T + 3000).toISOString()]])
  })

  it('neither repeats nor forgets an open alert when made again from its snapshot', () => {
    const a = make({ forMs: 1000 })
    a.process([rec('d', { temp: 90 }, T), rec('d', { temp: 90 }, T + 1000)], T)
    const b = make({ forMs: 1000 }, JSON.parse(JSON.stringify(a.snapshot())))
    expect(b.process([rec('d', { temp: 90 }, T + 2000)], T)).toEqual([])
    expect(b.open()).toHaveLength(1)
    const cleared = b.process([rec('d', { temp: 1 }, T + 3000)], T)
    expect(cleared.map((o) => o.id)).toEqual([`alert-cleared/d/${T}`])
  })

  it('stamps bare-named headers a route on the alerts source can read', () => {
    const p = make({ severity: 'critical' })
    const [out] = p.process([rec('d', { temp: 90 }, T)], T)
    expect(out!.record.headers).toMatchObject({ rule: 'hot', alertType: 'raised', severity: 'critical', 'device-id': 'd' })
    expect(out!.record.key).toBe('d')
  })
})
