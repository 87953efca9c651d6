import { CompressionTypes, type Kafka, type Message, type Producer, type RecordMetadata } from 'kafkajs'
import { GatewayError } from '../../errors/catalogue.js'
import { partitionForKey } from '../partitioner.js'
import type { AppendResult, OutgoingRecord } from '../types.js'
import { describeError, toKafkaStreamError } from './errors.js'

export interface AppenderOptions {
  appendTimeoutMs: number
  maxBatchRecords: number
  lingerMs: number
  requestTimeoutMs: number
}

interface PendingAppend {
  topic: string
  partitions: number[]
  records: OutgoingRecord[]
  /** Approximate encoded bytes per `topic/partition`. */
  bytes: Map<string, number>
  resolve: (results: AppendResult[]) => void
  reject: (err: GatewayError) => void
}

/**
 * Kafka limits one partition's record batch to message.max.bytes (1 MB by default): a request
 * carries at most this much per partition (a single larger call still goes out alone).
 */
const MAX_PARTITION_BYTES = 900 * 1024
/** And at most this much in all, to keep one request's memory and latency bounded. */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024
/** Pause before sending an unacknowledged request again, doubling up to the maximum. */
const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 2000

/** Broker answers after which this producer's sequence numbers mean nothing: a new producer is needed. */
const PRODUCER_LOST = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING', 'PRODUCER_FENCED'])
/** Broker answers no retry of the same request can change. */
const PERMANENT = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'TOPIC_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'INVALID_REQUIRED_ACKS'])

function errorTypes(err: unknown): string[] {
  const types: string[] = []
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const type = (e as { type?: unknown }).type
    if (typeof type === 'string') types.push(type)
    e = (e as { originalError?: unknown; cause?: unknown }).originalError ?? (e as { cause?: unknown }).cause
  }
  return types
}

const isProducerLost = (err: unknown): boolean => errorTypes(err).some((t) => PRODUCER_LOST.has(t))
const isPermanent = (err: unknown): boolean => errorTypes(err).some((t) => PERMANENT.has(t))

/** The produce path as KafkaEventStream sees it: KafkaAppender here, or on its own thread (producer-thread.ts). */
export interface RecordProducer {
  /** `partitionCount` is the topic's partition count; the caller has checked that the topic exists. */
  append(topic: string, partitionCount: number, records: OutgoingRecord[]): Promise<AppendResult[]>
  /** Shutdown has begun (see KafkaAppender.beginStop). */
  beginStop(): void
  /** Sends what is queued (bounded as beginStop says), then lets the producer go. */
  close(): Promise<void>
  /** Why the request at the head has not been acknowledged yet, and since when; null while all is well. */
  readonly stall: { reason: string; since: number } | null
  /** Set by a failed produce request, cleared by the next success (for health()). */
  readonly lastError: string | null
  /** Told of every failed attempt (for the append-errors counter). */
  onAttemptFailed: (err: GatewayError) => void
  /** Forget lastError if it is older than `before` (ms since the epoch): Kafka answered since. */
  clearErrorBefore(before: number): void
}

/**
 * Group commit for Kafka: appends queued while a produce request is in flight go out together in
 * the next one (batching across devices and topics), and only one request is in flight at a time.
 * That keeps per-key order equal to call order, lets each record's offset be computed from the
 * partition's base offset, and makes each call resolve only after acks from all in-sync replicas.
 *
 * The producer is idempotent, and a request that fails or gets no answer is sent again AS IT WAS
 * (same records, same order, same producer, so the same sequence numbers) until Kafka answers:
 * if the first attempt did reach the log, Kafka recognises the retry as a duplicate and answers
 * with the offsets it already gave, so a broker that hangs (frozen, partitioned) and comes back
 * stores every record exactly once. Meanwhile the calls stay pending, which holds the devices'
 * PUBACKs; `stall` says why for health(), and after appendTimeoutMs without an answer the
 * stall is reported even while kafkajs is still waiting on its socket.
 *
 * Only when the producer itself is lost (fenced, out of sequence, unknown producer id) is it
 * replaced by a new one; a record that did reach Kafka may then be stored twice, never lost.
 * Errors that no retry can fix (an unknown topic, a record Kafka refuses) reject the calls.
 */
export class KafkaAppender implements RecordProducer {
  private queue: PendingAppend[] = []
  private producer: Promise<Producer> | null = null
  private sending: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private roundRobin = 0
  /** Set when shutdown stops waiting for Kafka; every attempt fails with it from then on. */
  private abandoned: GatewayError | null = null
  private wakeRetry: (() => void) | null = null
  private abandonWait: ((err: GatewayError) => void) | null = null
  /** Runs from beginStop(): gives up once a request has waited appendTimeoutMs during shutdown. */
  private stopWatch: NodeJS.Timeout | null = null
  /** Why the request at the head has not been acknowledged yet, and since when; null while all is well. */
  stall: { reason: string; since: number } | null = null
  /** Told of every failed attempt (for the append-errors counter). */
  onAttemptFailed: (err: GatewayError) => void = () => undefined
  /** Set by a failed produce request, cleared by the next success (for health()). */
  lastError: string | null = null
  /** When lastError was set (ms since the epoch). */
  lastErrorAt = 0

  constructor(
    private readonly kafka: Kafka,
    private readonly options: AppenderOptions,
  ) {}

  /** `partitions` is the topic's partition count; the caller has checked that the topic exists. */
  append(topic: string, partitionCount: number, records: OutgoingRecord[]): Promise<AppendResult[]> {
    if (records.length === 0) return Promise.resolve([])
    const partitions = records.map((r) => (r.key === null ? this.roundRobin++ % partitionCount : partitionForKey(r.key, partitionCount)))
    const bytes = new Map<string, number>()
    records.forEach((r, i) => {
      const key = `${topic}/${partitions[i]!}`
      bytes.set(key, (bytes.get(key) ?? 0) + recordBytes(r))
    })
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, partitions, records, bytes, resolve, reject })
      this.schedule()
    })
  }

  clearErrorBefore(before: number): void {
    if (this.lastErrorAt < before) this.lastError = null
  }

  /**
   * Shutdown has begun: from now on, a request Kafka leaves unanswered for appendTimeoutMs
   * (counted from now at the earliest) is given up, and so is everything after it: the calls
   * reject with E_STREAM_UNAVAILABLE (outcome unknown; devices were not acknowledged and resend,
   * device events stay in their outbox). Until then appends go on as usual, so a shutdown that
   * takes a while on a healthy cluster still writes its last records.
   */
  beginStop(): void {
    if (this.stopWatch) return
    const stopAt = Date.now()
    const { appendTimeoutMs } = this.options
    this.stopWatch = setInterval(() => {
      if (this.stall && Date.now() - Math.max(this.stall.since, stopAt) >= appendTimeoutMs) this.abandon()
    }, Math.min(250, Math.max(10, appendTimeoutMs / 4)))
    this.stopWatch.unref()
  }

  /** Sends what is queued (bounded as beginStop says), then disconnects the producer. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.beginStop()
    try {
      while (this.sending || this.queue.length > 0) {
        this.sending ??= this.sendLoop()
        await this.sending
      }
    } finally {
      if (this.stopWatch) clearInterval(this.stopWatch)
    }
    // Given up on a silent Kafka: its disconnect would wait on the same silence; let it finish alone.
    if (this.abandoned) void this.dropProducer()
    else await this.dropProducer()
  }

  /** Give up on everything (shutting down, Kafka silent for too long). */
  private abandon(): void {
    if (this.abandoned) return
    this.abandoned = new GatewayError('E_STREAM_UNAVAILABLE', `Kafka did not answer within ${this.options.appendTimeoutMs} ms while the gateway was stopping`)
    this.wakeRetry?.()
    this.abandonWait?.(this.abandoned)
  }

  private schedule(): void {
    if (this.sending || this.timer) return
    const start = (): void => {
      this.timer = null
      this.sending ??= this.sendLoop()
    }
    if (this.options.lingerMs > 0) this.timer = setTimeout(start, this.options.lingerMs)
    else this.timer = setTimeout(start, 0)
  }

  private async sendLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.sendBatch(this.takeBatch())
    } finally {
      this.sending = null
    }
  }

  /** Whole calls, within maxBatchRecords and the byte limits above (at least one call). */
  private takeBatch(): PendingAppend[] {
    let records = 0
    let total = 0
    const perPartition = new Map<string, number>()
    let n = 0
    for (const call of this.queue) {
      let callTotal = 0
      let overPartition = false
      for (const [key, b] of call.bytes) {
        callTotal += b
        if ((perPartition.get(key) ?? 0) + b > MAX_PARTITION_BYTES) overPartition = true
      }
      if (n > 0 && (overPartition || records + call.records.length > this.options.maxBatchRecords || total + callTotal > MAX_REQUEST_BYTES)) break
      for (const [key, b] of call.bytes) perPartition.set(key, (perPartition.get(key) ?? 0) + b)
      records += call.records.length
      total += callTotal
      n++
    }
    return this.queue.splice(0, n)
  }

  private async sendBatch(batch: PendingAppend[]): Promise<void> {
    // Built once: every attempt sends exactly this request (see the class comment).
    const byTopic = new Map<string, Message[]>()
    for (const call of batch) {
      const messages = byTopic.get(call.topic) ?? []
      call.records.forEach((r, i) => messages.push(toMessage(r, call.partitions[i]!)))
      byTopic.set(call.topic, messages)
    }
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }))
    let delay = RETRY_MIN_MS
    for (;;) {
      try {
        const metadata = await this.attempt(topicMessages)
        this.stall = null
        this.lastError = null
        settle(batch, metadata)
        return
      } catch (err) {
        const error = toKafkaStreamError(err, 'cannot append to Kafka', batch[0]?.topic)
        this.lastError = describeError(err)
        this.lastErrorAt = Date.now()
        this.onAttemptFailed(error)
        const final = this.abandoned ?? (error.code === 'E_STREAM_UNAVAILABLE' && !isPermanent(err) ? null : error)
        if (final) {
          this.stall = null
          for (const call of batch) call.reject(final)
          return
        }
        this.stall = { reason: `produce request not acknowledged: ${this.lastError}`, since: this.stall?.since ?? Date.now() }
        if (isProducerLost(err)) await this.dropProducer()
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay)
          this.wakeRetry = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        this.wakeRetry = null
        delay = Math.min(delay * 2, RETRY_MAX_MS)
      }
    }
  }

  /** One produce request. Past appendTimeoutMs without an answer the stall is reported; the request goes on. */
  private async attempt(topicMessages: Array<{ topic: string; messages: Message[] }>): Promise<RecordMetadata[]> {
    if (this.abandoned) throw this.abandoned
    const slow = setTimeout(() => {
      this.stall = { reason: `no acknowledgement from Kafka for ${this.options.appendTimeoutMs} ms`, since: this.stall?.since ?? Date.now() - this.options.appendTimeoutMs }
    }, this.options.appendTimeoutMs)
    try {
      // Connecting counts as part of the attempt: a producer first needed while Kafka is frozen
      // waits here, and that wait is reported and given up like any other.
      const send = this.connectedProducer().then((producer) =>
        producer.sendBatch({ acks: -1, timeout: this.options.requestTimeoutMs, compression: CompressionTypes.None, topicMessages }),
      )
      // Shutdown past its deadline stops waiting; the request's outcome no longer matters then.
      return await Promise.race([send, new Promise<never>((_, reject) => (this.abandonWait = reject))])
    } finally {
      clearTimeout(slow)
      this.abandonWait = null
    }
  }

  /**
   * The producer, connected. A connect that fails is forgotten, so that the next attempt connects
   * again (a producer first needed while Kafka is down must not stay failed once it is back).
   */
  private connectedProducer(): Promise<Producer> {
    if (this.producer) return this.producer
    const connecting = (async () => {
      const producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Short: sendBatch sends a failed request again itself (the same request, see above).
        retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
      })
      try {
        await producer.connect()
      } catch (err) {
        await producer.disconnect().catch(() => undefined)
        throw err
      }
      return producer
    })()
    this.producer = connecting
    connecting.catch(() => {
      if (this.producer === connecting) this.producer = null
    })
    return connecting
  }

  private async dropProducer(): Promise<void> {
    const current = this.producer
    this.producer = null
    if (!current) return
    await current.then((p) => p.disconnect()).catch(() => undefined)
  }
}

function toMessage(record: OutgoingRecord, partition: number): Message {
  return {
    key: record.key,
    value: record.value,
    partition,
    headers: record.headers ?? {},
    timestamp: String(record.timestamp ?? Date.now()),
  }
}

function recordBytes(record: OutgoingRecord): number {
  let bytes = record.value.length + (record.key?.length ?? 0) + 32
  for (const [k, v] of Object.entries(record.headers ?? {})) bytes += k.length + v.length + 8
  return bytes
}

/** Records of one partition in a request get consecutive offsets from its base offset, in order. */
function settle(batch: PendingAppend[], metadata: RecordMetadata[]): void {
  const next = new Map<string, number>()
  for (const m of metadata) next.set(`${m.topicName}/${m.partition}`, Number(m.baseOffset ?? m.offset))
  for (const call of batch) {
    const results = call.partitions.map((partition) => {
      const key = `${call.topic}/${partition}`
      const offset = next.get(key)
      if (offset === undefined || Number.isNaN(offset)) throw new GatewayError('E_STREAM_UNAVAILABLE', `Kafka returned no offset for ${key}`)
      next.set(key, offset + 1)
      return { topic: call.topic, partition, offset }
    })
    call.resolve(results)
  }
}
