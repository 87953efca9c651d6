import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { partitionForKey } from '../../src/stream/partitioner.js'
import type { AppendResult, ConsumeOptions, Consumer, EventStream, OutgoingRecord, StoredRecord } from '../../src/stream/types.js'

/**
 * The EventStream contract: every backend (embedded SQLite, Kafka through kafkajs) runs this suite
 * unchanged. It uses only the EventStream interface, gives every test its own topics, and waits
 * for asynchronous effects by polling, because a remote broker makes appended records and group
 * assignments visible some time after the call that caused them.
 *
 * The factory returns a stream (started or not; the suite calls start([]) itself) and a cleanup
 * that stops it and removes whatever the backend created. Consumers a test starts are stopped by
 * the suite before cleanup.
 *
 * Expectations beyond the interface's comments:
 *  - consume() resolves once the consumer has its starting positions, so a 'latest' consumer gets
 *    every record appended after consume() resolved;
 *  - a freshly created topic's partitions start at offset 0.
 */
export interface EventStreamFixture {
  stream: EventStream
  cleanup: () => Promise<void>
}

const WAIT_MS = 20_000

export function eventStreamContract(name: string, factory: () => Promise<EventStreamFixture>): void {
  describe(`EventStream contract: ${name}`, () => {
    let fixture: EventStreamFixture
    let stream: EventStream
    let consumers: Consumer[] = []

    beforeEach(async () => {
      fixture = await factory()
      stream = fixture.stream
      await stream.start([])
    })

    afterEach(async () => {
      await Promise.all(consumers.map((c) => c.stop()))
      consumers = []
      await fixture.cleanup()
    })

    async function newTopic(partitions: number): Promise<string> {
      const topic = uniqueTopic()
      await stream.ensureTopics([{ name: topic, partitions }])
      return topic
    }

    async function consume(options: ConsumeOptions): Promise<Consumer> {
      const consumer = await stream.consume(options)
      consumers.push(consumer)
      return consumer
    }

    it('round-trips key, value (text and binary), headers and timestamp', async () => {
      const topic = await newTopic(3)
      const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      const records: OutgoingRecord[] = [
        { key: 'dev-a', value: Buffer.from('{"temp":21.5}'), headers: { 'content-type': 'application/json', 'x-prop': 'ä=1&b' }, timestamp: 1_700_000_000_123 },
        { key: 'dev-b', value: binary, headers: { 'device-id': 'dev-b' } },
        { key: null, value: Buffer.from('no key') },
      ]
      const before = Date.now()
      const results = await stream.append(topic, records)
      const after = Date.now()
      expect(results).toHaveLength(3)

      const stored = await Promise.all(results.map((r) => readOne(stream, r)))
      for (let i = 0; i < records.length; i++) {
        expect(stored[i]!.topic).toBe(topic)
        expect(stored[i]!.partition).toBe(results[i]!.partition)
        expect(stored[i]!.offset).toBe(results[i]!.offset)
        expect(stored[i]!.key).toBe(records[i]!.key)
        expect(stored[i]!.value.equals(records[i]!.value)).toBe(true)
        expect(stored[i]!.headers).toEqual(records[i]!.headers ?? {})
      }
      expect(stored[0]!.timestamp).toBe(1_700_000_000_123)
      expect(stored[1]!.timestamp).toBeGreaterThanOrEqual(before - 1000)
      expect(stored[1]!.timestamp).toBeLessThanOrEqual(after + 1000)
    })

    it('puts a key always on partitionForKey(key, partitions)', async () => {
      const topic = await newTopic(5)
      expect(await stream.partitionCount(topic)).toBe(5)
      const keys = Array.from({ length: 40 }, (_, i) => `device-${i}-${randomBytes(3).toString('hex')}`)
      for (let round = 0; round < 3; round++) {
        const results = await stream.append(topic, keys.map((key) => ({ key, value: Buffer.from(`${key}/${round}`) })))
        results.forEach((r, i) => expect(r.partition, keys[i]).toBe(partitionForKey(keys[i]!, 5)))
      }
    })

    it('keeps per-partition offsets gap-free and per-key order under concurrent appends', async () => {
      const topic = await newTopic(4)
      const keys = Array.from({ length: 20 }, (_, i) => `dev-${i}`)
      const seq = new Map<string, number>()
      // Issued without awaiting in between: per key, call order must become offset order.
      const calls = Array.from({ length: 400 }, (_, i) => {
        const key = keys[i % keys.length]!
        const n = seq.get(key) ?? 0
        seq.set(key, n + 1)
        return stream.append(topic, [{ key, value: Buffer.from(`${key}:${n}`) }])
      })
      const results = (await Promise.all(calls)).map((r) => r[0]!)
      expectContiguousFromZero(results, 4)

      const all = await readAll(stream, topic, 4, 400)
      const seen = new Map<string, number>()
      for (const record of all) {
        const [key, n] = record.value.toString().split(':') as [string, string]
        expect(record.key).toBe(key)
        expect(Number(n), `order of ${key}`).toBe(seen.get(key) ?? 0)
        seen.set(key, Number(n) + 1)
      }
      expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(400)
    })

    it('resolves many concurrent multi-record calls with the offsets their records got, in input order', async () => {
      const topic = await newTopic(3)
      const inputs: OutgoingRecord[][] = Array.from({ length: 300 }, (_, call) =>
        Array.from({ length: 1 + (call % 4) }, (_, j) => ({
          key: (call + j) % 5 === 0 ? null : `k${(call * 7 + j) % 37}`,
          value: Buffer.from(`call ${call} record ${j} ${randomBytes(4).toString('hex')}`),
        })),
      )
      const results = await Promise.all(inputs.map((records) => stream.append(topic, records)))
      const flat: Array<[OutgoingRecord, AppendResult]> = []
      results.forEach((r, call) => {
        expect(r).toHaveLength(inputs[call]!.length)
        r.forEach((result, j) => flat.push([inputs[call]![j]!, result]))
      })
      expectContiguousFromZero(flat.map(([, r]) => r), 3)

      const byPosition = new Map((await readAll(stream, topic, 3, flat.length)).map((s) => [`${s.partition}/${s.offset}`, s]))
      for (const [record, result] of flat) {
        expect(result.topic).toBe(topic)
        if (record.key !== null) expect(result.partition).toBe(partitionForKey(record.key, 3))
        const stored = byPosition.get(`${result.partition}/${result.offset}`)
        expect(stored?.value.toString()).toBe(record.value.toString())
      }
    })

    it('reports low and high watermarks with offsets()', async () => {
      const topic = await newTopic(2)
      expect(await stream.offsets(topic)).toEqual([
        { partition: 0, low: 0, high: 0 },
        { partition: 1, low: 0, high: 0 },
      ])
      const [first] = await stream.append(topic, Array.from({ length: 5 }, (_, i) => ({ key: 'same-key', value: Buffer.from(String(i)) })))
      const p = first!.partition
      await waitFor(async () => (await stream.offsets(topic))[p]!.high === 5, 'high watermark 5')
      const offsets = await stream.offsets(topic)
      expect(offsets[p]).toEqual({ partition: p, low: 0, high: 5 })
      expect(offsets[1 - p]).toEqual({ partition: 1 - p, low: 0, high: 0 })
    })

    it('consumes from earliest: existing then new records, in offset order per partition', async () => {
      const topic = await newTopic(3)
      await stream.append(topic, values(10, 'old'))
      const got = collector()
      await consume({ topic, from: 'earliest', handler: got.handler })
      await waitFor(() => got.records.length >= 10, '10 old records')
      await stream.append(topic, values(5, 'new'))
      await waitFor(() => got.records.length >= 15, '15 records')
      await settle()
      expect(got.records).toHaveLength(15)
      expectOrderedPerPartition(got.records)
      expect(new Set(got.records.map((r) => r.value.toString()))).toEqual(new Set([...names(10, 'old'), ...names(5, 'new')]))
    })

    it('consumes from latest: only records appended after consume() resolved', async () => {
      const topic = await newTopic(2)
      await stream.append(topic, values(5, 'before'))
      const got = collector()
      await consume({ topic, from: 'latest', handler: got.handler })
      await stream.append(topic, values(3, 'after'))
      await waitFor(() => got.records.length >= 3, '3 new records')
      await settle()
      expect(got.records.map((r) => r.value.toString()).sort()).toEqual(names(3, 'after').sort())
    })

    it('resumes a consumer group after the committed offset: nothing twice, nothing lost', async () => {
      const topic = await newTopic(3)
      const group = `g-${randomBytes(4).toString('hex')}`
      await stream.append(topic, values(30, 'a'))
      const first = collector()
      const a = await consume({ topic, group, from: 'earliest', maxBatch: 4, handler: first.handler })
      await waitFor(() => first.records.length >= 8, 'first consumer progress')
      await a.stop()
      const handledByFirst = first.records.length

      await stream.append(topic, values(10, 'b'))
      const second = collector()
      await consume({ topic, group, from: 'earliest', maxBatch: 4, handler: second.handler })
      await waitFor(() => handledByFirst + second.records.length >= 40, 'all 40 records')
      await settle()
      expect(first.records).toHaveLength(handledByFirst)
      expectExactlyOnce([...first.records, ...second.records], [...names(30, 'a'), ...names(10, 'b')])
    })

    it('reports a group\'s committed offsets (none before it commits), which with offsets() give its lag', async () => {
      const topic = await newTopic(2)
      const group = `g-${randomBytes(4).toString('hex')}`
      expect(await stream.committedOffsets(group, topic)).toEqual([])
      await stream.append(topic, values(20, 'c'))
      const seen = collector()
      const consumer = await consume({ topic, group, from: 'earliest', maxBatch: 100, handler: seen.handler })
      await waitFor(() => seen.records.length >= 20, 'all 20 records')
      await consumer.stop()
      const highs = new Map((await stream.offsets(topic)).map((p) => [p.partition, p.high]))
      const committed = await stream.committedOffsets(group, topic)
      // Every partition that held records has its end committed: lag 0.
      for (const [partition, high] of highs) {
        if (high > 0) expect(committed).toContainEqual({ partition, offset: high })
      }
      await stream.append(topic, values(5, 'd'))
      const after = new Map((await stream.offsets(topic)).map((p) => [p.partition, p.high]))
      const lag = committed.reduce((sum, c) => sum + after.get(c.partition)! - c.offset, 0)
      expect(lag).toBe(5)
    })

    it('shares a group between two consumers: every record exactly once', async () => {
      const topic = await newTopic(4)
      const group = `g-${randomBytes(4).toString('hex')}`
      const one = collector()
      const two = collector()
      await consume({ topic, group, from: 'earliest', maxBatch: 10, handler: one.handler })
      await consume({ topic, group, from: 'earliest', maxBatch: 10, handler: two.handler })
      // Appended in waves so that records arrive while the group (re)balances.
      for (let wave = 0; wave < 4; wave++) {
        await stream.append(topic, values(50, `w${wave}`))
        await sleep(150)
      }
      await waitFor(() => one.records.length + two.records.length >= 200, 'all 200 records')
      await settle()
      const expected = [0, 1, 2, 3].flatMap((wave) => names(50, `w${wave}`))
      expectExactlyOnce([...one.records, ...two.records], expected)
    })

    it('stops a consumer whose handler rejects, reports it, and does not commit that batch', async () => {
      const topic = await newTopic(1)
      const group = `g-${randomBytes(4).toString('hex')}`
      await stream.append(topic, values(3, 'x'))
      const errors: Error[] = []
      let calls = 0
      await consume({
        topic,
        group,
        from: 'earliest',
        handler: async () => {
          calls++
          throw new Error('handler failed')
        },
        onError: (err) => errors.push(err),
      })
      await waitFor(() => errors.length === 1, 'onError')
      await settle()
      expect(calls).toBe(1)
      expect(errors[0]!.message).toContain('handler failed')

      // 'earliest' only applies without a committed offset; had the failed batch been committed,
      // this consumer would get nothing.
      const again = collector()
      await consume({ topic, group, from: 'earliest', handler: again.handler })
      await waitFor(() => again.records.length >= 3, 'uncommitted batch redelivered')
      expect(again.records.map((r) => r.value.toString())).toEqual(names(3, 'x'))
    })

    it('ensureTopics is idempotent and keeps an existing partition count', async () => {
      const topic = uniqueTopic()
      await stream.ensureTopics([{ name: topic, partitions: 3 }])
      await stream.ensureTopics([{ name: topic, partitions: 3 }])
      await stream.ensureTopics([{ name: topic, partitions: 6 }])
      expect(await stream.partitionCount(topic)).toBe(3)
      await stream.start([{ name: topic, partitions: 1 }])
      expect(await stream.partitionCount(topic)).toBe(3)
    })

    it('rejects an unknown topic with E_STREAM_TOPIC_UNKNOWN', async () => {
      const topic = uniqueTopic()
      const code = { code: 'E_STREAM_TOPIC_UNKNOWN' }
      await expect(stream.append(topic, [{ key: 'k', value: Buffer.from('v') }])).rejects.toMatchObject(code)
      await expect(stream.partitionCount(topic)).rejects.toMatchObject(code)
      await expect(stream.offsets(topic)).rejects.toMatchObject(code)
      await expect(stream.read(topic, 0, 0, 10)).rejects.toMatchObject(code)
      await expect(stream.consume({ topic, handler: async () => undefined })).rejects.toMatchObject(code)
    })

    it('can be stopped twice, and append after stop rejects with E_STREAM_CLOSED', async () => {
      const topic = await newTopic(1)
      await stream.stop()
      await stream.stop()
      expect(stream.health().ready).toBe(false)
      await expect(stream.append(topic, [{ key: 'k', value: Buffer.from('v') }])).rejects.toMatchObject({ code: 'E_STREAM_CLOSED' })
    })
  })
}

let topicCounter = 0

/** Kafka-legal, unique across runs and parallel workers. */
export function uniqueTopic(): string {
  return `contract-${Date.now().toString(36)}-${process.pid}-${topicCounter++}-${randomBytes(3).toString('hex')}`
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Poll until `condition` holds; fails the test with `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

/** Time for a wrong extra delivery (a duplicate, an old record) to show up before asserting. */
function settle(): Promise<void> {
  return sleep(300)
}

export function collector(): { records: StoredRecord[]; handler: (batch: StoredRecord[]) => Promise<void> } {
  const records: StoredRecord[] = []
  return {
    records,
    handler: async (batch) => {
      records.push(...batch)
    },
  }
}

function names(n: number, prefix: string): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${i}`)
}

/** n records with distinct keys (so they spread over partitions) and values `${prefix}-${i}`. */
function values(n: number, prefix: string): OutgoingRecord[] {
  return names(n, prefix).map((value, i) => ({ key: `key-${prefix}-${i}`, value: Buffer.from(value) }))
}

async function readOne(stream: EventStream, at: AppendResult): Promise<StoredRecord> {
  let found: StoredRecord | undefined
  await waitFor(async () => {
    found = (await stream.read(at.topic, at.partition, at.offset, 1))[0]
    return found !== undefined
  }, `record ${at.partition}/${at.offset}`)
  expect(found!.offset).toBe(at.offset)
  return found!
}

/** Every record of a topic, waiting until `expected` are visible. */
async function readAll(stream: EventStream, topic: string, partitions: number, expected: number): Promise<StoredRecord[]> {
  let all: StoredRecord[] = []
  await waitFor(async () => {
    all = []
    for (let p = 0; p < partitions; p++) {
      for (let offset = 0; ; ) {
        const batch = await stream.read(topic, p, offset, 1000)
        if (batch.length === 0) break
        all.push(...batch)
        offset = batch[batch.length - 1]!.offset + 1
      }
    }
    return all.length >= expected
  }, `${expected} records readable`)
  expect(all).toHaveLength(expected)
  return all
}

function expectContiguousFromZero(results: AppendResult[], partitions: number): void {
  for (let p = 0; p < partitions; p++) {
    const offsets = results.filter((r) => r.partition === p).map((r) => r.offset).sort((a, b) => a - b)
    expect(offsets, `partition ${p}`).toEqual(offsets.map((_, i) => i))
  }
}

function expectOrderedPerPartition(records: StoredRecord[]): void {
  const last = new Map<number, number>()
  for (const r of records) {
    const previous = last.get(r.partition)
    if (previous !== undefined) expect(r.offset, `partition ${r.partition}`).toBe(previous + 1)
    last.set(r.partition, r.offset)
  }
}

function expectExactlyOnce(records: StoredRecord[], expectedValues: string[]): void {
  const positions = records.map((r) => `${r.partition}/${r.offset}`)
  expect(new Set(positions).size, 'no record delivered twice').toBe(positions.length)
  expect(records.map((r) => r.value.toString()).sort()).toEqual([...expectedValues].sort())
}
