import type { AppendResult, EventStream, OutgoingRecord } from '../stream/types.js'

/**
 * Collects records for one stream topic and appends them in one call per burst of publishes
 * (or per `maxBatch` records), so the stream gets arrays, not single records: the embedded
 * stream then commits across devices once per event-loop turn, and Kafka gets full batches. Each caller's promise settles with the
 * outcome of the batch its record went out in.
 */
export class BatchingAppender {
  private pending: Array<{ record: OutgoingRecord; resolve: (r: AppendResult) => void; reject: (e: unknown) => void }> = []
  private scheduled = false
  private inFlight = new Set<Promise<void>>()

  constructor(
    private readonly stream: EventStream,
    private readonly topic: string,
    private readonly maxBatch: number,
  ) {}

  append(record: OutgoingRecord): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.pending.push({ record, resolve, reject })
      if (this.pending.length >= this.maxBatch) this.flush()
      else if (!this.scheduled) {
        // A microtask, not a new event-loop turn: every publish of the socket chunk being handled
        // is queued by then, and the stream adds its own group commit across connections.
        this.scheduled = true
        queueMicrotask(() => this.flush())
      }
    })
  }

  /** Resolves once every batch handed to the stream so far has settled. */
  async drain(): Promise<void> {
    this.flush()
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
  }

  private flush(): void {
    this.scheduled = false
    if (this.pending.length === 0) return
    const batch = this.pending
    this.pending = []
    const done = this.stream.append(this.topic, batch.map((p) => p.record)).then(
      (results) => batch.forEach((p, i) => p.resolve(results[i]!)),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    )
    this.inFlight.add(done)
    void done.finally(() => this.inFlight.delete(done))
  }
}
