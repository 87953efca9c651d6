import { describe, expect, it } from 'vitest'
import { checkRecord, decodeBatch, decodeBatchRecords, encodeBatch } from '../../../src/stream/embedded/record-batch.js'
import type { OutgoingRecord } from '../../../src/stream/types.js'

describe('record-batch (event loop → writer thread)', () => {
  it('round-trips several calls: keys, null keys, binary and empty values, headers, timestamps', () => {
    const calls: Array<{ topic: string; records: OutgoingRecord[] }> = [
      {
        topic: 'telemetry',
        records: [
          { key: 'dev1', value: Buffer.from('{"t":21}'), headers: { 'device-id': 'dev1', 'message-id': 'ünï-😀' }, timestamp: 1_700_000_000_123 },
          { key: null, value: Buffer.from([0, 255, 1, 2]) },
        ],
      },
      { topic: 'device-events', records: [{ key: 'dévice-2', value: Buffer.alloc(0), headers: {} }] },
    ]
    const { data, length } = encodeBatch(calls, () => 42)
    expect(length).toBeLessThanOrEqual(data.byteLength)
    const decoded = decodeBatch(data, length)
    expect(decoded.map((c) => c.topic)).toEqual(['telemetry', 'device-events'])
    const [first, second] = decoded[0]!.records
    expect(first).toMatchObject({ key: 'dev1', timestamp: 1_700_000_000_123 })
    expect(JSON.parse(first!.headers!)).toEqual({ 'device-id': 'dev1', 'message-id': 'ünï-😀' })
    expect(first!.value.toString()).toBe('{"t":21}')
    // No timestamp: the append's time; no headers: stored as NULL, like the in-thread writer.
    expect(second).toMatchObject({ key: null, timestamp: 42, headers: null })
    expect([...second!.value]).toEqual([0, 255, 1, 2])
    expect(decoded[1]!.records[0]).toMatchObject({ key: 'dévice-2', headers: null })
    expect(decoded[1]!.records[0]!.value.length).toBe(0)
  })

  it('sends telemetry headers as a flag, and the thread rebuilds exactly the text JSON.stringify gives', () => {
    const t = 1_700_000_000_123
    const records: OutgoingRecord[] = [
      // The shape buildTelemetryRecord gives most telemetry: no header bytes go over.
      { key: 'dev-"1"\\ü', value: Buffer.from('a'), headers: { 'device-id': 'dev-"1"\\ü', 'enqueued-time': String(t) }, timestamp: t },
      // Not that shape: sent as text, each for its own reason.
      { key: 'dev-2', value: Buffer.from('b'), headers: { 'device-id': 'other', 'enqueued-time': String(t) }, timestamp: t },
      { key: 'dev-3', value: Buffer.from('c'), headers: { 'device-id': 'dev-3', 'enqueued-time': '1' }, timestamp: t },
      { key: 'dev-4', value: Buffer.from('d'), headers: { 'enqueued-time': String(t), 'device-id': 'dev-4' }, timestamp: t },
      { key: 'dev-5', value: Buffer.from('e'), headers: { 'device-id': 'dev-5', 'enqueued-time': String(t), 'message-id': 'm' }, timestamp: t },
      { key: 'dev-6', value: Buffer.from('f'), headers: { 'device-id': 'dev-6', 'enqueued-time': '7' } },
    ]
    const { data, length } = encodeBatch([{ topic: 'telemetry', records }], () => 7)
    const decoded = decodeBatch(data, length)[0]!.records
    decoded.forEach((d, i) => expect(d.headers, `record ${i}`).toBe(JSON.stringify(records[i]!.headers)))
    // For Kafka the same batch decodes to header objects equal to the ones sent.
    const asRecords = decodeBatchRecords(data, length)[0]!.records
    asRecords.forEach((d, i) => expect(d.headers, `record ${i}`).toEqual(records[i]!.headers))
    expect(asRecords.map((d) => d.timestamp)).toEqual([t, t, t, t, t, 7])
    const alone = (r: OutgoingRecord): number => encodeBatch([{ topic: 'telemetry', records: [r] }], () => 7).length
    expect(alone(records[0]!)).toBe(4 + 2 + 9 + 4 + 1 + 8 + 4 + Buffer.byteLength(records[0]!.key!) + 4 + 1 + 4)
    expect(alone(records[1]!)).toBeGreaterThan(4 + 2 + 9 + 4 + 1 + 8 + 4 + 5 + 4 + 1 + 4)
  })

  it('packs into a buffer of its own that can be transferred', () => {
    const { data } = encodeBatch([{ topic: 't', records: [{ key: 'k', value: Buffer.from('v') }] }], Date.now)
    const copy = structuredClone(data, { transfer: [data] })
    expect(data.byteLength).toBe(0)
    expect(decodeBatch(copy, copy.byteLength)[0]!.records[0]!.key).toBe('k')
  })

  it('refuses a record that is not storable with E_BAD_REQUEST naming the topic', () => {
    expect(() => checkRecord('t', { key: 'k', value: 'text' as unknown as Buffer })).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST', details: { topic: 't' } }))
    expect(() => checkRecord('t', { key: 7 as unknown as string, value: Buffer.alloc(1) })).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }))
  })
})
