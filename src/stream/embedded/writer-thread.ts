import { Worker } from 'node:worker_threads'
import { GatewayError } from '../../errors/catalogue.js'
import type { AppendResult, OutgoingRecord } from '../types.js'
import { checkRecord, encodeBatch, type BatchCall } from './record-batch.js'
import type { TopicState } from './store.js'
import { siblingWorkerFile } from './worker-file.js'
import type { RecordWriter, WriterStats } from './writer.js'
import type { FromWorker, ToWorker, WireError, WriterThreadConfig } from './writer-protocol.js'

/**
 * A turn of the loop that reads many sockets can take milliseconds; the thread gets what it has
 * so far every this many records, so it commits while the loop goes on parsing instead of the
 * two taking turns (measured: without it the loop idled a quarter of the time under saturation).
 */
const POST_EVERY_RECORDS = 128

interface QueuedCall extends BatchCall {
  resolve: (results: AppendResult[]) => void
  reject: (err: GatewayError) => void
}

/**
 * The group-commit writer on a thread of its own (writer-worker.ts), seen from the event loop.
 * Appends made in one turn of the loop are packed into one buffer (record-batch.ts) and posted in
 * one message; the thread commits them and answers with each record's partition and offset.
 * A call's promise settles only when that answer comes back, that is once its transaction has
 * committed: the delivery promise of the in-thread writer (PUBACK only after durable) holds.
 *
 * If the thread dies, every call it held is rejected with E_STREAM_UNAVAILABLE (the ingest keeps
 * those publishes unacknowledged and retries; a record whose commit did happen is then stored
 * twice, never lost) and the next append starts a new thread, which re-reads the offsets.
 */
export class ThreadedWriter implements RecordWriter {
  private worker: Worker | null = null
  private queue: QueuedCall[] = []
  private scheduled = false
  private readonly inFlight = new Map<number, QueuedCall[]>()
  private nextId = 1
  private queuedRecords = 0
  /** Records queued here and not yet posted to the thread. */
  private unposted = 0
  private totals = { commits: 0, records: 0, failedCommits: 0 }
  private closing: Promise<void> | null = null
  /** Why the thread could not open the stream file, when it could not. */
  private fatal: GatewayError | null = null
  lastError: GatewayError | null = null

  constructor(
    private readonly config: WriterThreadConfig,
    private readonly now: () => number,
    private readonly onCommitted: (topics: ReadonlySet<string>) => void,
  ) {}

  stats(): WriterStats {
    return { ...this.totals, queuedRecords: this.queuedRecords }
  }

  append(topic: TopicState, records: OutgoingRecord[]): Promise<AppendResult[]> {
    if (this.closing) return Promise.reject(new GatewayError('E_STREAM_CLOSED', 'the event stream has been stopped'))
    for (const record of records) checkRecord(topic.name, record)
    if (records.length === 0) return Promise.resolve([])
    return new Promise((resolve, reject) => {
      this.queue.push({ topic: topic.name, records, resolve, reject })
      this.queuedRecords += records.length
      this.unposted += records.length
      if (this.unposted >= POST_EVERY_RECORDS) this.post()
      else if (!this.scheduled) {
        // The appends of this turn of the loop (the publishes of the socket reads in it, lifecycle
        // events) ride in one message: a postMessage costs as much as dozens of records.
        this.scheduled = true
        setImmediate(() => this.post())
      }
    })
  }

  /** Resolves once everything appended so far has been answered (sent first if still queued). */
  async idle(): Promise<void> {
    this.post()
    const worker = this.worker
    while (worker && this.inFlight.size > 0 && this.worker === worker) {
      await new Promise((resolve) => worker.once('message', resolve))
    }
  }

  /**
   * Another writer has written to the file since this thread last did (AdaptiveWriter): the thread
   * re-reads each partition's next offset before its next commit. A thread started later reads
   * them when it opens the file anyway.
   */
  reloadOffsets(): void {
    this.worker?.postMessage({ type: 'reload' } satisfies ToWorker)
  }

  /** Send what is queued, wait until the thread has answered for all of it, then stop the thread. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private post(): void {
    this.scheduled = false
    this.unposted = 0
    if (this.queue.length === 0) return
    const calls = this.queue
    this.queue = []
    const id = this.nextId++
    const { data, length } = encodeBatch(calls, this.now)
    this.inFlight.set(id, calls)
    const worker = this.thread()
    worker.ref()
    worker.postMessage({ type: 'append', id, data, length }, [data])
  }

  private thread(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(siblingWorkerFile(import.meta.url, 'writer-worker'), { workerData: this.config, name: 'stream-writer' })
    worker.on('message', (message: FromWorker) => this.received(message))
    worker.on('error', (err) => this.lost(worker, `the stream writer thread failed: ${err.message}`))
    worker.on('exit', (code) => this.lost(worker, `the stream writer thread exited (code ${code})`))
    this.worker = worker
    return worker
  }

  private received(message: FromWorker): void {
    switch (message.type) {
      case 'done':
        this.totals = { commits: message.commits, records: message.records, failedCommits: message.failedCommits }
        this.lastError = null
        this.settle(message.id, (calls) => resolveCalls(calls, message.placed))
        this.onCommitted(new Set(message.topics))
        break
      case 'failed':
        this.totals.failedCommits = message.failedCommits
        this.lastError = fromWire(message.error)
        this.settle(message.id, (calls) => calls.forEach((c) => c.reject(this.lastError!)))
        break
      case 'fatal':
        this.fatal = fromWire(message.error)
        break
      case 'ready':
      case 'closed':
        break
    }
  }

  private settle(id: number, outcome: (calls: QueuedCall[]) => void): void {
    const calls = this.inFlight.get(id)
    if (!calls) return
    this.inFlight.delete(id)
    for (const call of calls) this.queuedRecords -= call.records.length
    outcome(calls)
    // An idle writer thread does not keep the process alive; one holding records does.
    if (this.inFlight.size === 0) this.worker?.unref()
  }

  /** The thread is gone: whatever it held has an unknown outcome and is failed (see the class comment). */
  private lost(worker: Worker, reason: string): void {
    if (this.worker !== worker) return
    this.worker = null
    const error = this.fatal ?? new GatewayError('E_STREAM_UNAVAILABLE', reason)
    this.fatal = null
    if (this.closing === null) this.lastError = error
    for (const id of [...this.inFlight.keys()]) this.settle(id, (calls) => calls.forEach((c) => c.reject(error)))
  }

  private async shutdown(): Promise<void> {
    this.post()
    const worker = this.worker
    if (!worker) return
    while (this.inFlight.size > 0 && this.worker === worker) {
      await new Promise((resolve) => worker.once('message', resolve))
    }
    if (this.worker !== worker) return
    const exited = new Promise((resolve) => worker.once('exit', resolve))
    worker.postMessage({ type: 'close' })
    await exited
  }
}

function resolveCalls(calls: QueuedCall[], placed: Float64Array): void {
  let i = 0
  for (const call of calls) {
    const results: AppendResult[] = new Array(call.records.length)
    for (let r = 0; r < results.length; r++, i++) results[r] = { topic: call.topic, partition: placed[2 * i]!, offset: placed[2 * i + 1]! }
    call.resolve(results)
  }
}

function fromWire(error: WireError): GatewayError {
  return new GatewayError(error.code, error.message, error.details)
}

/**
 * The compiled worker beside this module. Under vitest this module runs from its TypeScript
 * source, which a worker cannot load: the build's copy in dist/ is used then (npm test builds first).
 */
