import { Worker } from 'node:worker_threads'
import { GatewayError } from '../../errors/catalogue.js'
import { checkRecord, encodeBatch } from '../embedded/record-batch.js'
import { siblingWorkerFile } from '../embedded/worker-file.js'
import type { WireError } from '../embedded/writer-protocol.js'
import type { AppendResult, OutgoingRecord } from '../types.js'
import type { RecordProducer } from './appender.js'
import type { KafkaEventStreamOptions } from './options.js'

/** The state health() reads, as the thread last reported it. */
export interface ProducerState {
  stall: { reason: string; since: number } | null
  lastError: string | null
}

/** Messages between the event loop (this file) and the producer thread (producer-worker.ts). */
export type ToProducer =
  /** `data` holds the calls packed by encodeBatch; `ids[i]` and `partitions[i]` belong to call i. */
  | { type: 'append'; ids: number[]; partitions: number[]; data: ArrayBuffer; length: number }
  | { type: 'beginStop' }
  | { type: 'clearErrorBefore'; before: number }
  | { type: 'close' }

export type FromProducer =
  /** Partition and offset of each record of call `id`, in order. */
  | { type: 'placed'; id: number; placed: Float64Array; state: ProducerState }
  | { type: 'failed'; id: number; error: WireError; state: ProducerState }
  | { type: 'attemptFailed'; error: WireError }
  | { type: 'state'; state: ProducerState }
  | { type: 'closed'; state: ProducerState }

/** As in writer-thread.ts: what a loop turn appended goes over in one message, or every this many records. */
const POST_EVERY_RECORDS = 256

interface QueuedCall {
  topic: string
  partitions: number
  records: OutgoingRecord[]
  resolve: (results: AppendResult[]) => void
  reject: (err: GatewayError) => void
}

/**
 * KafkaAppender on a thread of its own (producer-worker.ts), seen from the event loop. kafkajs
 * builds every record, header and request in fresh buffers; at saturation that was two thirds of
 * the event loop's time, so the loop now packs each turn's records into one transferred buffer
 * (record-batch.ts, as for the embedded stream's writer) and the thread encodes and sends them.
 *
 * The delivery promise is the appender's, unchanged: a call resolves only when the thread reports
 * Kafka's acknowledgement for it (acks from all in-sync replicas). The thread's appender keeps its
 * own retrying and stall reporting; its state comes back with every answer and every 100 ms, for
 * health(). If the thread dies, every call it held is rejected with E_STREAM_UNAVAILABLE (the
 * ingest keeps those publishes unacknowledged and retries them; one that did reach Kafka may then
 * be stored twice, never lost) and the next append starts a new thread with a new producer.
 */
export class ThreadedKafkaAppender implements RecordProducer {
  private worker: Worker | null = null
  private queue: QueuedCall[] = []
  private unposted = 0
  private scheduled = false
  private readonly inFlight = new Map<number, QueuedCall>()
  private nextId = 1
  private stopping = false
  private closing: Promise<void> | null = null
  private onClosed: (() => void) | null = null
  /** When the last thread was lost (its error is then this side's to clear), 0 if not. */
  private lostAt = 0
  stall: ProducerState['stall'] = null
  lastError: string | null = null
  onAttemptFailed: (err: GatewayError) => void = () => undefined

  constructor(private readonly options: KafkaEventStreamOptions) {}

  append(topic: string, partitionCount: number, records: OutgoingRecord[]): Promise<AppendResult[]> {
    if (this.closing) return Promise.reject(new GatewayError('E_STREAM_CLOSED', 'the event stream has been stopped'))
    try {
      for (const record of records) checkRecord(topic, record)
    } catch (err) {
      return Promise.reject(err)
    }
    if (records.length === 0) return Promise.resolve([])
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, partitions: partitionCount, records, resolve, reject })
      this.unposted += records.length
      if (this.unposted >= POST_EVERY_RECORDS) this.post()
      else if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.post())
      }
    })
  }

  beginStop(): void {
    this.stopping = true
    this.worker?.postMessage({ type: 'beginStop' } satisfies ToProducer)
  }

  clearErrorBefore(before: number): void {
    // The thread's own error is cleared there (and reported back); a lost thread's, here.
    if (this.lostAt > 0 && this.lostAt < before) {
      this.lostAt = 0
      this.lastError = null
    }
    this.worker?.postMessage({ type: 'clearErrorBefore', before } satisfies ToProducer)
  }

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
    const ids = calls.map((call) => {
      const id = this.nextId++
      this.inFlight.set(id, call)
      return id
    })
    const { data, length } = encodeBatch(calls, Date.now)
    const worker = this.thread()
    worker.ref()
    worker.postMessage({ type: 'append', ids, partitions: calls.map((c) => c.partitions), data, length } satisfies ToProducer, [data])
  }

  private thread(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(siblingWorkerFile(import.meta.url, 'producer-worker'), { workerData: this.options, name: 'kafka-producer' })
    worker.on('message', (message: FromProducer) => this.received(message))
    worker.on('error', (err) => this.lost(worker, `the Kafka producer thread failed: ${err.message}`))
    worker.on('exit', (code) => this.lost(worker, `the Kafka producer thread exited (code ${code})`))
    if (this.stopping) worker.postMessage({ type: 'beginStop' } satisfies ToProducer)
    this.worker = worker
    return worker
  }

  private received(message: FromProducer): void {
    if (message.type === 'attemptFailed') {
      this.onAttemptFailed(fromWire(message.error))
      return
    }
    this.stall = message.state.stall
    this.lastError = message.state.lastError
    this.lostAt = 0
    if (message.type === 'placed') this.settle(message.id, (call) => call.resolve(results(call, message.placed)))
    else if (message.type === 'failed') this.settle(message.id, (call) => call.reject(fromWire(message.error)))
    else if (message.type === 'closed') this.onClosed?.()
  }

  private settle(id: number, outcome: (call: QueuedCall) => void): void {
    const call = this.inFlight.get(id)
    if (!call) return
    this.inFlight.delete(id)
    outcome(call)
    // An idle producer thread does not keep the process alive; one holding records does.
    if (this.inFlight.size === 0 && !this.closing) this.worker?.unref()
  }

  /** The thread is gone: whatever it held has an unknown outcome and is failed (see the class comment). */
  private lost(worker: Worker, reason: string): void {
    if (this.worker !== worker) return
    this.worker = null
    const error = new GatewayError('E_STREAM_UNAVAILABLE', reason)
    if (!this.closing) {
      this.lastError = reason
      this.lostAt = Date.now()
    }
    this.stall = null
    for (const id of [...this.inFlight.keys()]) this.settle(id, (call) => call.reject(error))
    this.onClosed?.()
  }

  private async shutdown(): Promise<void> {
    this.post()
    const worker = this.worker
    if (!worker) return
    worker.ref()
    // The thread's appender sends what it holds (bounded by appendTimeoutMs once stopping), answers
    // for every call, then says closed; its producer may still wait on a silent broker: terminate.
    await new Promise<void>((resolve) => {
      this.onClosed = resolve
      worker.postMessage({ type: 'close' } satisfies ToProducer)
    })
    this.onClosed = null
    if (this.worker === worker) {
      this.worker = null
      const error = new GatewayError('E_STREAM_CLOSED', 'the event stream has been stopped')
      for (const id of [...this.inFlight.keys()]) this.settle(id, (call) => call.reject(error))
      await worker.terminate()
    }
  }
}

function results(call: QueuedCall, placed: Float64Array): AppendResult[] {
  const out: AppendResult[] = new Array(call.records.length)
  for (let i = 0; i < out.length; i++) out[i] = { topic: call.topic, partition: placed[2 * i]!, offset: placed[2 * i + 1]! }
  return out
}

function fromWire(error: WireError): GatewayError {
  return new GatewayError(error.code, error.message, error.details)
}
