import { Kafka, logLevel } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KafkaEventStream } from '../../src/stream/kafka/kafka-event-stream.js'
import { ThreadedKafkaAppender } from '../../src/stream/kafka/producer-thread.js'
import type { OutgoingRecord } from '../../src/stream/types.js'
import { kafkaOptions, type KafkaEventStreamOptions } from '../../src/stream/kafka/options.js'
import { collector, eventStreamContract, sleep, uniqueTopic, waitFor } from './event-stream.contract.js'
import { kafkaForSuite, kafkaTestsEnabled, START_TIMEOUT_MS } from '../helpers/kafka.js'

const enabled = kafkaTestsEnabled('KafkaEventStream contract')

let brokers: string[] = []
let release: () => Promise<void> = async () => undefined

/** Test settings: quick group formation and fetches; everything else as configured by default. */
function options(overrides: Partial<KafkaEventStreamOptions> = {}): KafkaEventStreamOptions {
  return kafkaOptions({ brokers, sessionTimeoutMs: 6000, heartbeatIntervalMs: 300, fetchMaxWaitMs: 100, provisionRetryMs: 300, ...overrides })
}

/** Deletes the topics this process created (the contract names them with our pid). */
async function deleteOurTopics(): Promise<void> {
  const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin()
  await admin.connect()
  try {
    const ours = (await admin.listTopics()).filter((t) => t.includes(`-${process.pid}-`))
    if (ours.length > 0) await admin.deleteTopics({ topics: ours })
  } finally {
    await admin.disconnect()
  }
}

describe.skipIf(!enabled)('KafkaEventStream on a real broker', () => {
  beforeAll(async () => {
    ;({ brokers, release } = await kafkaForSuite())
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    if (brokers.length > 0) await deleteOurTopics().catch(() => undefined)
    await release()
  }, 60_000)

  eventStreamContract('KafkaEventStream', async () => {
    const stream = new KafkaEventStream(options())
    return { stream, cleanup: () => stream.stop() }
  })

  describe('KafkaEventStream (Kafka only)', () => {
    it('closes every socket at stop after concurrent first reads of several partitions', async () => {
      // kafkajs opens its Fetch connection lazily; concurrent first fetches each opened one, and
      // the ones it lost track of kept a stopped gateway's process alive (fetcher.ts leadersFor).
      const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
      const before = sockets()
      const stream = new KafkaEventStream(options())
      const topic = uniqueTopic()
      await stream.start([{ name: topic, partitions: 4 }])
      await stream.append(topic, [0, 1, 2, 3].map((i) => ({ key: `k${i}`, value: Buffer.from(String(i)) })))
      const reads = await Promise.all([0, 1, 2, 3].map((p) => stream.read(topic, p, 0, 10)))
      expect(reads.flat()).toHaveLength(4)
      await stream.stop()
      await waitFor(() => sockets() <= before, 'sockets closed after stop')
      expect(sockets()).toBeLessThanOrEqual(before)
    })

    it("starts a new group at 'latest' as of consume(), and a partition-list group resumes after its commits", async () => {
      const stream = new KafkaEventStream(options())
      try {
        const topic = uniqueTopic()
        await stream.start([{ name: topic, partitions: 2 }])
        const before = [0, 1, 2].map((i) => ({ key: `k${i}`, value: Buffer.from(`before-${i}`) }))
        await stream.append(topic, before)
        const latest = collector()
        const group = `g-latest-${process.pid}-${Date.now()}`
        const c1 = await stream.consume({ topic, group, from: 'latest', handler: latest.handler })
        await stream.append(topic, [{ key: 'k9', value: Buffer.from('after') }])
        await waitFor(() => latest.records.length >= 1, 'the record appended after consume()')
        await sleep(300)
        expect(latest.records.map((r) => r.value.toString())).toEqual(['after'])
        await c1.stop()

        // Kafka's assign(): no group membership, offsets still committed under the group.
        const assigned = `g-assigned-${process.pid}-${Date.now()}`
        const first = collector()
        const c2 = await stream.consume({ topic, group: assigned, partitions: [0, 1], from: 'earliest', handler: first.handler })
        await waitFor(() => first.records.length >= 4, 'all 4 records')
        await c2.stop()
        await stream.append(topic, [{ key: 'k8', value: Buffer.from('later') }])
        const second = collector()
        const c3 = await stream.consume({ topic, group: assigned, partitions: [0, 1], from: 'earliest', handler: second.handler })
        await waitFor(() => second.records.length >= 1, 'the new record')
        await sleep(300)
        await c3.stop()
        expect(second.records.map((r) => r.value.toString())).toEqual(['later'])
      } finally {
        await stream.stop()
      }
    })

    it('reports a partition-count mismatch of an existing topic without changing it', async () => {
      const stream = new KafkaEventStream(options())
      try {
        const topic = uniqueTopic()
        await stream.start([{ name: topic, partitions: 2 }])
        // start() waits 5 s at most for the first provisioning; a loaded broker may need longer.
        await waitFor(() => stream.health().ready, 'provisioned')
        expect(stream.health()).toEqual({ ready: true })
        const again = new KafkaEventStream(options())
        try {
          await again.start([{ name: topic, partitions: 4 }])
          await waitFor(() => again.health().ready, 'provisioned')
          expect(await again.partitionCount(topic)).toBe(2)
          expect(again.health().ready).toBe(true)
          expect(again.health().detail).toContain(`Kafka topic ${topic} has 2 partitions, configured 4`)
        } finally {
          await again.stop()
        }
      } finally {
        await stream.stop()
      }
    })

    it('checks the replication factor of existing topics, and says why a topic cannot be created', async () => {
      const topic = uniqueTopic()
      const first = new KafkaEventStream(options())
      await first.start([{ name: topic, partitions: 1 }])
      await first.stop()

      const existing = new KafkaEventStream(options({ replicationFactor: 2 }))
      try {
        await existing.start([{ name: topic, partitions: 1 }])
        await waitFor(() => existing.health().ready, 'provisioned')
        expect(existing.health()).toEqual({ ready: true, detail: `Kafka topic ${topic} has replication factor 1, configured 2 (left unchanged)` })
      } finally {
        await existing.stop()
      }

      // One broker cannot hold two replicas of a new topic: not ready, and health() says why.
      const missing = new KafkaEventStream(options({ replicationFactor: 2 }))
      try {
        const name = uniqueTopic()
        await missing.start([{ name, partitions: 1 }])
        await waitFor(() => (missing.health().detail ?? '').includes(`${name}: Replication-factor is invalid`), 'the cause in health()')
        expect(missing.health().ready).toBe(false)
      } finally {
        await missing.stop()
      }
    })

    it('starts without a reachable broker, is not ready, and fails appends fast with E_STREAM_UNAVAILABLE', async () => {
      const stream = new KafkaEventStream(options({ brokers: ['127.0.0.1:1'], appendTimeoutMs: 2000, connectionTimeoutMs: 500 }))
      try {
        const started = Date.now()
        await stream.start([{ name: 'never-there', partitions: 1 }])
        expect(Date.now() - started).toBeLessThan(10_000)
        const health = stream.health()
        expect(health.ready).toBe(false)
        expect(health.detail).toContain('not provisioned')
        const t0 = Date.now()
        await expect(stream.append('never-there', [{ key: 'k', value: Buffer.from('v') }])).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
        await expect(stream.append('other', [{ key: 'k', value: Buffer.from('v') }])).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
        expect(Date.now() - t0).toBeLessThan(10_000)
      } finally {
        await stream.stop()
      }
    })
  })

  describe('the produce path on its thread and on the event loop', () => {
    /** Every record of `topic` as [key, value, headers], read back from partition 0. */
    async function readAll(stream: KafkaEventStream, topic: string, count: number): Promise<Array<[string | null, string, Record<string, string>]>> {
      const got: Array<[string | null, string, Record<string, string>]> = []
      await waitFor(async () => {
        const batch = await stream.read(topic, 0, got.length, 100)
        for (const r of batch) got.push([r.key, r.value.toString(), r.headers])
        return got.length >= count
      }, `${count} records read back`)
      return got
    }

    for (const producerThread of [true, false]) {
      it(`stores what was appended at the offsets the call was given (producerThread: ${producerThread})`, async () => {
        const stream = new KafkaEventStream(options({ producerThread }))
        try {
          const topic = uniqueTopic()
          await stream.start([{ name: topic, partitions: 1 }])
          const t = 1_700_000_000_000
          const records: OutgoingRecord[] = [
            // The telemetry shape goes over as a flag (record-batch.ts); the others as JSON text.
            { key: 'dev-1', value: Buffer.from('a'), headers: { 'device-id': 'dev-1', 'enqueued-time': String(t) }, timestamp: t },
            { key: 'dev-2', value: Buffer.from('b'), headers: { 'device-id': 'dev-2', 'message-id': 'ünï' }, timestamp: t },
            { key: null, value: Buffer.from('c') },
          ]
          const placed = await stream.append(topic, records)
          expect(placed.map((p) => [p.partition, p.offset])).toEqual([
            [0, 0],
            [0, 1],
            [0, 2],
          ])
          expect(await readAll(stream, topic, 3)).toEqual([
            ['dev-1', 'a', { 'device-id': 'dev-1', 'enqueued-time': String(t) }],
            ['dev-2', 'b', { 'device-id': 'dev-2', 'message-id': 'ünï' }],
            [null, 'c', {}],
          ])
        } finally {
          await stream.stop()
        }
      })
    }

    it('fails the calls a dead producer thread held with E_STREAM_UNAVAILABLE, then starts a new one', async () => {
      const appender = new ThreadedKafkaAppender(options())
      const stream = new KafkaEventStream(options())
      try {
        const topic = uniqueTopic()
        await stream.start([{ name: topic, partitions: 1 }])
        expect(await appender.append(topic, 1, [{ key: 'k', value: Buffer.from('first') }])).toEqual([{ topic, partition: 0, offset: 0 }])
        const held = appender.append(topic, 1, [{ key: 'k', value: Buffer.from('held') }])
        // Posted on the next turn; the thread dies right after it has the call.
        await new Promise((resolve) => setImmediate(resolve))
        await (appender as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate()
        await expect(held).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE', message: expect.stringContaining('producer thread exited') })
        expect(appender.lastError).toContain('producer thread exited')
        // A cluster check that succeeded after the loss clears it even with no thread (no traffic since).
        appender.clearErrorBefore(Date.now() + 1)
        expect(appender.lastError).toBeNull()
        const again = await appender.append(topic, 1, [{ key: 'k', value: Buffer.from('after') }])
        expect(again[0]!.offset).toBeGreaterThanOrEqual(1)
        const values = (await readAll(stream, topic, again[0]!.offset + 1)).map(([, v]) => v)
        // The held record may or may not have reached Kafka before the thread died; never lost after an ack, never reordered.
        expect(values[0]).toBe('first')
        expect(values.at(-1)).toBe('after')
      } finally {
        await appender.close()
        await stream.stop()
      }
    })

    it('refuses a record that is not storable with E_BAD_REQUEST, on the thread path too', async () => {
      const appender = new ThreadedKafkaAppender(options())
      try {
        await expect(appender.append('t', 1, [{ key: 'k', value: 'text' as unknown as Buffer }])).rejects.toMatchObject({ code: 'E_BAD_REQUEST' })
      } finally {
        await appender.close()
      }
    })
  })
})
