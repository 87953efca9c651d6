/**
 * The EventStream port: partitioned, ordered, durable topics (Kafka's model). Two adapters
 * implement it: SqliteEventStream (embedded) and, later, KafkaEventStream. Both pass the one
 * contract suite in test/contract/event-stream.contract.ts unchanged.
 * This folder knows nothing about MQTT.
 */

import type { GatewayError } from '../errors/catalogue.js'

export type Headers = Record<string, string>

/** A record as handed to `append`. */
export interface OutgoingRecord {
  /** Partitioning key; the device id for every gateway topic. null = round robin. */
  key: string | null
  value: Buffer
  headers?: Headers
  /** Milliseconds since the epoch; defaults to the time of append. */
  timestamp?: number
}

/** A record as stored and read back. */
export interface StoredRecord {
  topic: string
  partition: number
  offset: number
  key: string | null
  value: Buffer
  headers: Headers
  timestamp: number
}

export interface AppendResult {
  topic: string
  partition: number
  offset: number
}

export interface TopicSpec {
  name: string
  partitions: number
}

export interface PartitionOffsets {
  partition: number
  /** Offset of the oldest record still held (after retention). */
  low: number
  /** Offset the next record will get. */
  high: number
}

export interface CommittedOffset {
  partition: number
  /** The next offset the group reads. */
  offset: number
}

export type StartPosition = 'earliest' | 'latest'

export interface ConsumeOptions {
  topic: string
  /**
   * Consumer group. With a group, progress is committed after each handled batch and a restart
   * resumes after the last committed offset; without one, reading starts at `from`.
   */
  group?: string
  /** Where to start when the group has no committed offset (or there is no group). Default 'latest'. */
  from?: StartPosition
  /** Restrict to these partitions (no group coordination then). */
  partitions?: number[]
  /** Max records handed to one handler call. */
  maxBatch?: number
  /**
   * Called with records of one partition in offset order. The batch counts as consumed (and is
   * committed for a group) only when the promise resolves; a rejection stops the consumer and
   * is reported through `onError`.
   */
  handler: (records: StoredRecord[]) => Promise<void>
  onError?: (err: Error) => void
}

export interface Consumer {
  /** Stop fetching; resolves once the in-flight handler call has finished. Safe to call twice. */
  stop(): Promise<void>
}

export interface StreamHealth {
  ready: boolean
  detail?: string
}

export interface EventStream {
  /** Open connections/files and provision the given topics. Safe to call twice. */
  start(topics: TopicSpec[]): Promise<void>
  /** Flush what was appended, close consumers, release resources. Safe to call twice. */
  stop(): Promise<void>
  /** Create topics that do not exist; existing topics keep their partition count. */
  ensureTopics(topics: TopicSpec[]): Promise<void>
  /**
   * Append records to a topic. Resolves only once every record is durable (committed to disk for
   * the embedded stream, acks=all for Kafka); the results are in the order of `records`.
   * Rejects with GatewayError E_STREAM_UNAVAILABLE / E_STREAM_TOPIC_UNKNOWN / E_STREAM_CLOSED.
   */
  append(topic: string, records: OutgoingRecord[]): Promise<AppendResult[]>
  /** Number of partitions of a topic; rejects with E_STREAM_TOPIC_UNKNOWN. */
  partitionCount(topic: string): Promise<number>
  /** Low and high watermarks of every partition of a topic. */
  offsets(topic: string): Promise<PartitionOffsets[]>
  /** Read up to `max` records of one partition starting at `offset` (inclusive). */
  read(topic: string, partition: number, offset: number, max: number): Promise<StoredRecord[]>
  /** Start a consumer; records are pushed to its handler as they arrive. */
  consume(options: ConsumeOptions): Promise<Consumer>
  /**
   * The next offset a consumer group will read in each partition of a topic, for the partitions
   * it has committed (a group that never committed one has none): with offsets(), a group's lag.
   */
  committedOffsets(group: string, topic: string): Promise<CommittedOffset[]>
  health(): StreamHealth
  /**
   * Told of append attempts that failed while the stream keeps retrying them itself (Kafka holds
   * a request and sends it again; see kafka/appender.ts), for the append-errors counter. A stream
   * that rejects failed appends instead has nothing to report here.
   */
  observeAppendFailures?(listener: (err: GatewayError) => void): void
  /**
   * The gateway has begun to shut down (stop() follows once the parts that append have drained):
   * a stream that holds unanswered appends gives them up after its append timeout from here, so
   * that those drains end. Streams that never hold an append need not implement it.
   */
  beginStop?(): void
}
