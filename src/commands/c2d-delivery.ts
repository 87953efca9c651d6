import type { ConnectionContext, DeviceChannel } from '../broker/ports.js'
import type { Logger } from '../observability/logger.js'
import { formatDeviceboundTopic } from '../protocol/topics.js'
import type { SystemProperties } from '../protocol/property-bag.js'
import type { FeedbackWriter } from './feedback-writer.js'
import type { CommandQueue, QueuedMessage } from './types.js'

export interface C2dDeliveryOptions {
  queue: CommandQueue
  channel: DeviceChannel
  feedback: FeedbackWriter
  logger: Logger
  maxDeliveryCount: number
  now?: () => number
}

interface InFlight {
  seq: number
  connectionId: string
  messageId: number
  /** PUBACK seen; the entry stays until the completion is committed, so nothing overtakes it. */
  acked: boolean
}

/**
 * Delivers each device's queue in order, one message in flight per device (IoT Hub MQTT support, "Receiving cloud-to-device messages"):
 * the head is written at QoS 1 to `devices/{id}/messages/devicebound/{bag}`, its PUBACK completes
 * it, then the next goes. A message still unacknowledged when the connection ends is written again
 * on the next connection with DUP set [MQTT-4.4.0-1]. Before each attempt an expired message ends
 * `expired` and one that used up its deliveries ends `rejected` (IoT Hub: max delivery count).
 *
 * Work for one device runs on a per-device chain, so a PUBACK, a reconnect and a new message
 * never start two deliveries at once.
 */
export class C2dDelivery {
  private readonly inFlight = new Map<string, InFlight>()
  private readonly chains = new Map<string, Promise<void>>()
  private readonly log: Logger
  private readonly now: () => number

  constructor(private readonly options: C2dDeliveryOptions) {
    this.log = options.logger.child({ component: 'c2d' })
    this.now = options.now ?? Date.now
  }

  /** Try to deliver what waits for the device (new message, connect, subscribe, PUBACK). */
  kick(deviceId: string): Promise<void> {
    return this.chain(deviceId, () => this.deliverNext(deviceId))
  }

  private chain(deviceId: string, task: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(deviceId) ?? Promise.resolve()
    const next = previous.then(task).catch((err: unknown) => {
      this.log.error({ deviceId, err: (err as Error).message }, 'cloud-to-device delivery failed; retried on the next sweep')
    })
    this.chains.set(deviceId, next)
    void next.finally(() => {
      if (this.chains.get(deviceId) === next) this.chains.delete(deviceId)
    })
    return next
  }

  /** The PUBACK for the message in flight completes it [MQTT-4.3.2-2]; any other id is ignored. */
  acknowledged(ctx: ConnectionContext, messageId: number): void {
    const f = this.inFlight.get(ctx.deviceId)
    if (!f || f.acked || f.connectionId !== ctx.connectionId || f.messageId !== messageId) return
    f.acked = true
    void this.chain(ctx.deviceId, () => this.complete(ctx.deviceId, f))
  }

  /** The connection is gone: what it did not acknowledge is delivered again on the next one. */
  connectionClosed(ctx: ConnectionContext): void {
    const f = this.inFlight.get(ctx.deviceId)
    if (f && !f.acked && f.connectionId === ctx.connectionId) this.inFlight.delete(ctx.deviceId)
  }

  /**
   * The device's messages changed outside delivery (expired, purged): a message in flight that is
   * gone no longer holds the queue, so the next one may go.
   */
  revalidate(deviceId: string): Promise<void> {
    const f = this.inFlight.get(deviceId)
    if (!f) return this.kick(deviceId)
    return this.options.queue.head(deviceId).then((head) => {
      if (this.inFlight.get(deviceId) === f && !f.acked && head?.seq !== f.seq) this.inFlight.delete(deviceId)
      return this.kick(deviceId)
    })
  }

  /** Resolves when every delivery started so far has run. */
  async drain(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()])
  }

  /** On the device's chain: commit the completion, free the slot, send the next message. */
  private async complete(deviceId: string, f: InFlight): Promise<void> {
    try {
      if (await this.options.queue.settle(f.seq, 'completed', this.now())) void this.options.feedback.flush()
    } catch (err) {
      // Still queued: delivered again on the next connection (at-least-once towards the device).
      this.log.error({ deviceId, err: (err as Error).message }, 'could not complete a cloud-to-device message')
    }
    if (this.inFlight.get(deviceId) === f) this.inFlight.delete(deviceId)
    await this.deliverNext(deviceId)
  }

  /** Ordered stages for one attempt: in flight? -> subscribed? -> head -> end if due -> write. */
  private async deliverNext(deviceId: string): Promise<void> {
    const { queue, channel } = this.options
    for (;;) {
      if (this.inFlight.has(deviceId)) return
      // Any bag matches the same filters (the bag is one percent-encoded level, IoT Hub MQTT support, "Receiving cloud-to-device messages").
      if (!channel.isSubscribed(deviceId, formatDeviceboundTopic(deviceId, {}) + 'x')) return
      const head = await queue.head(deviceId)
      if (!head) return
      if (await this.endIfDue(head)) continue
      await this.write(head)
      return
    }
  }

  private async endIfDue(head: QueuedMessage): Promise<boolean> {
    const { queue, feedback, maxDeliveryCount } = this.options
    const now = this.now()
    let ended = false
    if (head.expiresAt <= now) ended = await queue.settle(head.seq, 'expired', now)
    else if (head.deliveryCount >= maxDeliveryCount) ended = await queue.settle(head.seq, 'rejected', now, 'max-delivery-count')
    else return false
    if (ended) void feedback.flush()
    return true
  }

  private async write(head: QueuedMessage): Promise<void> {
    const { queue, channel } = this.options
    // Only a ready connection gets a delivery attempt (and only an attempt is counted).
    if (!channel.connectionOf(head.deviceId)) return
    // Counted before the write: a gateway killed after writing still counts the attempt.
    const count = await queue.recordDelivery(head.seq)
    const topic = formatDeviceboundTopic(head.deviceId, deviceboundBag(head))
    const sent = channel.send(head.deviceId, topic, head.payload, 1, count > 1)
    if (!sent || sent.messageId === null) return
    // In flight before the write completes: the PUBACK may be read before `written` settles.
    const f: InFlight = { seq: head.seq, connectionId: sent.ctx.connectionId, messageId: sent.messageId, acked: false }
    this.inFlight.set(head.deviceId, f)
    try {
      await sent.written
    } catch {
      // The connection broke; the message is delivered again on the next one.
      if (this.inFlight.get(head.deviceId) === f && !f.acked) this.inFlight.delete(head.deviceId)
    }
  }
}

/** System properties IoT Hub puts on a delivered message (IoT Hub MQTT support, "Receiving cloud-to-device messages") plus the application ones. */
export function deviceboundBag(m: QueuedMessage): { system: SystemProperties; application: Record<string, string> } {
  const system: SystemProperties = { messageId: m.messageId, to: `/devices/${m.deviceId}/messages/devicebound`, expiryTimeUtc: new Date(m.expiresAt).toISOString() }
  if (m.contentType) system.contentType = m.contentType
  if (m.contentEncoding) system.contentEncoding = m.contentEncoding
  const application: Record<string, string> = { ...m.properties }
  // The service-set feedback request surfaces as an application property, as from IoT Hub.
  if (m.ack !== 'none') application['iothub-ack'] = m.ack
  return { system, application }
}
