import type { Consumer as KafkaJsConsumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from 'kafkajs'
import { GatewayError } from '../../errors/catalogue.js'
import type { ConsumeOptions, Consumer, Headers, StoredRecord } from '../types.js'
import { describeError, toKafkaStreamError } from './errors.js'

export interface GroupConsumerSettings {
  sessionTimeoutMs: number
  heartbeatIntervalMs: number
  fetchMaxWaitMs: number
}

/**
 * A consumer-group member on kafkajs: Kafka's group protocol assigns partitions, and after each
 * handled batch its offset is committed explicitly (never auto-commit), so a batch whose handler
 * rejects is not committed and goes to the next member. Batches are cut to `maxBatch` records.
 */
export class KafkaGroupConsumer implements Consumer {
  private readonly consumer: KafkaJsConsumer
  private failed = false
  private stopping: Promise<void> | null = null

  constructor(
    kafka: Kafka,
    private readonly options: ConsumeOptions & { group: string },
    settings: GroupConsumerSettings,
  ) {
    this.consumer = kafka.consumer({
      groupId: options.group,
      sessionTimeout: settings.sessionTimeoutMs,
      rebalanceTimeout: settings.sessionTimeoutMs,
      heartbeatInterval: settings.heartbeatIntervalMs,
      maxWaitTimeInMs: settings.fetchMaxWaitMs,
      allowAutoTopicCreation: false,
      retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
    })
  }

  /** Resolves once this member has joined the group and holds its assignment. */
  async start(joinTimeoutMs: number): Promise<void> {
    const { topic, from = 'latest' } = this.options
    let onJoin: () => void = () => undefined
    const joined = new Promise<void>((resolve) => (onJoin = resolve))
    const removeListener = this.consumer.on(this.consumer.events.GROUP_JOIN, () => onJoin())
    let timer: NodeJS.Timeout | undefined
    try {
      await this.consumer.connect()
      await this.consumer.subscribe({ topics: [topic], fromBeginning: from === 'earliest' })
      await this.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: (payload) => this.eachBatch(payload),
      })
      await Promise.race([
        joined,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new GatewayError('E_STREAM_UNAVAILABLE', `consumer group ${this.options.group} did not form within ${joinTimeoutMs} ms`)), joinTimeoutMs)
        }),
      ])
    } catch (err) {
      await this.stop()
      throw toKafkaStreamError(err, 'cannot start Kafka consumer', topic)
    } finally {
      clearTimeout(timer)
      removeListener()
    }
  }

  stop(): Promise<void> {
    // disconnect() waits for the batch being handled, then leaves the group.
    this.stopping ??= this.consumer.disconnect().catch(() => undefined)
    return this.stopping
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const maxBatch = Math.max(1, this.options.maxBatch ?? 500)
    const records = batch.messages.map((m) => toStoredRecord(batch.topic, batch.partition, m))
    for (let i = 0; i < records.length; i += maxBatch) {
      if (this.failed || this.stopping || !isRunning() || isStale()) return
      const chunk = records.slice(i, i + maxBatch)
      try {
        await this.options.handler(chunk)
      } catch (err) {
        this.fail(err)
        return
      }
      const last = chunk[chunk.length - 1]!
      resolveOffset(String(last.offset))
      try {
        await this.consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(last.offset + 1) }])
      } catch {
        // A rebalance took the partition away: the batch was handled and will be handed to the new
        // owner again (at-least-once), which is the group protocol's promise.
        return
      }
      await heartbeat()
    }
  }

  private fail(err: unknown): void {
    this.failed = true
    const error = err instanceof Error ? err : new Error(describeError(err))
    // Not awaited: stop() waits for this very batch to return.
    void this.stop().then(() => this.options.onError?.(error))
  }
}

export function toStoredRecord(topic: string, partition: number, m: KafkaMessage): StoredRecord {
  return {
    topic,
    partition,
    offset: Number(m.offset),
    key: m.key === null ? null : m.key.toString('utf8'),
    value: m.value ?? Buffer.alloc(0),
    headers: headersOf(m.headers),
    timestamp: Number(m.timestamp),
  }
}

function headersOf(raw: IHeaders | undefined): Headers {
  const out: Headers = {}
  for (const [key, value] of Object.entries(raw ?? {})) {
    if (value === undefined) continue
    const last = Array.isArray(value) ? value[value.length - 1] : value
    if (last !== undefined) out[key] = last.toString()
  }
  return out
}
