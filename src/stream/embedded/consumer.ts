import { randomUUID } from 'node:crypto'
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { ConsumeOptions, Consumer, StoredRecord } from '../types.js'
import { GroupMembership } from './groups.js'
import { toStreamError } from './schema.js'
import type { StreamStore, TopicState } from './store.js'

/**
 * A push consumer over the stream file. One loop per consumer: for each partition it holds, read
 * up to maxBatch records after its position, await the handler, commit (with a group), move on.
 * Idle, it sleeps pollIntervalMs or until the same process appends to its topic (`wake`); records
 * appended by another process are seen at the next poll.
 *
 * Partitions: `partitions` given → exactly those (with a group, offsets are still committed but no
 * leases are taken, like Kafka's assign()); a group alone → leases (see groups.ts); neither → all.
 */

export interface ConsumerContext {
  store: StreamStore
  topic: TopicState
  pollIntervalMs: number
  leaseMs: number
  heartbeatMs: number
  /** Called once the consumer has stopped for good (the stream forgets it). */
  onStopped: (consumer: SqliteConsumer) => void
}

const DEFAULT_MAX_BATCH = 500

export class SqliteConsumer implements Consumer {
  readonly memberId = randomUUID()
  private readonly positions = new Map<number, number>()
  private readonly membership: GroupMembership | null
  /** Leases are used for a group without an explicit partition list. */
  private readonly leased: boolean
  private readonly maxBatch: number
  private running = false
  private loop: Promise<void> = Promise.resolve()
  private wakeUp: (() => void) | null = null
  /** A wake that came while the loop was busy: the next idle() returns at once. */
  private wakePending = false
  private renewTimer: NodeJS.Timeout | null = null
  private nextRebalanceAt = 0
  private stopping: Promise<void> | null = null

  constructor(
    private readonly ctx: ConsumerContext,
    private readonly options: ConsumeOptions,
  ) {
    const { store, topic, leaseMs } = ctx
    this.membership = options.group === undefined
      ? null
      : new GroupMembership({ db: store.db, group: options.group, topic: topic.name, partitions: topic.partitions, memberId: this.memberId, leaseMs })
    this.leased = this.membership !== null && options.partitions === undefined
    this.maxBatch = Math.max(1, Math.floor(options.maxBatch ?? DEFAULT_MAX_BATCH))
  }

  /**
   * Resolve starting positions synchronously (so a 'latest' consumer sees every record appended
   * after consume() resolved), then run the loop in the background.
   */
  start(): void {
    if (this.leased) {
      this.rebalance()
      this.renewTimer = setInterval(() => this.renew(), this.ctx.heartbeatMs)
      this.renewTimer.unref()
    } else {
      const partitions = this.options.partitions ?? range(this.ctx.topic.partitions)
      for (const p of partitions) this.ctx.store.requirePartition(this.ctx.topic, p)
      for (const p of partitions) this.positions.set(p, this.startPosition(p))
    }
    this.running = true
    this.loop = this.run()
  }

  get topicName(): string {
    return this.ctx.topic.name
  }

  /** Wake an idle loop now (records were appended to our topic in this process). */
  wake(): void {
    if (this.wakeUp) this.wakeUp()
    else this.wakePending = true
  }

  /**
   * Resolves after the in-flight handler call (and its commit). A handler must not await the
   * stop() of its own consumer: that would wait for itself. Calling it without awaiting is fine.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown(): Promise<void> {
    this.running = false
    this.wake()
    await this.loop
    if (this.renewTimer) clearInterval(this.renewTimer)
    if (this.leased) {
      try {
        this.membership!.leave()
      } catch {
        // The file is closed or locked: the leases simply expire after leaseMs.
      }
    }
    this.ctx.onStopped(this)
  }

  private async run(): Promise<void> {
    while (this.running) {
      let delivered = false
      try {
        if (this.leased && Date.now() >= this.nextRebalanceAt) this.tryRebalance()
        for (const partition of [...this.positions.keys()]) {
          if (!this.running) break
          if (await this.deliver(partition)) delivered = true
        }
      } catch (err) {
        this.fail(err)
        break
      }
      // Yield a full turn even when busy: handlers that resolve at once must not starve timers and I/O.
      if (delivered) await nextTurn()
      else await this.idle()
    }
  }

  /** Hand one batch of a partition to the handler; false when there was nothing to read. */
  private async deliver(partition: number): Promise<boolean> {
    const position = this.positions.get(partition)
    if (position === undefined) return false
    const batch: StoredRecord[] = this.ctx.store.read(this.ctx.topic, partition, position, this.maxBatch)
    if (batch.length === 0) return false
    await this.options.handler(batch)
    const next = batch[batch.length - 1]!.offset + 1
    if (this.membership && !this.membership.commit(partition, next, this.leased)) {
      // Another member holds the partition now (our lease lapsed); it resumes from its commit.
      this.positions.delete(partition)
      return true
    }
    this.positions.set(partition, next)
    return true
  }

  private idle(): Promise<void> {
    if (this.wakePending || !this.running) {
      this.wakePending = false
      return nextTurn()
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.ctx.pollIntervalMs)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
      this.wakeUp = () => {
        this.wakeUp = null
        done()
      }
    })
  }

  /**
   * A rebalance that fails (the file stayed locked past busy_timeout) is retried at the next beat
   * with the partitions held so far; commit() refuses if one of their leases has been lost.
   */
  private tryRebalance(): void {
    try {
      this.rebalance()
    } catch {
      this.nextRebalanceAt = Date.now() + this.ctx.heartbeatMs
    }
  }

  /** Apply the group's current assignment: forget released partitions, position new ones. */
  private rebalance(): void {
    const held = this.membership!.rebalance()
    this.nextRebalanceAt = Date.now() + this.ctx.heartbeatMs
    for (const p of [...this.positions.keys()]) if (!held.includes(p)) this.positions.delete(p)
    for (const p of held) if (!this.positions.has(p)) this.positions.set(p, this.startPosition(p))
  }

  /**
   * The group's committed offset, else `from`. A group's resolved start is committed at once so
   * that 'latest' means "latest when the group first read this partition", not "latest whenever the
   * partition moves to another member" (which would skip records).
   */
  private startPosition(partition: number): number {
    const committed = this.membership?.committed(partition) ?? null
    if (committed !== null) return committed
    const watermarks = this.ctx.store.offsets(this.ctx.topic).find((o) => o.partition === partition)
    const position = this.options.from === 'earliest' ? (watermarks?.low ?? 0) : (watermarks?.high ?? 0)
    this.membership?.commit(partition, position, this.leased)
    return position
  }

  private renew(): void {
    try {
      this.membership!.renew()
    } catch {
      // Retried at the next beat; commit() notices if the lease was lost meanwhile.
    }
  }

  /** A handler rejection or a read failure stops this consumer; the batch is not committed. */
  private fail(err: unknown): void {
    this.running = false
    // Handler errors reach onError as thrown; SQLite failures become E_STREAM_UNAVAILABLE.
    const fromSqlite = err instanceof Error && 'code' in err && String(err.code).startsWith('SQLITE_')
    const error = err instanceof Error && !fromSqlite ? err : toStreamError(err, 'consumer stopped')
    this.options.onError?.(error)
    void this.stop()
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i)
}
