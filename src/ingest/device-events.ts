import type { ConnectionContext, ConnectionObserver, DisconnectReason } from '../broker/ports.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry, PendingDeviceEvent } from '../registry/types.js'
import type { EventStream } from '../stream/types.js'
import { RerunningTask } from '../stream/rerun.js'

export type { DeviceEvent, DeviceEventType } from '../registry/types.js'

export interface DeviceEventWriterOptions {
  /** Events appended in one stream call. Default 200. */
  batchSize?: number
  /** First retry after a failed write, doubling up to retryMaxMs. Defaults 100 and 2000 ms. */
  retryMinMs?: number
  retryMaxMs?: number
  /**
   * How often the outbox is looked at without a change heard of: rows written by another process
   * on the registry file, or whose claim lapsed (a writer that died). Default 5000 ms.
   */
  sweepMs?: number
  /**
   * A recorded connect or disconnect is written to the stream this long after, with the others
   * of that time: in a connect storm one claim, append and removal then carry dozens of events
   * instead of one each. Default 10 ms.
   */
  coalesceMs?: number
}

/**
 * Moves lifecycle events from the registry's outbox to the `device-events` topic, and records
 * connects and disconnects in the registry (which writes their events in the same transaction,
 * with the device's next connection sequence number). Nothing is lost while the stream is down:
 * the events wait in the outbox and are written, in order, once it is back; a device never waits
 * for them.
 *
 * Order: connection changes of one device are recorded one after another (a per-device chain, so
 * a networked registry cannot reorder them); one drain loop per writer appends claimed rows in
 * outbox order, and the registry hands no writer a device's event while another holds an older
 * one. A writer dying between append and removal leaves its claim to lapse and the rows are
 * written again (at-least-once only then; consumers dedupe on deviceId plus sequence or time).
 */
export class DeviceEventWriter implements ConnectionObserver {
  private readonly chains = new Map<string, Promise<void>>()
  private readonly log: Logger
  private readonly batchSize: number
  private readonly retryMinMs: number
  private readonly retryMaxMs: number
  private readonly sweepMs: number
  private readonly coalesceMs: number
  private coalesceTimer: NodeJS.Timeout | null = null
  private readonly drains = new RerunningTask(() => this.drainOutbox())
  private retryDelayMs: number
  private retryTimer: NodeJS.Timeout | null = null
  private sweepTimer: NodeJS.Timeout | null = null
  private failing = false
  private stopped = false

  constructor(
    private readonly stream: EventStream,
    private readonly topic: string,
    private readonly registry: DeviceRegistry,
    private readonly metrics: GatewayMetrics,
    logger: Logger,
    options: DeviceEventWriterOptions = {},
  ) {
    this.log = logger.child({ component: 'device-events' })
    this.batchSize = options.batchSize ?? 200
    this.retryMinMs = options.retryMinMs ?? 100
    this.retryMaxMs = options.retryMaxMs ?? 2000
    this.sweepMs = options.sweepMs ?? 5000
    this.coalesceMs = options.coalesceMs ?? 10
    this.retryDelayMs = this.retryMinMs
    metrics.watchDeviceEventOutbox(() => registry.pendingEventCount())
  }

  /** Write what the outbox holds (events of a previous run, or of the CLI while no gateway ran), then keep sweeping. */
  start(): void {
    if (this.sweepTimer || this.stopped) return
    this.sweepTimer = setInterval(() => void this.flush(), this.sweepMs)
    this.sweepTimer.unref()
    void this.flush()
  }

  connected(ctx: ConnectionContext): void {
    this.record(ctx, 'connected')
  }

  disconnected(ctx: ConnectionContext, reason: DisconnectReason): void {
    this.record(ctx, 'disconnected', reason)
  }

  /**
   * Write the outbox to the stream; call after any registry change that is a device event.
   * Calls while a write runs make it run once more. Never rejects: a failure is logged and
   * retried with back-off.
   */
  flush(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    return this.drains.run()
  }

  /**
   * At shutdown: wait for the connection changes still being recorded, then write the outbox
   * once more. What the stream does not take stays in the outbox for the next start.
   */
  async drain(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()])
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
    if (this.coalesceTimer) clearTimeout(this.coalesceTimer)
    this.coalesceTimer = null
    this.clearRetry()
    await this.drains.idle()
    await this.flush()
    this.stopped = true
    this.clearRetry()
  }

  private record(ctx: ConnectionContext, state: 'connected' | 'disconnected', reason?: DisconnectReason): void {
    const facts = { connectionId: ctx.connectionId, remoteAddress: ctx.remoteAddress, transport: ctx.transport, authMethod: ctx.authMethod, ...(reason ? { reason } : {}) }
    const { deviceId } = ctx
    const previous = this.chains.get(deviceId) ?? Promise.resolve()
    const next = previous
      .then(() => this.registry.recordConnection(deviceId, state, new Date(), facts))
      .then(
        () => this.flushSoon(),
        // Neither the state nor the event was recorded (one transaction): no gap, only a missing change.
        (err: unknown) => this.log.error({ deviceId, state, err: (err as Error).message }, 'connection state not recorded'),
      )
    this.chains.set(deviceId, next)
    void next.finally(() => {
      if (this.chains.get(deviceId) === next) this.chains.delete(deviceId)
    })
  }

  /** flush() in coalesceMs, for whatever is recorded until then. */
  private flushSoon(): void {
    if (this.coalesceTimer || this.stopped) return
    this.coalesceTimer = setTimeout(() => {
      this.coalesceTimer = null
      void this.flush()
    }, this.coalesceMs)
  }

  private async drainOutbox(): Promise<void> {
    for (;;) {
      let pending: PendingDeviceEvent[]
      try {
        pending = await this.registry.pendingEvents(this.batchSize)
      } catch (err) {
        return this.failed(err)
      }
      if (pending.length === 0) return this.recovered()
      const ids = pending.map((p) => p.id)
      try {
        await this.stream.append(
          this.topic,
          pending.map(({ event }) => ({ key: event.deviceId, value: Buffer.from(JSON.stringify(event)), headers: { 'event-type': event.type } })),
        )
      } catch (err) {
        await this.registry.releaseEvents(ids).catch(() => undefined)
        return this.failed(err)
      }
      for (const { event } of pending) this.metrics.deviceEvents.inc({ type: event.type })
      try {
        await this.registry.removeEvents(ids)
      } catch (err) {
        // Written but still in the outbox, claimed: written again once the claim lapses.
        return this.failed(err)
      }
      // A short batch took all there was: rows added since asked for a run of their own.
      if (pending.length < this.batchSize) return this.recovered()
    }
  }

  /** Retry with back-off; the first failure of a streak is a warning, the rest are debug lines. */
  private failed(err: unknown): void {
    const message = (err as Error).message
    if (!this.failing) this.log.warn({ err: message }, 'device events not written yet; they wait in the outbox')
    else this.log.debug({ err: message, retryMs: this.retryDelayMs }, 'device events still not written')
    this.failing = true
    if (this.stopped || this.retryTimer) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      void this.flush()
    }, this.retryDelayMs)
    this.retryTimer.unref()
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.retryMaxMs)
  }

  private recovered(): void {
    if (this.failing) this.log.info('device events written again')
    this.failing = false
    this.retryDelayMs = this.retryMinMs
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = null
  }
}
