import type { EventStream, OutgoingRecord } from '../stream/types.js'

/** Told once per record: `null` when the stream holds it durably, else why it does not. */
export type AppendDone = (err: unknown) => void

/**
 * Collects records for one stream topic and appends them in one call per burst of publishes
 * (or per `maxBatch` records), so the stream gets arrays, not single records: the embedded
 * stream then commits across devices once per event-loop turn, and Kafka gets full batches.
 * Each record's callback is told the outcome of the batch it went out in.
 *
 * Callbacks, not a promise per record: this is the telemetry hot path, and one promise per
 * batch settles all of its records in one loop.
 */
export class BatchingAppender {
  private records: OutgoingRecord[] = []
  private callbacks: AppendDone[] = []
  private scheduled = false
  /**
   * Batches handed to the stream and not settled yet. A count: a Set of their promises was
   * garbage the young generation promoted (a new hash table as batches came and went).
   */
  private inFlight = 0
  private idleWaiters: Array<() => void> = []

  constructor(
    private readonly stream: EventStream,
    private readonly topic: string,
    private readonly maxBatch: number,
  ) {}

  append(record: OutgoingRecord, done: AppendDone): void {
    this.records.push(record)
    this.callbacks.push(done)
    if (this.records.length >= this.maxBatch) this.flush()
    else if (!this.scheduled) {
      // A microtask, not a new event-loop turn: every publish of the socket chunk being handled
      // is queued by then, and the stream adds its own group commit across connections.
      this.scheduled = true
      queueMicrotask(() => this.flush())
    }
  }

  /** Resolves once every batch handed to the stream so far has settled. */
  async drain(): Promise<void> {
    this.flush()
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  private flush(): void {
    this.scheduled = false
    if (this.records.length === 0) return
    const records = this.records
    const callbacks = this.callbacks
    this.records = []
    this.callbacks = []
    const appended = this.stream.append(this.topic, records)
    this.inFlight++
    appended.then(
      () => this.settle(callbacks, null),
      (err: unknown) => this.settle(callbacks, err ?? new Error('append failed')),
    )
  }

  private settle(callbacks: AppendDone[], err: unknown): void {
    this.inFlight--
    tell(callbacks, err)
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const wake of waiters) wake()
    }
  }
}

/** Every callback is told, even when one throws (that error is rethrown on its own, uncaught). */
function tell(callbacks: AppendDone[], err: unknown): void {
  for (const cb of callbacks) {
    try {
      cb(err)
    } catch (thrown) {
      queueMicrotask(() => {
        throw thrown
      })
    }
  }
}
