import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DeviceEventWriter } from '../../src/ingest/device-events.js'
import { createLogger } from '../../src/observability/logger.js'
import { GatewayMetrics } from '../../src/observability/metrics.js'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import type { DeviceEvent } from '../../src/registry/types.js'
import { SqliteEventStream } from '../../src/stream/embedded/sqlite-event-stream.js'
import type { EventStream } from '../../src/stream/types.js'
import { connectDevice, metricSamples, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

/**
 * Lifecycle events go through the registry's outbox (written with the change), so a stream that
 * refuses writes delays them but loses none, and no device's sequence shows a gap.
 */

/** Another connection holds SQLite's write lock on the stream file until released. */
function holdWriteLock(file: string): () => void {
  const db = new BetterSqlite3(file)
  db.exec('BEGIN IMMEDIATE')
  return () => {
    db.exec('ROLLBACK')
    db.close()
  }
}

async function topicEvents(stream: EventStream, topic = 'device-events'): Promise<DeviceEvent[]> {
  const out: DeviceEvent[] = []
  for (const p of await stream.offsets(topic)) {
    for (let offset = p.low; offset < p.high; ) {
      const batch = await stream.read(topic, p.partition, offset, 1000)
      if (batch.length === 0) break
      for (const r of batch) {
        const event = JSON.parse(r.value.toString()) as DeviceEvent
        expect(r.headers['event-type']).toBe(event.type)
        expect(r.key).toBe(event.deviceId)
        out.push(event)
      }
      offset = batch[batch.length - 1]!.offset + 1
    }
  }
  return out
}

describe('device events while the stream refuses writes (gateway)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-outbox-'))
  let gw: TestGateway | null = null
  afterAll(async () => {
    await gw?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('keeps every connect and disconnect in the outbox, then writes them all in order with no gap', async () => {
    gw = await startTestGateway({ 'stream.embedded.busyTimeoutMs': '20' }, dir)
    const { registry } = gw.gateway
    const devices = [await registry.create({ deviceId: 'out-1' }), await registry.create({ deviceId: 'out-2' })]
    await waitFor(async () => (await registry.pendingEventCount()) === 0, 10_000, 'created events written')
    const release = holdWriteLock(join(dir, 'stream.db'))
    try {
      for (let round = 0; round < 3; round++) {
        for (const d of devices) {
          const client = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
          await client.endAsync()
        }
      }
      await waitFor(async () => (await registry.pendingEventCount()) === 12, 10_000, '12 events in the outbox')
      for (const d of devices) expect((await registry.get(d.deviceId))?.connectionSeq).toBe(6)
      const samples = await metricSamples(gw)
      expect(samples.get('streamgate_device_events_pending')).toBe(12)
      expect(samples.get('streamgate_device_events_total{type="connected"}') ?? 0).toBe(0)
      expect((await topicEvents(gw.gateway.stream)).map((e) => e.type)).toEqual(['created', 'created'])
    } finally {
      release()
    }
    // No change needed to get them written: the writer retries by itself.
    await waitFor(async () => (await registry.pendingEventCount()) === 0, 15_000, 'outbox written after the outage')
    const events = await topicEvents(gw.gateway.stream)
    for (const d of devices) {
      const mine = events.filter((e) => e.deviceId === d.deviceId)
      expect(mine.map((e) => e.type)).toEqual(['created', ...Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? 'connected' : 'disconnected'))])
      expect(mine.slice(1).map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6])
      expect(mine[2]).toMatchObject({ reason: 'client-disconnect', transport: 'tcp', authMethod: expect.any(String), connectionId: expect.any(String) })
    }
    const after = await metricSamples(gw)
    expect(after.get('streamgate_device_events_total{type="connected"}')).toBe(6)
    expect(after.get('streamgate_device_events_total{type="disconnected"}')).toBe(6)
    expect(after.get('streamgate_device_events_pending')).toBe(0)
  })

  it('writes at start what changed while no gateway ran (CLI), and disconnects devices a dead gateway left connected', async () => {
    await gw!.stop()
    gw = null
    const cli = new SqliteDeviceRegistry({ file: join(dir, 'registry.db') })
    await cli.start()
    await cli.create({ deviceId: 'offline-new' })
    await cli.remove('out-2')
    // As a gateway killed while out-1 was connected leaves it.
    expect(await cli.recordConnection('out-1', 'connected', new Date(), { connectionId: 'c-dead', transport: 'tcp' })).toBe(7)
    await cli.stop()
    gw = await startTestGateway({}, dir)
    const started = gw
    const events = await waitFor(async () => {
      const all = await topicEvents(started.gateway.stream)
      return all.some((e) => e.reason === 'gateway-restart') && all.some((e) => e.deviceId === 'offline-new') ? all : null
    }, 10_000, 'events of the offline changes')
    expect(events.filter((e) => e.deviceId === 'offline-new').map((e) => e.type)).toEqual(['created'])
    expect(events.filter((e) => e.deviceId === 'out-2').map((e) => e.type).at(-1)).toBe('deleted')
    expect(events.filter((e) => e.deviceId === 'out-1').slice(-2)).toMatchObject([
      { type: 'connected', sequence: 7, connectionId: 'c-dead' },
      { type: 'disconnected', sequence: 8, reason: 'gateway-restart' },
    ])
  })
})

describe('DeviceEventWriter', () => {
  let dir: string
  let registry: SqliteDeviceRegistry
  let stream: SqliteEventStream
  let writer: DeviceEventWriter | null

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-writer-'))
    registry = new SqliteDeviceRegistry({ file: join(dir, 'registry.db') })
    await registry.start()
    stream = new SqliteEventStream({
      file: join(dir, 'stream.db'), synchronous: 'NORMAL', maxBatchRecords: 1000, lingerMs: 0, retentionHours: 0,
      retentionMaxMiBPerPartition: 0, retentionIntervalSeconds: 0, pollIntervalMs: 50, busyTimeoutMs: 20,
    })
    await stream.start([{ name: 'device-events', partitions: 4 }])
    writer = null
  })
  afterEach(async () => {
    await writer?.drain()
    await stream.stop()
    await registry.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const make = (): DeviceEventWriter =>
    (writer = new DeviceEventWriter(stream, 'device-events', registry, new GatewayMetrics({ defaultMetrics: false }), createLogger('silent'), { sweepMs: 50, retryMinMs: 20, retryMaxMs: 100 }))

  it('writes rows whose claim a dead writer left, once the claim lapses', async () => {
    await registry.create({ deviceId: 'w1' })
    await registry.create({ deviceId: 'w2' })
    // A writer claims w1's event for 300 ms and dies.
    expect((await registry.pendingEvents(1, 300)).map((p) => p.event.deviceId)).toEqual(['w1'])
    make().start()
    await waitFor(async () => (await topicEvents(stream)).length === 1, 5000, "w2's event")
    await waitFor(async () => (await topicEvents(stream)).length === 2, 5000, "w1's event after the lapse")
    expect((await topicEvents(stream)).map((e) => e.deviceId).sort()).toEqual(['w1', 'w2'])
    expect(await registry.pendingEventCount()).toBe(0)
  })

  it('writes connects recorded over many turns of the event loop in a few appends, in order (a connect storm)', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `storm-${i}`)
    for (const id of ids) await registry.create({ deviceId: id })
    const w = (writer = new DeviceEventWriter(stream, 'device-events', registry, new GatewayMetrics({ defaultMetrics: false }), createLogger('silent'), { sweepMs: 60_000, coalesceMs: 200 }))
    w.start()
    await waitFor(async () => (await topicEvents(stream)).length === ids.length, 5000, 'created events written')
    // Count the appends from here on (the real stream does the writing).
    const appends: number[] = []
    const append = stream.append.bind(stream)
    stream.append = (topic, records) => {
      appends.push(records.length)
      return append(topic, records)
    }
    // One connect per turn, as a storm brings them.
    for (const deviceId of ids) {
      w.connected({ deviceId, connectionId: `c-${deviceId}`, remoteAddress: '127.0.0.1', transport: 'tcp', authMethod: 'sas-primary', connectedAt: Date.now(), isClosed: () => false })
      await new Promise((r) => setImmediate(r))
    }
    await waitFor(async () => (await topicEvents(stream)).length === 2 * ids.length, 5000, 'connected events written')
    expect(appends.reduce((a, b) => a + b, 0)).toBe(ids.length)
    // One append per event before the events of a moment were gathered.
    expect(appends.length).toBeLessThanOrEqual(3)
    const connected = (await topicEvents(stream)).filter((e) => e.type === 'connected')
    expect(connected.map((e) => e.deviceId).sort()).toEqual([...ids].sort())
    expect(await registry.pendingEventCount()).toBe(0)
  })

  it('drain at shutdown returns while the stream is down and leaves the events for the next start', async () => {
    const w = make()
    w.start()
    await registry.create({ deviceId: 'kept' })
    const release = holdWriteLock(join(dir, 'stream.db'))
    try {
      await registry.patchTwin('kept', 'reported', { fw: '2' }, { maxBytes: 1024, maxDepth: 10 })
      await w.flush()
      await w.drain()
      expect(await registry.pendingEventCount()).toBeGreaterThanOrEqual(1)
    } finally {
      release()
    }
    // A new writer (the next start) writes them, in order.
    make().start()
    await waitFor(async () => (await registry.pendingEventCount()) === 0, 5000, 'outbox empty')
    expect((await topicEvents(stream)).map((e) => e.type)).toEqual(['created', 'twin-reported'])
  })
})
