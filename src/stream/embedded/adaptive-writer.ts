import type { GatewayError } from '../../errors/catalogue.js'
import type { AppendResult, OutgoingRecord } from '../types.js'
import type { StreamStore, TopicState } from './store.js'
import type { ThreadedWriter } from './writer-thread.js'
import type { GroupCommitWriter, RecordWriter, WriterStats } from './writer.js'

/** Above this many records per second the writer thread takes over; below LOOP_BELOW for a second the event loop does again. */
const THREAD_ABOVE = 20_000
const LOOP_BELOW = 10_000
const SAMPLE_MS = 100

/**
 * `stream.embedded.writerThread: auto`: commits on the event loop while the load is light, on the
 * writer thread once it is heavy. Each is better at one end (bench:compare): on the loop a commit
 * needs no hop between threads, so a PUBACK at 5,000 msg/s comes back in p50 0.21 / p99 1.0 ms
 * against 0.38 / 1.6 ms through the thread; at saturation the loop has to parse MQTT as well and
 * reaches about 80k records/s, the thread about 100k.
 *
 * Only one of the two writes at a time, so offsets stay consecutive and per-key order holds. A
 * switch lets the writer in use finish everything it holds first (appends meanwhile wait, in
 * order), and the next one re-reads each partition's next offset from the file before it writes.
 */
export class AdaptiveWriter implements RecordWriter {
  private mode: 'loop' | 'thread' = 'loop'
  private switching: Promise<void> | null = null
  private appended = 0
  private quietSamples = 0
  private readonly timer: NodeJS.Timeout
  private closed = false

  constructor(
    private readonly loop: GroupCommitWriter,
    private readonly thread: ThreadedWriter,
    private readonly store: StreamStore,
  ) {
    this.timer = setInterval(() => this.sample(), SAMPLE_MS)
    this.timer.unref()
  }

  get lastError(): GatewayError | null {
    return this.mode === 'loop' ? this.loop.lastError : this.thread.lastError
  }

  /** Which writer commits now (for tests and diagnostics). */
  get current(): 'loop' | 'thread' {
    return this.mode
  }

  stats(): WriterStats {
    const a = this.loop.stats()
    const b = this.thread.stats()
    return { commits: a.commits + b.commits, records: a.records + b.records, failedCommits: a.failedCommits + b.failedCommits, queuedRecords: a.queuedRecords + b.queuedRecords }
  }

  append(topic: TopicState, records: OutgoingRecord[]): Promise<AppendResult[]> {
    if (this.switching) return this.switching.then(() => this.append(topic, records))
    this.appended += records.length
    return this.mode === 'loop' ? this.loop.append(topic, records) : this.thread.append(topic, records)
  }

  /** Switch now (tests); the sampler does it by the load otherwise. */
  switchTo(mode: 'loop' | 'thread'): Promise<void> {
    if (this.switching) return this.switching.then(() => this.switchTo(mode))
    if (mode === this.mode || this.closed) return Promise.resolve()
    const done = (mode === 'thread' ? this.toThread() : this.toLoop()).finally(() => {
      this.switching = null
    })
    this.switching = done
    return done
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    if (this.switching) await this.switching.catch(() => undefined)
    await this.loop.close()
    await this.thread.close()
  }

  private sample(): void {
    const perSecond = (this.appended * 1000) / SAMPLE_MS
    this.appended = 0
    if (this.switching || this.closed) return
    if (this.mode === 'loop') {
      if (perSecond > THREAD_ABOVE) void this.switchTo('thread')
      return
    }
    this.quietSamples = perSecond < LOOP_BELOW ? this.quietSamples + 1 : 0
    if (this.quietSamples >= 1000 / SAMPLE_MS) {
      this.quietSamples = 0
      void this.switchTo('loop')
    }
  }

  private async toThread(): Promise<void> {
    // Commits everything the loop writer queued, synchronously; their calls settle with it.
    this.loop.flush()
    this.thread.reloadOffsets()
    this.mode = 'thread'
  }

  private async toLoop(): Promise<void> {
    await this.thread.idle()
    for (const topic of this.store.allTopics()) this.store.loadNextOffsets(topic)
    this.mode = 'loop'
  }
}
