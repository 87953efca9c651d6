import type { AppendResult, EventStream, OutgoingRecord } from '../stream/types.js'

/**
 * Collects records for one stream topic from many devices and appends them in one call per
 * tick (or per `maxBatch` records): group commit across devices is what makes the embedded
 * stream fast, and Kafka gets full produce batches. Each caller's promise settles with the
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
        this.scheduled = true
        setImmediate(() => this.flush())
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
