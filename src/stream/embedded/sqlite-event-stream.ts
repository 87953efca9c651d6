import { join } from 'node:path'
import type { Database } from 'better-sqlite3'
import { GatewayError } from '../../errors/catalogue.js'
import type { GatewayConfig } from '../../config/schema.js'
import type {
  AppendResult,
  CommittedOffset,
  ConsumeOptions,
  Consumer,
  EventStream,
  OutgoingRecord,
  PartitionOffsets,
  StoredRecord,
  StreamHealth,
  TopicSpec,
} from '../types.js'
import { SqliteConsumer } from './consumer.js'
import { Retention, type RetentionReport } from './retention.js'
import { openStreamDatabase, toStreamError } from './schema.js'
import { StreamStore, type TopicState } from './store.js'
import { GroupCommitWriter, type RecordWriter, type WriterStats } from './writer.js'
import { ThreadedWriter } from './writer-thread.js'
import { AdaptiveWriter } from './adaptive-writer.js'
import { Checkpointer, WAL_BACKSTOP_PAGES } from './checkpointer.js'

export type EmbeddedStreamConfig = GatewayConfig['stream']['embedded']

export interface SqliteEventStreamOptions {
  /** The SQLite file; `<dataDir>/stream.db` in the gateway. */
  file: string
  /** NORMAL: survives a killed process, not a power cut. FULL: survives both, slower commits. */
  synchronous: 'NORMAL' | 'FULL'
  /** Most records in one group commit (a single larger append() call still commits whole). */
  maxBatchRecords: number
  /** How long appended records wait for companions before a commit (0 = next event-loop turn). */
  lingerMs: number
  /** 0 = no age limit. */
  retentionHours: number
  /** 0 = no size limit. */
  retentionMaxMiBPerPartition: number
  /** Period of the retention timer; 0 = no timer (read-only tools; tests call runRetention()). */
  retentionIntervalSeconds: number
  /** How often an idle consumer looks for records appended by another process. */
  pollIntervalMs: number
  /** Partition count of a TopicSpec that arrives without one (untyped input, e.g. CLI). Default 1. */
  defaultPartitions?: number
  /** Clock for record timestamps and retention (tests); leases always use the wall clock. */
  now?: () => number
  /** How long a write waits for another process's write lock before failing. Default 5000. */
  busyTimeoutMs?: number
  /**
   * Commit on a thread of its own (writer-thread.ts), so that SQLite never blocks the event loop;
   * 'auto': on the event loop while the load is light, on the thread when it is heavy
   * (adaptive-writer.ts). Default false here; the gateway uses `stream.embedded.writerThread`
   * ('auto' by default), a CLI tool does not need it.
   */
  writerThread?: boolean | 'auto'
  /**
   * Copy WAL pages into the database on a thread of their own (checkpointer.ts) instead of in the
   * commit that crosses SQLite's threshold. Default false here; the gateway turns it on
   * (`stream.embedded.checkpointThread`).
   */
  checkpointThread?: boolean
  /** Consumer-group partition lease. Default 10 000 ms. */
  leaseMs?: number
  /** Lease renewal and rebalance period. Default 2000 ms. */
  heartbeatMs?: number
}

type State = 'new' | 'open' | 'stopping' | 'stopped'

/**
 * How often the checkpoint thread copies committed WAL pages into the database. Often, so that
 * each pass is small: a checkpoint's fsyncs stall the writer's WAL appends on this kind of disk
 * (ext4: the journal commit they force holds back the appends' inode updates), and the stall grows
 * with what the pass carries. PUBACK p99 at 5,000 msg/s (bench:compare, latency): 9.6–11.6 ms at
 * 1,000 ms, 3.3–4.8 at 200, 1.5–1.7 at 10 (also 5 and 2: no better); saturated ingest was not
 * slower at 10 ms (97–108k PUBACKs/s).
 */
const CHECKPOINT_INTERVAL_MS = 10

/**
 * EventStream on one SQLite file (WAL): partitioned, ordered, durable topics for a single machine.
 * Only the gateway process appends records; other processes (CLI `tail`, a second gateway) may open
 * the same file to read, consume and commit group offsets. See schema.ts for the tables, writer.ts
 * for group commit, groups.ts for cross-process consumer groups, retention.ts for retention.
 */
export class SqliteEventStream implements EventStream {
  private readonly options: Required<SqliteEventStreamOptions>
  private state: State = 'new'
  private db: Database | null = null
  private store: StreamStore | null = null
  private writer: RecordWriter | null = null
  private checkpointer: Checkpointer | null = null
  private retention: Retention | null = null
  private retentionTimer: NodeJS.Timeout | null = null
  private retentionRun: Promise<RetentionReport> | null = null
  private retentionError: GatewayError | null = null
  private readonly consumers = new Set<SqliteConsumer>()
  private stopping: Promise<void> | null = null

  constructor(options: SqliteEventStreamOptions) {
    this.options = {
      defaultPartitions: 1,
      now: Date.now,
      busyTimeoutMs: 5000,
      writerThread: false,
      checkpointThread: false,
      leaseMs: 10_000,
      heartbeatMs: 2000,
      ...options,
    }
  }

  /**
   * The gateway's embedded stream: `stream.embedded.*` keys, file `<dataDir>/stream.db`,
   * `defaultPartitions` usually `stream.partitions`; `extra` overrides anything (tests).
   */
  static fromConfig(
    config: EmbeddedStreamConfig,
    dataDir: string,
    defaultPartitions?: number,
    extra: Partial<SqliteEventStreamOptions> = {},
  ): SqliteEventStream {
    const partitions = defaultPartitions === undefined ? {} : { defaultPartitions }
    return new SqliteEventStream({ ...config, file: join(dataDir, 'stream.db'), ...partitions, ...extra })
  }

  get file(): string {
    return this.options.file
  }

  async start(topics: TopicSpec[]): Promise<void> {
    if (this.state === 'stopping') throw new GatewayError('E_STREAM_CLOSED', 'the event stream is stopping')
    if (this.state !== 'open') this.open()
    await this.ensureTopics(topics)
  }

  async stop(): Promise<void> {
    if (this.state !== 'open' && this.state !== 'stopping') return
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    const store = this.requireOpen()
    const specs = topics.map((t) => this.validateSpec(t))
    try {
      store.ensureTopics(specs, this.options.now())
    } catch (err) {
      throw toStreamError(err, 'cannot create stream topics')
    }
  }

  async append(topic: string, records: OutgoingRecord[]): Promise<AppendResult[]> {
    const store = this.requireOpen()
    const state = this.lookup(store, topic)
    return this.writer!.append(state, records)
  }

  async partitionCount(topic: string): Promise<number> {
    return this.lookup(this.requireOpen(), topic).partitions
  }

  async offsets(topic: string): Promise<PartitionOffsets[]> {
    const store = this.requireOpen()
    const state = this.lookup(store, topic)
    return this.guard(() => store.offsets(state), 'cannot read offsets')
  }

  async read(topic: string, partition: number, offset: number, max: number): Promise<StoredRecord[]> {
    const store = this.requireOpen()
    const state = this.lookup(store, topic)
    store.requirePartition(state, partition)
    return this.guard(() => store.read(state, partition, offset, max), 'cannot read records')
  }

  async committedOffsets(group: string, topic: string): Promise<CommittedOffset[]> {
    const store = this.requireOpen()
    const state = this.lookup(store, topic)
    return this.guard(() => store.committedOffsets(group, state), 'cannot read committed offsets')
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    const store = this.requireOpen()
    const topic = this.lookup(store, options.topic)
    const consumer = new SqliteConsumer(
      {
        store,
        topic,
        pollIntervalMs: this.options.pollIntervalMs,
        leaseMs: this.options.leaseMs,
        heartbeatMs: this.options.heartbeatMs,
        onStopped: (c) => this.consumers.delete(c),
      },
      options,
    )
    this.guard(() => consumer.start(), 'cannot start consumer')
    this.consumers.add(consumer)
    return consumer
  }

  health(): StreamHealth {
    if (this.state !== 'open') return { ready: false, detail: `embedded stream ${this.state}` }
    const problem = this.writer?.lastError?.message ?? this.retentionError?.message ?? this.checkpointer?.lastError
    return problem ? { ready: true, detail: `last error: ${problem}` } : { ready: true }
  }

  /** Group-commit counters (commits, records, failedCommits, queuedRecords). */
  stats(): WriterStats {
    return this.writer?.stats() ?? { commits: 0, records: 0, failedCommits: 0, queuedRecords: 0 }
  }

  /** One retention pass now (the timer calls it too); concurrent calls share the running pass. */
  runRetention(): Promise<RetentionReport> {
    const retention = this.retention
    if (this.state !== 'open' || !retention) return Promise.reject(new GatewayError('E_STREAM_CLOSED', 'the event stream is not open'))
    this.retentionRun ??= retention
      .run()
      .then((report) => {
        this.retentionError = null
        return report
      })
      .catch((err: unknown) => {
        this.retentionError = toStreamError(err, 'retention failed')
        throw this.retentionError
      })
      .finally(() => {
        this.retentionRun = null
      })
    return this.retentionRun
  }

  private open(): void {
    const { file, synchronous, busyTimeoutMs, maxBatchRecords, lingerMs, now } = this.options
    const walAutocheckpointPages = this.options.checkpointThread ? WAL_BACKSTOP_PAGES : undefined
    const db = openStreamDatabase({ file, synchronous, busyTimeoutMs, walAutocheckpointPages })
    const store = new StreamStore(db)
    this.db = db
    this.store = store
    const committed = (topics: ReadonlySet<string>): void => this.wakeConsumers(topics)
    const threaded = (): ThreadedWriter => new ThreadedWriter({ file, synchronous, busyTimeoutMs, maxBatchRecords, lingerMs, walAutocheckpointPages }, now, committed)
    const inLoop = (): GroupCommitWriter => new GroupCommitWriter(db, store, { maxBatchRecords, lingerMs, now }, committed)
    const mode = this.options.writerThread
    this.writer = mode === 'auto' ? new AdaptiveWriter(inLoop(), threaded(), store) : mode ? threaded() : inLoop()
    this.retention = new Retention(db, store, { ...this.options, now })
    if (this.options.checkpointThread) {
      this.checkpointer = new Checkpointer({ file, intervalMs: CHECKPOINT_INTERVAL_MS, busyTimeoutMs: busyTimeoutMs ?? 5000 })
      this.checkpointer.start()
    }
    this.stopping = null
    this.state = 'open'
    if (this.options.retentionIntervalSeconds > 0 && this.retention.enabled) {
      this.retentionTimer = setInterval(() => {
        // Failures are kept for health(); the next tick retries.
        this.runRetention().catch(() => undefined)
      }, this.options.retentionIntervalSeconds * 1000)
      this.retentionTimer.unref()
    }
  }

  /** Reverse order of start: flush appends, stop consumers, finish retention, close the file. */
  private async shutdown(): Promise<void> {
    this.state = 'stopping'
    const writer = this.writer!
    if (this.retentionTimer) clearInterval(this.retentionTimer)
    this.retentionTimer = null
    // Appends made from here on (say by a handler finishing its batch) reject with E_STREAM_CLOSED.
    await writer.close()
    await this.checkpointer?.close()
    this.checkpointer = null
    await Promise.all([...this.consumers].map((c) => c.stop()))
    await this.retentionRun?.catch(() => undefined)
    this.db?.close()
    this.db = null
    this.store = null
    this.state = 'stopped'
  }

  private wakeConsumers(topics: ReadonlySet<string>): void {
    for (const consumer of this.consumers) if (topics.has(consumer.topicName)) consumer.wake()
  }

  private requireOpen(): StreamStore {
    if (this.state === 'open' && this.store) return this.store
    if (this.state === 'new') throw new GatewayError('E_STREAM_UNAVAILABLE', 'the event stream has not been started')
    throw new GatewayError('E_STREAM_CLOSED', 'the event stream has been stopped')
  }

  private lookup(store: StreamStore, topic: string): TopicState {
    return this.guard(() => store.requireTopic(topic), 'cannot look up topic')
  }

  private validateSpec(spec: TopicSpec): TopicSpec {
    const partitions = (spec.partitions as number | undefined) ?? this.options.defaultPartitions
    if (typeof spec.name !== 'string' || spec.name.length === 0 || !Number.isInteger(partitions) || partitions < 1) {
      throw new GatewayError('E_BAD_REQUEST', `invalid topic spec ${JSON.stringify(spec)}`)
    }
    return { name: spec.name, partitions }
  }

  /** Run a synchronous SQLite call, turning driver failures into E_STREAM_UNAVAILABLE. */
  private guard<T>(fn: () => T, message: string): T {
    try {
      return fn()
    } catch (err) {
      throw toStreamError(err, message)
    }
  }
}
