import type { ConsumeOptions, Consumer, StoredRecord } from '../types.js'
import { describeError } from './errors.js'
import type { PartitionFetcher } from './fetcher.js'

export interface DirectConsumerContext {
  fetcher: PartitionFetcher
  fetchMaxWaitMs: number
  /** Start offsets already resolved by the caller (committed, earliest or latest). */
  positions: Map<number, number>
}

/** Pause after a failed fetch (broker gone, leader moving) before the next attempt. */
const RETRY_MS = 500

/**
 * A consumer without group coordination (Kafka's assign()): no group, or an explicit partition
 * list. Its starting positions are fixed before consume() resolves, which is what lets a 'latest'
 * consumer see every record appended afterwards. With a group (and a partition list) it commits
 * like Kafka's standalone consumers, through an offset commit outside group membership.
 */
export class KafkaDirectConsumer implements Consumer {
  private running = true
  private loop: Promise<void> | null = null
  private wake: (() => void) | null = null

  constructor(
    private readonly options: ConsumeOptions,
    private readonly ctx: DirectConsumerContext,
  ) {}

  start(): void {
    this.loop = this.run()
  }

  async stop(): Promise<void> {
    this.running = false
    this.wake?.()
    await this.loop
  }

  private async run(): Promise<void> {
    const { topic } = this.options
    const maxBatch = Math.max(1, this.options.maxBatch ?? 500)
    while (this.running) {
      let fetched: Map<string, StoredRecord[]>
      try {
        const positions = [...this.ctx.positions].map(([partition, offset]) => ({ topic, partition, offset }))
        fetched = await this.ctx.fetcher.fetch(positions, this.ctx.fetchMaxWaitMs, maxBatch)
      } catch {
        // Transient by nature (the stream is remote); the loop retries until stopped.
        await this.pause(RETRY_MS)
        continue
      }
      for (const [key, records] of fetched) {
        if (!this.running || records.length === 0) continue
        const partition = Number(key.slice(key.lastIndexOf('/') + 1))
        if (!(await this.deliver(partition, records))) return
      }
    }
  }

  /** Hands one batch to the handler, then advances (and commits); false once the consumer ended. */
  private async deliver(partition: number, records: StoredRecord[]): Promise<boolean> {
    const { topic, group } = this.options
    try {
      await this.options.handler(records)
      const next = records[records.length - 1]!.offset + 1
      this.ctx.positions.set(partition, next)
      if (group !== undefined) await this.ctx.fetcher.commit(group, topic, [{ partition, offset: next }])
      return true
    } catch (err) {
      this.running = false
      this.options.onError?.(err instanceof Error ? err : new Error(describeError(err)))
      return false
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }
}
