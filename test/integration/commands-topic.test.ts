import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { collect, feedbackRecords, sleep, type Received } from '../helpers/commands.js'
import BetterSqlite3 from 'better-sqlite3'
import type { Device } from '../../src/registry/types.js'

/** Distinct lease owners of the commands topic in the stream file (both gateways once balanced). */
function leaseOwners(dataDir: string, topic: string): number {
  const db = new BetterSqlite3(join(dataDir, 'stream.db'), { readonly: true })
  try {
    return db.prepare<[string], { n: number }>('SELECT count(DISTINCT owner) AS n FROM group_leases WHERE topic = ?').get(topic)!.n
  } finally {
    db.close()
  }
}

/**
 * The `commands` stream topic read by one consumer group across two gateways on one data
 * directory (embedded stream: partition leases in the stream file). Devices connect to gateway A;
 * commands taken by B's consumer land in the shared queue and A delivers them.
 */
describe('commands stream topic with two gateways in one consumer group', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-cmd-topic-'))
  let a: TestGateway
  let b: TestGateway
  const clients: MqttClient[] = []

  beforeAll(async () => {
    a = await startTestGateway({}, dataDir)
    b = await startTestGateway({}, dataDir)
  })
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined)
    await b.stop()
    await a.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('delivers every command exactly once', async () => {
    // A joins first and holds all 8 partitions; when B joins, A gives up its highest four (groups.ts).
    // These ids hash to partitions 4, 4, 4, 2, 3, 0: both gateways take some of the commands.
    const devices: Device[] = []
    const inboxes = new Map<string, Received[]>()
    for (let i = 0; i < 6; i++) {
      const d = await a.gateway.registry.create({ deviceId: `topic-dev-${i}` })
      devices.push(d)
      const client = await connectDevice(a.mqttUrl, d.deviceId, sasFor(d))
      clients.push(client)
      inboxes.set(d.deviceId, collect(client))
      await client.subscribeAsync(`devices/${d.deviceId}/messages/devicebound/#`, { qos: 1 })
    }
    const records = devices.flatMap((d) =>
      [0, 1, 2].map((n) => ({ key: d.deviceId, value: Buffer.from(`${d.deviceId}#${n}`), headers: { 'message-id': `${d.deviceId}-m${n}`, 'ttl-ms': '600000', colour: 'blue' } })),
    )
    // Wait for the group to balance (rebalance beat 2 s) so that both consumers hold partitions.
    await waitFor(() => leaseOwners(dataDir, a.gateway.topics.commands) === 2, 10_000, 'both gateways holding partitions')
    const takenByA = vi.spyOn(a.gateway.commands.c2d, 'send')
    const takenByB = vi.spyOn(b.gateway.commands.c2d, 'send')
    await a.gateway.stream.append(a.gateway.topics.commands, records)

    for (const d of devices) {
      const inbox = inboxes.get(d.deviceId)!
      await waitFor(() => inbox.length >= 3, 10_000, `commands for ${d.deviceId}`)
    }
    await sleep(1500) // a second sweep of both gateways: still nothing delivered twice
    for (const d of devices) {
      const inbox = inboxes.get(d.deviceId)!
      expect(inbox.map((m) => m.payload)).toEqual([0, 1, 2].map((n) => `${d.deviceId}#${n}`))
      expect(inbox[0]!.topic).toContain('colour=blue')
    }
    // Each record was taken by one consumer of the group: the two shares add up to the 18 records.
    expect(takenByA.mock.calls.length + takenByB.mock.calls.length).toBe(18)
    expect(takenByA.mock.calls.length).toBeGreaterThan(0)
    expect(takenByB.mock.calls.length).toBeGreaterThan(0)
    const fb = (await feedbackRecords(a.gateway)).filter((f) => f.deviceId.startsWith('topic-dev-'))
    expect(fb).toHaveLength(18)
    expect(new Set(fb.map((f) => f.messageId)).size).toBe(18)
    expect(new Set(fb.map((f) => f.status))).toEqual(new Set(['completed']))
  })

  it('ends a stream command for a full queue as rejected (E_QUEUE_FULL)', async () => {
    const d = await a.gateway.registry.create({ deviceId: 'topic-full' })
    for (let i = 0; i < 50; i++) await a.gateway.commands.c2d.send(d.deviceId, { payload: Buffer.from(`q${i}`) })
    await a.gateway.stream.append(a.gateway.topics.commands, [{ key: d.deviceId, value: Buffer.from('x'), headers: { 'message-id': 'overflow-1' } }])
    const fb = await waitFor(async () => (await feedbackRecords(a.gateway)).find((f) => f.messageId === 'overflow-1'), 10_000, 'rejected feedback')
    expect([fb.status, fb.reason]).toEqual(['rejected', 'E_QUEUE_FULL'])
    expect(await a.gateway.commandQueue.list(d.deviceId)).toHaveLength(50)
  })

  it('counts the TTL from the record timestamp: a command older than its TTL ends expired', async () => {
    const d = await a.gateway.registry.create({ deviceId: 'topic-stale' })
    await a.gateway.stream.append(a.gateway.topics.commands, [
      { key: d.deviceId, value: Buffer.from('stale'), headers: { 'message-id': 'stale-1', 'ttl-ms': '60000' }, timestamp: Date.now() - 120_000 },
    ])
    const fb = await waitFor(async () => (await feedbackRecords(a.gateway)).find((f) => f.messageId === 'stale-1'), 10_000, 'expired feedback')
    expect([fb.status, fb.deliveryCount]).toEqual(['expired', 0])
  })

  it('ends a command for an unknown device or with a bad TTL as rejected', async () => {
    await a.gateway.stream.append(a.gateway.topics.commands, [
      { key: 'no-such-device', value: Buffer.from('x'), headers: { 'message-id': 'ghost-1' } },
      { key: 'topic-dev-0', value: Buffer.from('x'), headers: { 'message-id': 'short-ttl', 'ttl-ms': '1000' } },
    ])
    const fb = await waitFor(async () => {
      const all = (await feedbackRecords(a.gateway)).filter((f) => f.messageId === 'ghost-1' || f.messageId === 'short-ttl')
      return all.length === 2 ? all : null
    }, 10_000)
    expect(fb.map((f) => [f.messageId, f.status, f.reason]).sort()).toEqual([
      ['ghost-1', 'rejected', 'E_DEVICE_NOT_FOUND'],
      ['short-ttl', 'rejected', 'E_BAD_REQUEST'],
    ])
  })

  it('never drops a record without feedback: no key, bad headers and reserved properties end as rejected', async () => {
    await a.gateway.stream.append(a.gateway.topics.commands, [
      { key: null, value: Buffer.from('x'), headers: { 'message-id': 'no-key' } },
      { key: 'topic-dev-0', value: Buffer.from('x'), headers: { 'message-id': 'nan-ttl', 'ttl-ms': 'soon' } },
      { key: 'topic-dev-0', value: Buffer.from('x'), headers: { 'message-id': 'bad-ack', 'iothub-ack': 'always' } },
      { key: 'topic-dev-0', value: Buffer.from('x'), headers: { 'message-id': 'bad-prop', '$.mid': 'spoof' } },
      // No message-id: the feedback names the record by its digest.
      { key: 'topic-dev-0', value: Buffer.from('x'), headers: { 'ttl-ms': '1' } },
    ])
    const ids = ['no-key', 'nan-ttl', 'bad-ack', 'bad-prop']
    const fb = await waitFor(async () => {
      const all = (await feedbackRecords(a.gateway)).filter((f) => ids.includes(f.messageId) || /^[0-9a-f]{32}$/.test(f.messageId))
      return all.length === 5 ? all : null
    }, 10_000, 'five rejected')
    expect(fb.map((f) => [f.messageId.length === 32 ? 'digest' : f.messageId, f.status, f.reason]).sort()).toEqual([
      ['bad-ack', 'rejected', 'E_BAD_REQUEST'],
      ['bad-prop', 'rejected', 'E_PROPERTY_BAG_INVALID'],
      ['digest', 'rejected', 'E_BAD_REQUEST'],
      ['nan-ttl', 'rejected', 'E_BAD_REQUEST'],
      ['no-key', 'rejected', 'E_DEVICE_ID_INVALID'],
    ])
  })
})
