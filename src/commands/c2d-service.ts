import { randomUUID } from 'node:crypto'
import { GatewayError } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import { formatPropertyBag } from '../protocol/property-bag.js'
import type { DeviceRegistry } from '../registry/types.js'
import type { C2dDelivery } from './c2d-delivery.js'
import type { FeedbackWriter } from './feedback-writer.js'
import type { AckMode, CommandQueue, QueuedMessage } from './types.js'

export interface C2dLimits {
  maxQueueDepth: number
  defaultTtlSeconds: number
  maxTtlSeconds: number
  maxMessageBytes: number
}

/** One cloud-to-device message as a sender hands it in (API, CLI, `commands` topic). */
export interface SendRequest {
  payload: Buffer
  properties?: Record<string, string>
  messageId?: string
  ttlSeconds?: number
  ack?: AckMode
  contentType?: string
  contentEncoding?: string
  /** Set for stream-sourced commands: a replay of the same record is taken once. */
  sourceRef?: string
  /** When the sender sent it (ms); the TTL counts from here (a stream record's timestamp). Default: now. */
  sentAt?: number
}

/** IoT Hub's lower TTL bound (IoT Hub quotas: cloud-to-device TTL 1 minute to 2 days); the upper one is commands.maxTtlSeconds. */
export const MIN_TTL_SECONDS = 60
/**
 * Source refs of stream commands are dropped this long after their keep-until time (the expiry
 * of the message they queued): a wall-clock step or a batch handled late still finds its ref.
 */
export const SOURCE_REF_MARGIN_MS = 60 * 60 * 1000
/** The refs table is pruned at most this often, by the sweep. */
const PRUNE_EVERY_MS = 60 * 1000
const MAX_MESSAGE_ID_LENGTH = 128

/**
 * The sending side of cloud-to-device messages: validate, queue durably, start delivery; list and
 * purge queues; end expired messages on a timer. Every failure is a GatewayError with its code.
 */
export class C2dService {
  private readonly log: Logger
  private lastPruneAt = Number.NEGATIVE_INFINITY

  constructor(
    private readonly queue: CommandQueue,
    private readonly registry: DeviceRegistry,
    /** Starts delivery (here, or on the instance that holds the device) and re-checks the slot in flight. */
    private readonly delivery: Pick<C2dDelivery, 'kick' | 'revalidate'>,
    private readonly feedback: FeedbackWriter,
    private readonly limits: C2dLimits,
    logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.log = logger.child({ component: 'c2d' })
  }

  /** Resolves with the queued message, or null for a stream record already taken before. */
  async send(deviceId: string, request: SendRequest): Promise<QueuedMessage | null> {
    await this.mustExist(deviceId)
    const checked = this.validate(request)
    const at = this.now()
    const message = await this.queue.enqueue(
      {
        deviceId,
        messageId: checked.messageId ?? randomUUID(),
        payload: checked.payload,
        properties: checked.properties ?? {},
        ack: checked.ack ?? 'none',
        enqueuedAt: at,
        // A command that waited in the stream past its TTL is queued already expired and ends
        // `expired` at the next sweep, as it would have in the queue.
        expiresAt: (checked.sentAt ?? at) + (checked.ttlSeconds ?? this.limits.defaultTtlSeconds) * 1000,
        ...(checked.contentType === undefined ? {} : { contentType: checked.contentType }),
        ...(checked.contentEncoding === undefined ? {} : { contentEncoding: checked.contentEncoding }),
        ...(checked.sourceRef === undefined ? {} : { sourceRef: checked.sourceRef }),
      },
      this.limits.maxQueueDepth,
    )
    if (message) {
      this.log.debug({ deviceId, messageId: message.messageId }, 'cloud-to-device message queued')
      void this.delivery.kick(deviceId)
    }
    return message
  }

  async list(deviceId: string): Promise<QueuedMessage[]> {
    await this.mustExist(deviceId)
    return this.queue.list(deviceId)
  }

  async purge(deviceId: string): Promise<number> {
    await this.mustExist(deviceId)
    const n = await this.queue.purge(deviceId, this.now())
    if (n > 0) {
      void this.feedback.flush()
      void this.delivery.revalidate(deviceId)
    }
    return n
  }

  /**
   * End every expired message (`expired` feedback), write pending feedback, and (once a minute)
   * forget the refs of stream commands that a replay could no longer queue alive. A replay after
   * that is queued already expired and ends `expired` again: a second end for the same messageId,
   * which is why feedback consumers dedupe on it.
   */
  async sweep(): Promise<string[]> {
    const now = this.now()
    const touched = await this.queue.expire(now)
    for (const deviceId of touched) void this.delivery.revalidate(deviceId)
    await this.feedback.flush()
    if (now - this.lastPruneAt >= PRUNE_EVERY_MS) {
      this.lastPruneAt = now
      const pruned = await this.queue.pruneSources(now - SOURCE_REF_MARGIN_MS)
      if (pruned > 0) this.log.debug({ pruned }, 'source refs of old stream commands pruned')
    }
    return touched
  }

  validate(request: SendRequest): SendRequest {
    const { payload, ttlSeconds, messageId, properties } = request
    if (payload.length > this.limits.maxMessageBytes) {
      throw new GatewayError('E_PAYLOAD_TOO_LARGE', `the message of ${payload.length} bytes exceeds the maximum of ${this.limits.maxMessageBytes}`)
    }
    if (ttlSeconds !== undefined && (!Number.isInteger(ttlSeconds) || ttlSeconds < MIN_TTL_SECONDS || ttlSeconds > this.limits.maxTtlSeconds)) {
      throw new GatewayError('E_BAD_REQUEST', `ttlSeconds must be an integer from ${MIN_TTL_SECONDS} to ${this.limits.maxTtlSeconds}`)
    }
    if (messageId !== undefined && (messageId.length === 0 || messageId.length > MAX_MESSAGE_ID_LENGTH)) {
      throw new GatewayError('E_BAD_REQUEST', `messageId must be 1 to ${MAX_MESSAGE_ID_LENGTH} characters`)
    }
    if (properties) {
      // Formatting the bag once refuses reserved keys ($.mid, ...) and unencodable text up front.
      formatPropertyBag({ application: properties })
    }
    return request
  }

  private async mustExist(deviceId: string): Promise<void> {
    if (!(await this.registry.get(deviceId))) throw new GatewayError('E_DEVICE_NOT_FOUND', `device "${deviceId}" not found`, { deviceId })
  }
}
