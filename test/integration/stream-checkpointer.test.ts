import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SqliteEventStream } from '../../src/stream/embedded/sqlite-event-stream.js'
import { WAL_BACKSTOP_PAGES } from '../../src/stream/embedded/checkpointer.js'

/**
 * The embedded stream's checkpoint thread (stream.embedded.checkpointThread): WAL pages reach the
 * database file while the stream runs, although the commits' own automatic checkpoint is raised
 * to WAL_BACKSTOP_PAGES; everything written reads back after a restart.
 */
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function open(file: string, checkpointThread: boolean): SqliteEventStream {
  return new SqliteEventStream({
    file,
    synchronous: 'NORMAL',
    maxBatchRecords: 2000,
    lingerMs: 0,
    retentionHours: 0,
    retentionMaxMiBPerPartition: 0,
    retentionIntervalSeconds: 0,
    pollIntervalMs: 100,
    writerThread: true,
    checkpointThread,
  })
}

/** ~1,500 pages of records: below the backstop, so only the checkpoint thread moves them into the file. */
async function fill(stream: SqliteEventStream): Promise<number> {
  const value = Buffer.alloc(2000, 'v')
  let n = 0
  for (let batch = 0; batch < 30; batch++) {
    await stream.append('t', Array.from({ length: 100 }, (_, i) => ({ key: `k${i % 7}`, value, headers: { n: String(n + i) } })))
    n += 100
  }
  return n
}

async function dbBytesAfter(checkpointThread: boolean): Promise<{ bytes: number; count: number; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-ckpt-'))
  dirs.push(dir)
  const file = join(dir, 'stream.db')
  const stream = open(file, checkpointThread)
  await stream.start([{ name: 't', partitions: 2 }])
  const count = await fill(stream)
  await new Promise((r) => setTimeout(r, 1000))
  const bytes = statSync(file).size
  await stream.stop()
  return { bytes, count, file }
}

describe('embedded stream checkpoint thread', () => {
  it('copies WAL pages into the database while the stream runs, and everything reads back after a restart', async () => {
    expect(1500).toBeLessThan(WAL_BACKSTOP_PAGES)
    const on = await dbBytesAfter(true)
    // 3,000 records of 2 kB: about 6 MB in the database file, not only in its WAL.
    expect(on.bytes).toBeGreaterThan(4 * 2 ** 20)
    const again = open(on.file, false)
    await again.start([])
    const offsets = await again.offsets('t')
    expect(offsets.reduce((sum, p) => sum + p.high - p.low, 0)).toBe(on.count)
    await again.stop()
  }, 60_000)
})
