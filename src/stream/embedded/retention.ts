import type { Database, Statement } from 'better-sqlite3'
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { StreamStore } from './store.js'

/**
 * Retention by age and by size per partition. Both delete a PREFIX of a partition (oldest offsets
 * first), so the low watermark just moves up and a partition never has holes: a record older than
 * the age limit that sits behind a newer one (an out-of-order device timestamp) stays until the
 * newer one expires, as with Kafka's segment-based retention. Offsets are never reused: the next
 * offset lives in `partitions.next_offset`, not in MAX(offset).
 *
 * Work is done in transactions of at most `chunkRecords` rows with a turn of the event loop in
 * between, so a large backlog (first run after a long stop) never blocks appends for long.
 */

export interface RetentionPolicy {
  /** 0 = no age limit. */
  retentionHours: number
  /** 0 = no size limit. */
  retentionMaxMiBPerPartition: number
  now: () => number
  chunkRecords?: number
}

export interface RetentionReport {
  deletedRecords: number
  deletedBytes: number
}

interface HeadRow {
  offset: number
  timestamp: number
  size: number
}

const DEFAULT_CHUNK = 5000
const HOUR_MS = 3_600_000
const MIB = 1024 * 1024

export class Retention {
  private readonly selectBytes: Statement<[string, number], { bytes: number }>
  private readonly selectHead: Statement<[string, number, number], HeadRow>
  private readonly deleteHead: Statement<[string, number, number]>
  private readonly subtractBytes: Statement<[number, string, number]>

  constructor(
    private readonly db: Database,
    private readonly store: StreamStore,
    private readonly policy: RetentionPolicy,
  ) {
    this.selectBytes = db.prepare('SELECT bytes FROM partitions WHERE topic = ? AND partition = ?')
    this.selectHead = db.prepare('SELECT offset, timestamp, size FROM records WHERE topic = ? AND partition = ? ORDER BY offset LIMIT ?')
    this.deleteHead = db.prepare('DELETE FROM records WHERE topic = ? AND partition = ? AND offset <= ?')
    this.subtractBytes = db.prepare('UPDATE partitions SET bytes = MAX(0, bytes - ?) WHERE topic = ? AND partition = ?')
  }

  get enabled(): boolean {
    return this.policy.retentionHours > 0 || this.policy.retentionMaxMiBPerPartition > 0
  }

  /** One pass over every partition of every topic in the file. */
  async run(): Promise<RetentionReport> {
    const report: RetentionReport = { deletedRecords: 0, deletedBytes: 0 }
    if (!this.enabled) return report
    const { retentionHours, retentionMaxMiBPerPartition } = this.policy
    const cutoff = retentionHours > 0 ? this.policy.now() - retentionHours * HOUR_MS : Number.NEGATIVE_INFINITY
    const maxBytes = retentionMaxMiBPerPartition > 0 ? retentionMaxMiBPerPartition * MIB : Number.POSITIVE_INFINITY
    for (const topic of this.store.allTopics()) {
      for (let partition = 0; partition < topic.partitions; partition++) {
        for (;;) {
          const chunk = this.trimChunk(topic.name, partition, cutoff, maxBytes)
          report.deletedRecords += chunk.records
          report.deletedBytes += chunk.bytes
          if (!chunk.more) break
          await nextTurn()
        }
      }
    }
    return report
  }

  /**
   * Delete the expired head of one partition, up to one chunk, in one transaction (reading the
   * size inside it keeps `partitions.bytes` exact even if two processes ran retention at once).
   */
  private trimChunk(topic: string, partition: number, cutoff: number, maxBytes: number): { records: number; bytes: number; more: boolean } {
    const limit = this.policy.chunkRecords ?? DEFAULT_CHUNK
    const run = this.db.transaction(() => {
      let remaining = this.selectBytes.get(topic, partition)?.bytes ?? 0
      let records = 0
      let bytes = 0
      let lastOffset = -1
      const head = this.selectHead.all(topic, partition, limit)
      for (const row of head) {
        if (row.timestamp >= cutoff && remaining <= maxBytes) break
        remaining -= row.size
        bytes += row.size
        lastOffset = row.offset
        records++
      }
      if (records > 0) {
        this.deleteHead.run(topic, partition, lastOffset)
        this.subtractBytes.run(bytes, topic, partition)
      }
      return { records, bytes, more: records === limit }
    })
    return run.immediate()
  }
}
