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

/**
 * Group commit for Kafka: appends queued while a produce request is in flight go out together in
 * the next one (batching across devices and topics), and only one request is in flight at a time.
 * That keeps per-key order equal to call order, lets each record's offset be computed from the
 * partition's base offset, and makes each call resolve only after acks from all in-sync replicas.
 *
 * The producer is idempotent. When a request fails or times out its outcome is unknown; before the
 * next request the producer is replaced (new producer id), because reusing the old one's sequence
 * numbers for different records could make the broker discard them as duplicates of the unknown
 * request. Failed calls reject with E_STREAM_UNAVAILABLE and are retried by the caller; a record
 * that did reach Kafka may then be stored twice, never lost.
 */
export class KafkaAppender {
  private queue: PendingAppend[] = []
  private producer: Promise<Producer> | null = null
  private sending: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private roundRobin = 0
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

  /** Sends what is queued, then disconnects the producer. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    while (this.sending || this.queue.length > 0) {
      this.sending ??= this.sendLoop()
      await this.sending
    }
    await this.dropProducer()
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
    const byTopic = new Map<string, Message[]>()
    for (const call of batch) {
      const messages = byTopic.get(call.topic) ?? []
      call.records.forEach((r, i) => messages.push(toMessage(r, call.partitions[i]!)))
      byTopic.set(call.topic, messages)
    }
    let timer: NodeJS.Timeout | undefined
    try {
      const producer = await this.connectedProducer()
      const send = producer.sendBatch({
        acks: -1,
        timeout: this.options.requestTimeoutMs,
        compression: CompressionTypes.None,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      })
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new GatewayError('E_STREAM_UNAVAILABLE', `no acknowledgement from Kafka within ${this.options.appendTimeoutMs} ms`)), this.options.appendTimeoutMs)
      })
      // The timed-out send keeps running inside kafkajs until its producer is dropped; its outcome
      // no longer matters (see the class comment).
      send.catch(() => undefined)
      const metadata = await Promise.race([send, timeout])
      this.lastError = null
      settle(batch, metadata)
    } catch (err) {
      const error = toKafkaStreamError(err, 'cannot append to Kafka', batch[0]?.topic)
      this.lastError = describeError(err)
      this.lastErrorAt = Date.now()
      await this.dropProducer()
      for (const call of batch) call.reject(error)
    } finally {
      clearTimeout(timer)
    }
  }

  private connectedProducer(): Promise<Producer> {
    this.producer ??= (async () => {
      const producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Short: the whole call is bounded by appendTimeoutMs and retried by the caller.
        retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
      })
      await producer.connect()
      return producer
    })()
    return this.producer
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
