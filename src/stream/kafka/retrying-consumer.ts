import type { ConsumeOptions, Consumer } from '../types.js'
import type { GatewayError } from '../../errors/catalogue.js'

/**
 * A consumer asked for while Kafka is unreachable (or its topic is still being provisioned): like
 * Kafka's own clients it keeps trying to start in the background instead of failing the caller, so
 * that a gateway started before its cluster comes up by itself once the cluster does. Its start
 * position ('latest', committed offsets) is resolved when it finally starts. An error that retrying
 * cannot fix (E_STREAM_TOPIC_UNKNOWN for a topic nobody provisions) goes to `onError`.
 */
export class RetryingConsumer implements Consumer {
  private inner: Consumer | null = null
  private stopped = false
  private timer: NodeJS.Timeout | null = null
  private attempt: Promise<void> | null = null

  constructor(
    private readonly options: ConsumeOptions,
    private readonly startConsumer: () => Promise<Consumer>,
    /** Whether a failed start should be tried again. */
    private readonly retriable: (err: GatewayError) => boolean,
    private readonly toError: (err: unknown) => GatewayError,
    private readonly retryMs: number,
  ) {
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    await this.attempt
    await this.inner?.stop()
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = null
      this.attempt = this.tryStart()
    }, this.retryMs)
  }

  private async tryStart(): Promise<void> {
    if (this.stopped) return
    try {
      this.inner = await this.startConsumer()
      if (this.stopped) await this.inner.stop()
    } catch (err) {
      const error = this.toError(err)
      if (this.stopped) return
      if (this.retriable(error)) this.schedule()
      else this.options.onError?.(error)
    }
  }
}
