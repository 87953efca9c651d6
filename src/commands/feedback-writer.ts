import type { Logger } from '../observability/logger.js'
import type { EventStream } from '../stream/types.js'
import type { CommandQueue } from './types.js'

/**
 * Moves feedback from the queue's outbox to the `command-feedback` topic. The outbox row is
 * written in the transaction that ends the message, so an end is never lost; it is deleted only
 * after the stream has the record durably. A crash between the two writes the record again on the
 * next start (at-least-once on the stream; consumers dedupe on messageId + status).
 */
export class FeedbackWriter {
  private running: Promise<void> | null = null
  private again = false
  private readonly log: Logger

  constructor(
    private readonly queue: CommandQueue,
    private readonly stream: EventStream,
    private readonly topic: string,
    logger: Logger,
    private readonly batchSize = 200,
  ) {
    this.log = logger.child({ component: 'command-feedback' })
  }

  /** Write what the outbox holds; calls while a flush runs make it run once more. */
  flush(): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = this.drain().finally(() => {
      this.running = null
      if (this.again) {
        this.again = false
        void this.flush()
      }
    })
    return this.running
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        const pending = await this.queue.pendingFeedback(this.batchSize)
        if (pending.length === 0) return
        await this.stream.append(
          this.topic,
          pending.map(({ feedback }) => ({ key: feedback.deviceId, value: Buffer.from(JSON.stringify(feedback)), headers: { status: feedback.status } })),
        )
        await this.queue.removeFeedback(pending.map((p) => p.id))
      }
    } catch (err) {
      // Kept in the outbox; the next settle or sweep retries.
      this.log.warn({ err: (err as Error).message }, 'command feedback not written yet')
    }
  }
}
