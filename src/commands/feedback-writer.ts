import type { GatewayMetrics } from '../observability/metrics.js'
import type { Logger } from '../observability/logger.js'
import type { EventStream } from '../stream/types.js'
import { RerunningTask } from '../stream/rerun.js'
import type { CommandQueue } from './types.js'

/**
 * Moves feedback from the queue's outbox to the `command-feedback` topic. The outbox row is
 * written in the transaction that ends the message, so an end is never lost; a writer claims rows
 * (several gateways may share the store), appends them, and deletes them only once the stream has
 * them durably. A gateway dying between append and delete has the rows written again after the
 * claim lapses (at-least-once on the stream only then; consumers dedupe on messageId).
 */
export class FeedbackWriter {
  private readonly drains = new RerunningTask(() => this.drain())
  private readonly log: Logger

  constructor(
    private readonly queue: CommandQueue,
    private readonly stream: EventStream,
    private readonly topic: string,
    logger: Logger,
    private readonly metrics?: GatewayMetrics,
    private readonly batchSize = 200,
  ) {
    this.log = logger.child({ component: 'command-feedback' })
  }

  /** Write what the outbox holds; calls while a flush runs make it run once more. */
  flush(): Promise<void> {
    return this.drains.run()
  }

  private async drain(): Promise<void> {
    for (;;) {
      const pending = await this.queue.pendingFeedback(this.batchSize).catch((err: unknown) => this.failed(err, []))
      if (!pending || pending.length === 0) return
      const ids = pending.map((p) => p.id)
      try {
        await this.stream.append(
          this.topic,
          pending.map(({ feedback }) => ({ key: feedback.deviceId, value: Buffer.from(JSON.stringify(feedback)), headers: { status: feedback.status } })),
        )
      } catch (err) {
        // Kept in the outbox; the next settle or sweep retries.
        await this.queue.releaseFeedback(ids).catch(() => undefined)
        return this.failed(err, undefined)
      }
      for (const { feedback } of pending) this.metrics?.c2dFeedback.inc({ status: feedback.status })
      const removed = await this.queue.removeFeedback(ids).then(() => true, (err: unknown) => this.failed(err, false))
      if (!removed) return
    }
  }

  private failed<T>(err: unknown, value: T): T {
    this.log.warn({ err: (err as Error).message }, 'command feedback not written yet')
    return value
  }
}
