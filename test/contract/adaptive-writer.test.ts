import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SqliteEventStream } from '../../src/stream/embedded/sqlite-event-stream.js'
import type { AdaptiveWriter } from '../../src/stream/embedded/adaptive-writer.js'
import type { AppendResult } from '../../src/stream/types.js'
import { waitFor } from './event-stream.contract.js'

/**
 * `stream.embedded.writerThread: auto` (adaptive-writer.ts) on a real file: the event loop and the
 * writer thread take turns, and across every switch each partition's offsets stay consecutive,
 * nothing is written twice or lost, and a key's records stay in call order.
 */
describe('SqliteEventStream with writerThread auto', () => {
  let dir: string
  let stream: SqliteEventStream
  const writer = (): AdaptiveWriter => (stream as unknown as { writer: AdaptiveWriter }).writer

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-adaptive-'))
    stream = new SqliteEventStream({
      file: join(dir, 'stream.db'),
      synchronous: 'NORMAL',
      maxBatchRecords: 2000,
      lingerMs: 0,
      retentionHours: 0,
      retentionMaxMiBPerPartition: 0,
      retentionIntervalSeconds: 0,
      pollIntervalMs: 50,
      writerThread: 'auto',
      checkpointThread: true,
    })
    await stream.start([{ name: 't', partitions: 4 }])
  })

  afterEach(async () => {
    await stream.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const batch = (from: number, count: number): Array<{ key: string; value: Buffer }> =>
    Array.from({ length: count }, (_, i) => ({ key: `dev-${(from + i) % 7}`, value: Buffer.from(String(from + i)) }))

  /** Every record of the topic, partition by partition, as [partition, offset, key, value]. */
  async function readAll(): Promise<Array<[number, number, string | null, string]>> {
    const out: Array<[number, number, string | null, string]> = []
    for (const p of await stream.offsets('t')) {
      for (let at = p.low; at < p.high; ) {
        const records = await stream.read('t', p.partition, at, 1000)
        for (const r of records) out.push([r.partition, r.offset, r.key, r.value.toString()])
        at = records[records.length - 1]!.offset + 1
      }
    }
    return out
  }

  function expectConsecutive(results: AppendResult[]): void {
    const byPartition = new Map<number, number[]>()
    for (const r of results) byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), r.offset])
    for (const [, offsets] of byPartition) expect(offsets).toEqual(offsets.map((_, i) => i))
  }

  it('starts on the event loop and keeps offsets consecutive across switches made while appends are in flight', async () => {
    expect(writer().current).toBe('loop')
    const pending: Array<Promise<AppendResult[]>> = []
    let next = 0
    const send = (count: number): void => {
      pending.push(stream.append('t', batch(next, count)))
      next += count
    }
    send(50)
    const toThread = writer().switchTo('thread')
    // Appends made during the switch wait for it, in order.
    send(50)
    await toThread
    expect(writer().current).toBe('thread')
    send(50)
    const toLoop = writer().switchTo('loop')
    send(50)
    await toLoop
    expect(writer().current).toBe('loop')
    send(50)
    await writer().switchTo('thread')
    send(50)
    const results = (await Promise.all(pending)).flat()
    expect(results).toHaveLength(next)
    expectConsecutive(results)

    const stored = await readAll()
    expect(stored.map(([, , , v]) => Number(v)).sort((a, b) => a - b)).toEqual(Array.from({ length: next }, (_, i) => i))
    // A key's records are in call order on its partition.
    for (let k = 0; k < 7; k++) {
      const values = stored.filter(([, , key]) => key === `dev-${k}`).map(([, , , v]) => Number(v))
      expect(values).toEqual([...values].sort((a, b) => a - b))
    }
  })

  it('moves to the writer thread under load and back to the event loop when it is light', async () => {
    // Well above THREAD_ABOVE records/s for a few sampling periods.
    const until = Date.now() + 600
    const pending: Array<Promise<AppendResult[]>> = []
    let next = 0
    while (Date.now() < until && writer().current === 'loop') {
      pending.push(stream.append('t', batch(next, 500)))
      next += 500
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await waitFor(() => writer().current === 'thread', 'the writer thread taking over')
    pending.push(stream.append('t', batch(next, 10)))
    next += 10
    // Quiet for a second: back on the loop.
    await waitFor(() => writer().current === 'loop', 'the event loop taking over again', 5000)
    pending.push(stream.append('t', batch(next, 10)))
    next += 10
    const results = (await Promise.all(pending)).flat()
    expect(results).toHaveLength(next)
    expectConsecutive(results)
    expect((await readAll()).length).toBe(next)
  })
})
