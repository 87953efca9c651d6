import type { ConnectionContext, ConnectionObserver, DisconnectReason } from '../broker/ports.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { EventStream } from '../stream/types.js'

export type DeviceEventType = 'connected' | 'disconnected' | 'created' | 'deleted' | 'twin-reported' | 'twin-desired'

/** The JSON value of a `device-events` record. */
export interface DeviceEvent {
  type: DeviceEventType
  deviceId: string
  /** Per-device sequence of connection events (connected/disconnected). */
  sequence?: number
  time: string
  reason?: DisconnectReason | string
  connectionId?: string
  remoteAddress?: string
  transport?: string
  authMethod?: string
  /** Event-specific facts (twin versions, ...). */
  details?: Record<string, unknown>
}

/**
 * Writes connection lifecycle events to the `device-events` topic and keeps the registry's
 * connection state. Events of one device are handled strictly one after another (a per-device
 * chain), so `connected` and `disconnected` land in the stream, and get sequence numbers, in the
 * order they happened. A stream failure is logged and counted; it never affects the device.
 */
export class DeviceEventWriter implements ConnectionObserver {
  private readonly chains = new Map<string, Promise<void>>()
  private readonly log: Logger

  constructor(
    private readonly stream: EventStream,
    private readonly topic: string,
    private readonly registry: DeviceRegistry,
    private readonly metrics: GatewayMetrics,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'device-events' })
  }

  connected(ctx: ConnectionContext): void {
    this.enqueue(ctx.deviceId, () => this.connectionEvent(ctx, 'connected'))
  }

  disconnected(ctx: ConnectionContext, reason: DisconnectReason): void {
    this.enqueue(ctx.deviceId, () => this.connectionEvent(ctx, 'disconnected', reason))
  }

  /** Write an event that is not about a connection (created, deleted, twin changes). */
  emit(event: Omit<DeviceEvent, 'time'> & { time?: string }): Promise<void> {
    return this.enqueue(event.deviceId, () => this.write({ ...event, time: event.time ?? new Date().toISOString() }))
  }

  /** Resolves when every event queued so far has been written (or failed). */
  async drain(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()])
  }

  private enqueue(deviceId: string, task: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(deviceId) ?? Promise.resolve()
    const next = previous.then(task).catch((err: unknown) => {
      this.log.error({ deviceId, err: (err as Error).message }, 'device event not written')
    })
    this.chains.set(deviceId, next)
    void next.finally(() => {
      if (this.chains.get(deviceId) === next) this.chains.delete(deviceId)
    })
    return next
  }

  private async connectionEvent(ctx: ConnectionContext, type: 'connected' | 'disconnected', reason?: DisconnectReason): Promise<void> {
    const at = new Date()
    const sequence = await this.registry.recordConnection(ctx.deviceId, type, at)
    const event: DeviceEvent = {
      type,
      deviceId: ctx.deviceId,
      time: at.toISOString(),
      connectionId: ctx.connectionId,
      remoteAddress: ctx.remoteAddress,
      transport: ctx.transport,
      authMethod: ctx.authMethod,
    }
    if (sequence !== null) event.sequence = sequence
    if (reason) event.reason = reason
    await this.write(event)
  }

  private async write(event: DeviceEvent): Promise<void> {
    await this.stream.append(this.topic, [
      { key: event.deviceId, value: Buffer.from(JSON.stringify(event)), headers: { 'event-type': event.type } },
    ])
    this.metrics.deviceEvents.inc({ type: event.type })
  }
}
