import type { OutgoingRecord } from '../../src/stream/types.js'
import { startHostileGateway, type HostileGateway, type HostileOptions } from '../helpers/hostile.js'
import { readTopic, withStream } from '../../bench/lib/sim-bench.js'

export { readTopic }
export { holdWriteLock } from '../helpers/sqlite-lock.js'

/**
 * What the outbox and de-duplication hostile tests need beyond test/helpers/hostile.ts: the
 * gateway stopped (or killed) and started again on the same data directory, the stream file read
 * and written by a tool process while no gateway runs, and SQLite's write lock on a file held by
 * another process.
 */

/** Start a hostile gateway on an existing data dir (a restart). */
export function startHostileGatewayIn(dataDir: string, options: HostileOptions = {}): Promise<HostileGateway> {
  return startHostileGateway({ ...options, dataDir })
}

/** Append to a topic of `dataDir`'s stream, creating it with the configured partitions. Only while no gateway runs there. */
export async function appendOffline(dataDir: string, topic: string, records: OutgoingRecord[]): Promise<void> {
  await withStream(dataDir, async (stream, partitions) => {
    await stream.ensureTopics([{ name: topic, partitions }])
    await stream.append(topic, records)
  })
}

