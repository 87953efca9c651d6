import type { ConnectionContext, ConnectionObserver, DeliveryObserver, DeviceChannel, DisconnectReason, PublishHandler, SessionStore } from '../broker/ports.js'
import type { DeviceEventWriter } from '../ingest/device-events.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import type { Logger } from '../observability/logger.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { EventStream } from '../stream/types.js'
import { C2dDelivery } from './c2d-delivery.js'
import { C2dService, type C2dLimits } from './c2d-service.js'
import { CommandsTopicSource } from './commands-topic-source.js'
import { DeviceRequests } from './device-requests.js'
import { FeedbackWriter } from './feedback-writer.js'
import { MethodInvoker, type MethodRequest, type MethodResult } from './method-invoker.js'
import type { TwinProperties } from '../registry/types.js'
import { TwinService } from './twin-service.js'
import type { CommandQueue } from './types.js'

export interface CommandChannelOptions {
  queue: CommandQueue
  /** The device sessions, dropped with a removed device. */
  sessions?: SessionStore
  registry: DeviceRegistry
  stream: EventStream
  events: DeviceEventWriter
  logger: Logger
  /** Feedback, method calls and the queue depth are measured when given. */
  metrics?: GatewayMetrics
  topics: { commands: string; commandFeedback: string }
  limits: C2dLimits & { maxDeliveryCount: number; consumerGroup: string; maxMethodPayloadBytes: number; maxTwinSectionBytes: number; maxTwinDepth: number; maxPayloadBytes: number }
  /** How often expired messages are ended and other gateways' new messages picked up (ms, default 1000). */
  expiryCheckIntervalMs?: number
  /** Read the `commands` stream topic (default true). */
  consumeCommandsTopic?: boolean
}

/**
 * The command channel (the `commands/` folder): cloud-to-device messages, direct methods and
 * twins, built around a DeviceChannel (the broker) that is attached once it exists. It observes the
 * broker's connections, subscriptions and PUBACKs, and serves the device's `$iothub/...` publishes.
 */
/**
 * Devices connected to other gateway instances (src/cluster/cluster-commands.ts): what the
 * channel does when the device is not connected here.
 */
export interface Elsewhere {
  /** The device's queue changed: wake the instance that holds it. */
  deliver(deviceId: string): Promise<void>
  notifyDesired(deviceId: string, patch: TwinProperties, version: number): Promise<void>
  /** A direct method wherever the device is (here first). */
  invoke(deviceId: string, name: string, request: MethodRequest): Promise<MethodResult>
}

export class CommandChannel implements ConnectionObserver, DeliveryObserver {
  readonly c2d: C2dService
  /** Direct methods as the API calls them: on the device wherever it is connected. */
  readonly methods: Pick<MethodInvoker, 'invoke'>
  /** Direct methods on devices connected to this instance. */
  readonly localMethods: MethodInvoker
  readonly twins: TwinService
  readonly requests: PublishHandler
  private readonly delivery: C2dDelivery
  private readonly feedback: FeedbackWriter
  private readonly source: CommandsTopicSource
  private channel: DeviceChannel | null = null
  private timer: NodeJS.Timeout | null = null
  private sweeping = false
  private elsewhere: Elsewhere | null = null

  constructor(private readonly options: CommandChannelOptions) {
    const { queue, registry, stream, events, logger, topics, limits } = options
    const channel = this.lazyChannel()
    this.feedback = new FeedbackWriter(queue, stream, topics.commandFeedback, logger, options.metrics)
    this.delivery = new C2dDelivery({ queue, channel, feedback: this.feedback, logger, maxDeliveryCount: limits.maxDeliveryCount })
    const wake = { kick: (deviceId: string) => this.wake(deviceId), revalidate: (deviceId: string) => this.delivery.revalidate(deviceId) }
    this.c2d = new C2dService(queue, registry, wake, this.feedback, limits, logger)
    const metrics = options.metrics
    this.localMethods = new MethodInvoker(channel, registry, limits.maxMethodPayloadBytes, undefined, (result, seconds) => {
      metrics?.methodCalls.inc({ result })
      if (seconds !== undefined) metrics?.methodSeconds.observe(seconds)
    })
    this.methods = { invoke: (deviceId, name, request) => (this.elsewhere ? this.elsewhere.invoke(deviceId, name, request) : this.localMethods.invoke(deviceId, name, request)) }
    metrics?.watchCommandQueue(() => queue.depth())
    this.twins = new TwinService(registry, channel, events, { maxSectionBytes: limits.maxTwinSectionBytes, maxDepth: limits.maxTwinDepth }, logger)
    this.requests = new DeviceRequests(this.twins, this.localMethods, limits.maxPayloadBytes)
    this.source = new CommandsTopicSource(stream, topics.commands, limits.consumerGroup, this.c2d, queue, logger, limits.maxTtlSeconds)
  }

  /** Start delivering over `channel`: sweep timer, commands topic, feedback left by a previous run. */
  async start(channel: DeviceChannel): Promise<void> {
    this.channel = channel
    const every = this.options.expiryCheckIntervalMs ?? 1000
    this.timer = setInterval(() => void this.sweep(), every)
    this.timer.unref()
    void this.feedback.flush()
    if (this.options.consumeCommandsTopic !== false) await this.source.start()
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.localMethods.stop()
    await this.source.stop()
    await this.delivery.drain()
    await this.feedback.flush()
  }

  /** Reach devices connected to other instances from now on (several instances on PostgreSQL). */
  reachElsewhere(elsewhere: Elsewhere): void {
    this.elsewhere = elsewhere
    this.twins.elsewhere = (deviceId, patch, version) => elsewhere.notifyDesired(deviceId, patch, version)
  }

  /** Try delivering to a device connected here (a signal from another instance, a sweep). */
  deliverHere(deviceId: string): Promise<void> {
    return this.delivery.kick(deviceId)
  }

  connected(_ctx: ConnectionContext): void {
    // Delivery starts on ready(): before the CONNACK is written the connection takes no PUBLISH.
  }

  ready(ctx: ConnectionContext): void {
    void this.delivery.kick(ctx.deviceId)
  }

  disconnected(ctx: ConnectionContext, _reason: DisconnectReason): void {
    this.delivery.connectionClosed(ctx)
    // A replacing connection may already be up; it gets what this one left unacknowledged.
    void this.delivery.kick(ctx.deviceId)
  }

  subscribed(ctx: ConnectionContext): void {
    void this.delivery.kick(ctx.deviceId)
  }

  acknowledged(ctx: ConnectionContext, messageId: number): void {
    this.delivery.acknowledged(ctx, messageId)
  }

  /**
   * A removed device's queue ends as `purged` and its session is dropped (a device created again
   * under the same id starts clean, as in IoT Hub).
   */
  async deviceRemoved(deviceId: string): Promise<void> {
    await this.options.queue.purge(deviceId, Date.now())
    await this.options.sessions?.discard(deviceId)
    await this.feedback.flush()
  }

  /**
   * End expired messages, write pending feedback, and try delivery for devices connected here
   * that have messages (a message queued by another gateway on the same store lands here).
   */
  async sweep(): Promise<void> {
    if (this.sweeping || !this.channel) return
    this.sweeping = true
    try {
      await this.c2d.sweep()
      for (const deviceId of await this.options.queue.devicesWithMessages()) {
        if (this.channel.connectionOf(deviceId)) void this.delivery.kick(deviceId)
      }
    } catch (err) {
      this.options.logger.warn({ component: 'c2d', err: (err as Error).message }, 'command sweep failed')
    } finally {
      this.sweeping = false
    }
  }

  /** A device's queue changed: deliver here, or wake the instance that holds it. */
  private async wake(deviceId: string): Promise<void> {
    if (this.channel?.connectionOf(deviceId) || !this.elsewhere) return this.delivery.kick(deviceId)
    // The message is in the shared queue already: a lost wake-up is caught up by that instance's sweep.
    await this.elsewhere.deliver(deviceId).catch((err: unknown) => this.options.logger.warn({ component: 'c2d', deviceId, err: (err as Error).message }, 'could not wake the instance holding the device'))
  }

  /** The broker is created after the channel (it needs `requests`); calls before start() see no device. */
  private lazyChannel(): DeviceChannel {
    return {
      connectionOf: (id) => this.channel?.connectionOf(id) ?? null,
      isSubscribed: (id, topic) => this.channel?.isSubscribed(id, topic) ?? false,
      send: (id, topic, payload, qos, dup) => (this.channel ? this.channel.send(id, topic, payload, qos, dup) : null),
    }
  }
}

/** Fans connection events out to several observers (device events, command channel). */
export function fanOutObserver(...observers: ConnectionObserver[]): ConnectionObserver {
  return {
    connected: (ctx) => observers.forEach((o) => o.connected(ctx)),
    disconnected: (ctx, reason) => observers.forEach((o) => o.disconnected(ctx, reason)),
  }
}
