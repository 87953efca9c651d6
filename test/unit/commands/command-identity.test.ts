import { describe, expect, it } from 'vitest'
import { commandIdentity } from '../../../src/commands/commands-topic-source.js'
import type { StoredRecord } from '../../../src/stream/types.js'

const record = (over: Partial<StoredRecord> = {}): StoredRecord => ({
  topic: 'commands', partition: 3, offset: 17, key: 'dev-1', value: Buffer.from('reboot'), headers: { 'message-id': 'm1', colour: 'blue' }, timestamp: 1_700_000_000_000, ...over,
})

/** The identity of a `commands` record: the same for a replay, another for a new record at the same offset. */
describe('commandIdentity', () => {
  it('is the position plus a digest, the same for the same record read again (header order aside)', () => {
    const a = commandIdentity(record())
    expect(a.sourceRef).toMatch(/^stream:commands\/3\/17#[0-9a-f]{32}$/)
    expect(a.sourceRef.endsWith(`#${a.digest}`)).toBe(true)
    expect(commandIdentity(record({ headers: { colour: 'blue', 'message-id': 'm1' } }))).toEqual(a)
  })

  it.each([
    ['the payload', { value: Buffer.from('reboot!') }],
    ['the key', { key: 'dev-2' }],
    ['no key', { key: null }],
    ['an empty key', { key: '' }],
    ['a header value', { headers: { 'message-id': 'm1', colour: 'red' } }],
    ['a header name', { headers: { 'message-id': 'm1', color: 'blue' } }],
    ['a header moved into the value', { value: Buffer.from('rebootblue'), headers: { 'message-id': 'm1', colour: '' } }],
    ['the timestamp', { timestamp: 1_700_000_000_001 }],
    ['the offset', { offset: 18 }],
    ['the partition', { partition: 2 }],
    ['the topic', { topic: 'plant.commands' }],
  ])('differs when %s differs', (_what, over) => {
    expect(commandIdentity(record(over as Partial<StoredRecord>)).sourceRef).not.toBe(commandIdentity(record()).sourceRef)
  })
})
