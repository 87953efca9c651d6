import type { Database, Statement } from 'better-sqlite3'
import { GatewayError } from '../../errors/catalogue.js'
import type { CommittedOffset, Headers, PartitionOffsets, StoredRecord, TopicSpec } from '../types.js'

/**
 * Topics, watermarks and reads over the stream file. Shared by the writer, consumers and
 * retention of one SqliteEventStream; all statements are prepared once.
 */

/** What the writer keeps per topic. `next` is the in-memory next offset of each partition. */
export interface TopicState {
  readonly name: string
  readonly partitions: number
  next: number[]
  /** Round-robin cursor for records with a null key. */
  roundRobin: number
}

interface RecordRow {
  partition: number
  offset: number
  timestamp: number
  key: string | null
  value: Buffer
  headers: string | null
}

interface OffsetsRow {
  partition: number
  high: number
  low: number | null
}

export class StreamStore {
  private readonly topics = new Map<string, TopicState>()
  private readonly selectTopic: Statement<[string], { partitions: number }>
  private readonly selectNext: Statement<[string], { partition: number; next_offset: number; max_offset: number | null }>
  private readonly selectOffsets: Statement<[string], OffsetsRow>
  private readonly selectRecords: Statement<[string, number, number, number], RecordRow>
  private readonly insertTopic: Statement<[string, number, number]>
  private readonly insertPartition: Statement<[string, number]>
  private readonly selectTopicNames: Statement<[], { name: string }>
  private readonly selectCommitted: Statement<[string, string], { partition: number; next_offset: number }>

  constructor(readonly db: Database) {
    this.selectTopic = db.prepare('SELECT partitions FROM topics WHERE name = ?')
    // MAX(offset) guards against a partitions row that lags its records (it never should).
    this.selectNext = db.prepare(
      `SELECT p.partition, p.next_offset,
         (SELECT MAX(r.offset) FROM records r WHERE r.topic = p.topic AND r.partition = p.partition) AS max_offset
       FROM partitions p WHERE p.topic = ? ORDER BY p.partition`,
    )
    // Low = oldest record left after retention, or the high watermark when the partition is empty.
    this.selectOffsets = db.prepare(
      `SELECT p.partition, p.next_offset AS high,
         (SELECT MIN(r.offset) FROM records r WHERE r.topic = p.topic AND r.partition = p.partition) AS low
       FROM partitions p WHERE p.topic = ? ORDER BY p.partition`,
    )
    this.selectRecords = db.prepare(
      `SELECT partition, offset, timestamp, key, value, headers FROM records
       WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?`,
    )
    this.insertTopic = db.prepare('INSERT OR IGNORE INTO topics (name, partitions, created_at) VALUES (?, ?, ?)')
    this.insertPartition = db.prepare('INSERT OR IGNORE INTO partitions (topic, partition) VALUES (?, ?)')
    this.selectTopicNames = db.prepare('SELECT name FROM topics ORDER BY name')
    this.selectCommitted = db.prepare('SELECT partition, next_offset FROM group_offsets WHERE group_id = ? AND topic = ? ORDER BY partition')
  }

  /**
   * The topic, or undefined. A miss is looked up in the file, because another process (or
   * another instance) may have created the topic since we loaded ours.
   */
  topic(name: string): TopicState | undefined {
    const known = this.topics.get(name)
    if (known) return known
    const row = this.selectTopic.get(name)
    if (!row) return undefined
    const state: TopicState = { name, partitions: row.partitions, next: [], roundRobin: 0 }
    this.loadNextOffsets(state)
    this.topics.set(name, state)
    return state
  }

  requireTopic(name: string): TopicState {
    const state = this.topic(name)
    if (!state) throw new GatewayError('E_STREAM_TOPIC_UNKNOWN', `stream topic ${JSON.stringify(name)} does not exist`, { topic: name })
    return state
  }

  requirePartition(topic: TopicState, partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= topic.partitions) {
      throw new GatewayError('E_BAD_REQUEST', `topic ${topic.name} has no partition ${partition}`, { topic: topic.name, partition })
    }
  }

  /** Create missing topics (and their partition rows) in one transaction; existing ones keep their count. */
  ensureTopics(specs: TopicSpec[], now: number): void {
    const create = this.db.transaction(() => {
      for (const spec of specs) {
        this.insertTopic.run(spec.name, spec.partitions, now)
        const stored = this.selectTopic.get(spec.name)!.partitions
        for (let p = 0; p < stored; p++) this.insertPartition.run(spec.name, p)
      }
    })
    create.immediate()
    for (const spec of specs) this.topic(spec.name)
  }

  /** Re-read next offsets from the file: at load, and after a failed commit (see writer). */
  loadNextOffsets(state: TopicState): void {
    const next = new Array<number>(state.partitions).fill(0)
    for (const row of this.selectNext.all(state.name)) {
      if (row.partition < state.partitions) next[row.partition] = Math.max(row.next_offset, (row.max_offset ?? -1) + 1)
    }
    state.next = next
  }

  offsets(topic: TopicState): PartitionOffsets[] {
    return this.selectOffsets.all(topic.name).map((row) => ({ partition: row.partition, low: row.low ?? row.high, high: row.high }))
  }

  committedOffsets(group: string, topic: TopicState): CommittedOffset[] {
    return this.selectCommitted.all(group, topic.name).filter((row) => row.partition < topic.partitions).map((row) => ({ partition: row.partition, offset: row.next_offset }))
  }

  read(topic: TopicState, partition: number, offset: number, max: number): StoredRecord[] {
    const rows = this.selectRecords.all(topic.name, partition, Math.max(0, Math.floor(offset)), Math.max(0, Math.floor(max)))
    return rows.map((row) => ({
      topic: topic.name,
      partition: row.partition,
      offset: row.offset,
      timestamp: row.timestamp,
      key: row.key,
      value: row.value,
      headers: parseHeaders(row.headers),
    }))
  }

  /** Names of every topic in the file (retention walks them all, whoever created them). */
  allTopics(): TopicState[] {
    return this.selectTopicNames.all().map((row) => this.requireTopic(row.name))
  }
}

/** Headers are stored as a JSON object of strings, or NULL when there are none. */
export function serializeHeaders(headers: Headers | undefined): string | null {
  if (!headers) return null
  for (const _name in headers) return JSON.stringify(headers)
  return null
}

function parseHeaders(text: string | null): Headers {
  if (text === null) return {}
  const parsed: unknown = JSON.parse(text)
  return typeof parsed === 'object' && parsed !== null ? (parsed as Headers) : {}
}
