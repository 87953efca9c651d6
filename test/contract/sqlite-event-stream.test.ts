import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SqliteEventStream, type SqliteEventStreamOptions } from '../../src/stream/embedded/sqlite-event-stream.js'
import type { Consumer, StoredRecord } from '../../src/stream/types.js'
import { collector, eventStreamContract, sleep, uniqueTopic, waitFor } from './event-stream.contract.js'

/** Test settings: no retention timer, fast polling and group heartbeats. */
function options(file: string, overrides: Partial<SqliteEventStreamOptions> = {}): SqliteEventStreamOptions {
  return {
    file,
    synchronous: 'NORMAL',
    maxBatchRecords: 2000,
    lingerMs: 0,
    retentionHours: 0,
    retentionMaxMiBPerPartition: 0,
    retentionIntervalSeconds: 0,
    pollIntervalMs: 50,
    heartbeatMs: 100,
    leaseMs: 1000,
    ...overrides,
  }
}

// Every test runs twice: commits on the event loop, and on the writer thread (the gateway's default).
for (const writerThread of [false, true]) {
  const mode = writerThread ? ' (writer and checkpoint threads)' : ''

  eventStreamContract(`SqliteEventStream${mode}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'streamgate-stream-'))
    const stream = new SqliteEventStream(options(join(dir, 'stream.db'), { writerThread, checkpointThread: writerThread }))
    return {
      stream,
      cleanup: async () => {
        await stream.stop()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  })

  describe(`SqliteEventStream (embedded only)${mode}`, () => {
    let dir: string
    let file: string
    let streams: SqliteEventStream[]
    let consumers: Consumer[]

    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'streamgate-stream-'))
      file = join(dir, 'stream.db')
      streams = []
      consumers = []
    })

    afterEach(async () => {
      await Promise.all(consumers.map((c) => c.stop()))
      await Promise.all(streams.map((s) => s.stop()))
      rmSync(dir, { recursive: true, force: true })
    })

    async function open(overrides: Partial<SqliteEventStreamOptions> = {}, topics = [{ name: 't', partitions: 1 }]): Promise<SqliteEventStream> {
      const stream = new SqliteEventStream(options(file, { writerThread, checkpointThread: writerThread, ...overrides }))
      streams.push(stream)
      await stream.start(topics)
      return stream
    }

    const value = (s: string): Buffer => Buffer.from(s)

    it('keeps records and continues offsets across stop and reopen', async () => {
      const first = await open({}, [{ name: 't', partitions: 2 }])
      const written = await first.append('t', Array.from({ length: 100 }, (_, i) => ({ key: `k${i % 7}`, value: value(`r${i}`), headers: { i: String(i) } })))
      const highs = await first.offsets('t')
      await first.stop()

      const second = await open({}, [{ name: 't', partitions: 5 }])
      expect(await second.partitionCount('t')).toBe(2)
      expect(await second.offsets('t')).toEqual(highs)
      for (const [i, r] of written.entries()) {
        const [stored] = await second.read('t', r.partition, r.offset, 1)
        expect(stored).toMatchObject({ key: `k${i % 7}`, headers: { i: String(i) } })
        expect(stored!.value.toString()).toBe(`r${i}`)
      }
      const [next] = await second.append('t', [{ key: 'k0', value: value('after reopen') }])
      expect(next!.offset).toBe(highs[next!.partition]!.high)
    })

    it('flushes queued appends on stop before closing', async () => {
      const stream = await open()
      const pending = stream.append('t', [{ key: 'k', value: value('queued') }])
      await stream.stop()
      await expect(pending).resolves.toEqual([{ topic: 't', partition: 0, offset: 0 }])
      const reopened = await open()
      expect((await reopened.read('t', 0, 0, 10)).map((r) => r.value.toString())).toEqual(['queued'])
    })

    it('writes concurrent appends in few transactions (group commit)', async () => {
      const stream = await open({ maxBatchRecords: 100 }, [{ name: 't', partitions: 4 }])
      const before = stream.stats().commits
      const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => stream.append('t', [{ key: `d${i}`, value: value(`v${i}`) }])))
      // 1000 single-record calls in one tick, at most 100 records per transaction: exactly 10 commits.
      expect(stream.stats().commits - before).toBe(10)
      expect(stream.stats()).toMatchObject({ records: 1000, failedCommits: 0, queuedRecords: 0 })
      expect(new Set(results.map(([r]) => `${r!.partition}/${r!.offset}`)).size).toBe(1000)
    })

    it('waits lingerMs for companions, and never splits one call over two transactions', async () => {
      const stream = await open({ lingerMs: 30, maxBatchRecords: 10 })
      const early = stream.append('t', [{ key: 'a', value: value('1') }])
      await sleep(5)
      const late = stream.append('t', [{ key: 'a', value: value('2') }])
      await Promise.all([early, late])
      expect(stream.stats().commits).toBe(1)

      const big = await stream.append('t', Array.from({ length: 25 }, (_, i) => ({ key: 'a', value: value(`b${i}`) })))
      expect(big.map((r) => r.offset)).toEqual(Array.from({ length: 25 }, (_, i) => i + 2))
      expect(stream.stats().commits).toBe(2)
    })

    it('round-trips an empty value and reads from below the low watermark', async () => {
      const stream = await open()
      await stream.append('t', [{ key: null, value: Buffer.alloc(0) }])
      const [stored] = await stream.read('t', 0, -5, 10)
      expect(stored!.value.length).toBe(0)
      expect(stored!.key).toBeNull()
      await expect(stream.read('t', 1, 0, 10)).rejects.toMatchObject({ code: 'E_BAD_REQUEST' })
    })

    it('deletes by age, moves the low watermark up and never reuses offsets', async () => {
      let clock = Date.UTC(2026, 0, 1)
      const stream = await open({ retentionHours: 1, now: () => clock })
      await stream.append('t', Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: value(`old${i}`) })))
      clock += 30 * 60_000
      await stream.append('t', Array.from({ length: 5 }, (_, i) => ({ key: 'k', value: value(`mid${i}`) })))
      clock += 45 * 60_000 // old records are 75 min old, mid ones 45 min

      expect(await stream.runRetention()).toMatchObject({ deletedRecords: 10 })
      expect(await stream.offsets('t')).toEqual([{ partition: 0, low: 10, high: 15 }])
      expect((await stream.read('t', 0, 0, 100)).map((r) => r.value.toString())).toEqual(Array.from({ length: 5 }, (_, i) => `mid${i}`))

      clock += 60 * 60_000
      await stream.runRetention()
      expect(await stream.offsets('t')).toEqual([{ partition: 0, low: 15, high: 15 }])
      await stream.stop()
      const reopened = await open({ retentionHours: 1, now: () => clock })
      const [next] = await reopened.append('t', [{ key: 'k', value: value('new') }])
      expect(next!.offset).toBe(15)
    })

    it('deletes the oldest records of a partition above the size limit', async () => {
      const stream = await open({ retentionMaxMiBPerPartition: 1 }, [{ name: 't', partitions: 2 }])
      const big = Buffer.alloc(100 * 1024, 7)
      const results = await stream.append('t', Array.from({ length: 30 }, () => ({ key: 'one-device', value: big })))
      const p = results[0]!.partition
      const size = big.length + Buffer.byteLength('one-device')

      const report = await stream.runRetention()
      const kept = Math.floor((1024 * 1024) / size)
      expect(report).toEqual({ deletedRecords: 30 - kept, deletedBytes: (30 - kept) * size })
      expect((await stream.offsets('t'))[p]).toEqual({ partition: p, low: 30 - kept, high: 30 })
      expect(await stream.read('t', p, 0, 100)).toHaveLength(kept)
      expect((await stream.runRetention()).deletedRecords).toBe(0)
    })

    it('rejects a failed commit with E_STREAM_UNAVAILABLE and leaves offsets where they were', async () => {
      const stream = await open({ busyTimeoutMs: 50 })
      await stream.append('t', [{ key: 'k', value: value('before') }])
      // Another connection holds the write lock past busy_timeout: the group commit cannot begin.
      const locker = new BetterSqlite3(file)
      locker.exec('BEGIN EXCLUSIVE')
      try {
        const failing = [stream.append('t', [{ key: 'k', value: value('lost-1') }]), stream.append('t', [{ key: 'k', value: value('lost-2') }])]
        for (const call of failing) await expect(call).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
        expect(stream.stats().failedCommits).toBe(1)
        expect(stream.health()).toMatchObject({ ready: true, detail: expect.stringContaining('locked') })
      } finally {
        locker.exec('COMMIT')
        locker.close()
      }
      const [after] = await stream.append('t', [{ key: 'k', value: value('after') }])
      expect(after!.offset).toBe(1)
      expect((await stream.read('t', 0, 0, 10)).map((r) => r.value.toString())).toEqual(['before', 'after'])
      expect(stream.health()).toEqual({ ready: true })
    })

    it('rolls back a transaction that fails half-way: every call in it rejects, offsets do not move', async () => {
      const stream = await open({}, [{ name: 't', partitions: 1 }])
      await stream.append('t', [{ key: 'k', value: value('before') }])
      // Another process adds a trigger that fails the INSERT of one particular record.
      const admin = new BetterSqlite3(file)
      admin.exec("CREATE TRIGGER fail_poison BEFORE INSERT ON records WHEN NEW.value = CAST('poison' AS BLOB) BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
      const good = stream.append('t', [{ key: 'k', value: value('good-1') }, { key: 'k', value: value('good-2') }])
      const bad = stream.append('t', [{ key: 'k', value: value('poison') }])
      await expect(good).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
      await expect(bad).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE', message: expect.stringContaining('injected failure') })
      admin.exec('DROP TRIGGER fail_poison')
      admin.close()

      expect(await stream.offsets('t')).toEqual([{ partition: 0, low: 0, high: 1 }])
      const [after] = await stream.append('t', [{ key: 'k', value: value('after') }])
      expect(after!.offset).toBe(1)
      expect((await stream.read('t', 0, 0, 10)).map((r) => r.value.toString())).toEqual(['before', 'after'])
    })

    it('keeps a group\'s "latest" start position when the partition moves to another member', async () => {
      const stream = await open({}, [{ name: 't', partitions: 2 }])
      await stream.append('t', [{ key: 'a', value: value('before') }])
      const first = await stream.consume({ topic: 't', group: 'g', from: 'latest', handler: async () => undefined })
      await first.stop()
      await stream.append('t', [{ key: 'a', value: value('while nobody ran') }])
      const got = collector()
      consumers.push(await stream.consume({ topic: 't', group: 'g', from: 'latest', handler: got.handler }))
      await waitFor(() => got.records.length === 1, 'record appended between the two members')
      expect(got.records[0]!.value.toString()).toBe('while nobody ran')
    })

    it('lets a second instance on the same file read and consume what the first writes', async () => {
      const writer = await open({}, [{ name: 't', partitions: 3 }])
      await writer.append('t', [{ key: 'a', value: value('one') }])
      const reader = await open({}, [])
      expect(await reader.partitionCount('t')).toBe(3)
      expect((await reader.offsets('t')).reduce((n, o) => n + o.high, 0)).toBe(1)

      const got = collector()
      consumers.push(await reader.consume({ topic: 't', from: 'earliest', handler: got.handler }))
      await writer.append('t', [{ key: 'b', value: value('two') }, { key: 'c', value: value('three') }])
      // No in-process wake-up across instances: the reader finds them by polling.
      await waitFor(() => got.records.length === 3, 'records from the other instance')
      expect(got.records.map((r) => r.value.toString()).sort()).toEqual(['one', 'three', 'two'])
    })

    it('splits a group\'s partitions between two instances and fails over when one stops', async () => {
      const topic = uniqueTopic()
      const a = await open({}, [{ name: topic, partitions: 4 }])
      const b = await open({}, [])
      const gotA = collector()
      const gotB = collector()
      const consumerA = await a.consume({ topic, group: 'cmd', from: 'earliest', handler: gotA.handler })
      consumers.push(consumerA, await b.consume({ topic, group: 'cmd', from: 'earliest', handler: gotB.handler }))
      await waitFor(() => leaseCounts(file, 'cmd').join() === '2,2', 'two leases each')

      const keys = Array.from({ length: 100 }, (_, i) => `dev-${i}`)
      await a.append(topic, keys.map((key) => ({ key, value: value(key) })))
      await waitFor(() => gotA.records.length + gotB.records.length >= 100, 'all records')
      await sleep(200)
      expect(gotA.records.length + gotB.records.length).toBe(100)
      const partitionsA = new Set(gotA.records.map((r) => r.partition))
      const partitionsB = new Set(gotB.records.map((r) => r.partition))
      expect(partitionsA.size).toBeGreaterThan(0)
      expect(partitionsB.size).toBeGreaterThan(0)
      expect([...partitionsA].filter((p) => partitionsB.has(p))).toEqual([])

      await consumerA.stop()
      await waitFor(() => leaseCounts(file, 'cmd').join() === '4', 'B holds all four')
      await a.append(topic, keys.map((key) => ({ key, value: value(`${key}/2`) })))
      await waitFor(() => gotB.records.length + gotA.records.length >= 200, 'second round via B')
      await sleep(200)
      expectNoDuplicates([...gotA.records, ...gotB.records], 200)
    })

    it('takes over the partitions of a member that died (lease expiry)', async () => {
      const stream = await open({}, [{ name: 't', partitions: 2 }])
      await stream.append('t', [{ key: 'a', value: value('1') }, { key: 'b', value: value('2') }, { key: 'c', value: value('3') }])
      // A crashed process: member row and leases present, never renewed.
      const db = new BetterSqlite3(file)
      const expires = Date.now() + 1500
      db.prepare("INSERT INTO group_members VALUES ('g', 't', 'ghost', ?)").run(expires)
      db.prepare("INSERT INTO group_leases VALUES ('g', 't', 0, 'ghost', ?), ('g', 't', 1, 'ghost', ?)").run(expires, expires)
      db.close()

      // Nothing is delivered while the ghost's leases are valid: the first delivery comes after
      // their expiry, by the clock (a fixed pause could outlast a short lease on a loaded machine).
      const got = collector()
      let firstAt = 0
      const handler = async (records: StoredRecord[]): Promise<void> => {
        firstAt ||= Date.now()
        await got.handler(records)
      }
      consumers.push(await stream.consume({ topic: 't', group: 'g', from: 'earliest', handler }))
      await sleep(300)
      if (Date.now() < expires) expect(got.records).toHaveLength(0)
      await waitFor(() => got.records.length === 3, 'records after the lease expired')
      expect(firstAt).toBeGreaterThanOrEqual(expires)
    })

    it('builds from the stream.embedded config section with the file in the data dir', async () => {
      const stream = SqliteEventStream.fromConfig(
        { synchronous: 'FULL', maxBatchRecords: 10, lingerMs: 0, retentionHours: 0, retentionMaxMiBPerPartition: 0, retentionIntervalSeconds: 60, pollIntervalMs: 100, busyTimeoutMs: 1000, writerThread, checkpointThread: writerThread },
        join(dir, 'data'),
        3,
      )
      streams.push(stream)
      expect(stream.file).toBe(join(dir, 'data', 'stream.db'))
      expect(stream.health().ready).toBe(false)
      await expect(stream.append('x', [])).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
      await stream.start([{ name: 'x' } as { name: string; partitions: number }])
      expect(await stream.partitionCount('x')).toBe(3)
      expect(stream.health()).toEqual({ ready: true })
    })
  })

}

/** Leases held per owner in a group, sorted (white-box: reads the file like another process). */
function leaseCounts(file: string, group: string): number[] {
  const db = new BetterSqlite3(file, { readonly: true })
  try {
    const rows = db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM group_leases WHERE group_id = ? GROUP BY owner').all(group)
    return rows.map((r) => r.n).sort()
  } finally {
    db.close()
  }
}

function expectNoDuplicates(records: StoredRecord[], expected: number): void {
  const positions = new Set(records.map((r) => `${r.partition}/${r.offset}`))
  expect(positions.size).toBe(records.length)
  expect(records).toHaveLength(expected)
}
