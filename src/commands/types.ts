/**
 * The command channel's ports: the durable per-device cloud-to-device queue (CommandQueue) and the
 * persistent MQTT subscriptions of devices (see broker/ports.ts SessionStore). SqliteCommandStore
 * implements both on `<dataDir>/commands.db`; a shared store (PostgreSQL, Redis) comes with scale-out.
 */

/** IoT Hub's `iothub-ack` feedback request (IoT Hub "Send cloud-to-device messages": message feedback). */
export const ACK_MODES = ['none', 'positive', 'negative', 'full'] as const
export type AckMode = (typeof ACK_MODES)[number]

/** How a cloud-to-device message ended. Every message ends exactly once, and that end is recorded. */
export type FeedbackStatus = 'completed' | 'expired' | 'rejected' | 'purged'

export interface NewMessage {
  messageId: string
  deviceId: string
  payload: Buffer
  /** Application properties, delivered in the property bag. */
  properties: Record<string, string>
  contentType?: string
  contentEncoding?: string
  ack: AckMode
  /** ms since the epoch. */
  enqueuedAt: number
  /** Absolute expiry, ms since the epoch. */
  expiresAt: number
  /**
   * Where it came from: for a `commands` stream record its position and a digest of its content,
   * `stream:commands/3/17#<digest>`. A second enqueue of the same ref is a no-op (a replayed
   * record); the ref is kept until the message's expiresAt, after which pruneSources may drop it.
   */
  sourceRef?: string
}

export interface QueuedMessage extends NewMessage {
  /** Queue order across the store (AUTOINCREMENT: never reused). */
  seq: number
  /** Times the message was written to the device so far. */
  deliveryCount: number
}

/** The JSON value of a `command-feedback` record. */
export interface Feedback {
  messageId: string
  deviceId: string
  status: FeedbackStatus
  /** ISO time the message ended. */
  time: string
  deliveryCount: number
  ack: AckMode
  /** Why, for rejected messages (queue-full, max-delivery-count, invalid). */
  reason?: string
}

export interface PendingFeedback {
  id: number
  feedback: Feedback
}

export interface CommandQueue {
  /**
   * Append to the device's queue. Rejects with E_QUEUE_FULL when it holds `maxDepth` messages.
   * With a `sourceRef` already seen, resolves with null and changes nothing (a replayed stream record).
   */
  enqueue(message: NewMessage, maxDepth: number): Promise<QueuedMessage | null>
  /** Messages of a device in delivery order. */
  list(deviceId: string): Promise<QueuedMessage[]>
  /** The oldest message of a device, or null. */
  head(deviceId: string): Promise<QueuedMessage | null>
  /** Count one more delivery attempt; resolves with the new count. */
  recordDelivery(seq: number): Promise<number>
  /**
   * End a message: remove it and record its feedback in the same transaction. Resolves false when
   * it had ended already, so that a PUBACK racing an expiry settles it only once.
   */
  settle(seq: number, status: FeedbackStatus, at: number, reason?: string): Promise<boolean>
  /** Settle every message of a device as purged; resolves with how many. */
  purge(deviceId: string, at: number): Promise<number>
  /** Settle every message whose expiry is at or before `now` as expired; resolves with the device ids touched. */
  expire(now: number): Promise<string[]>
  /**
   * Record feedback for a command that never entered a queue (a refused stream command).
   * Idempotent per sourceRef, which is kept until `keepUntil` (ms).
   */
  recordUnqueued(feedback: Feedback, sourceRef: string, keepUntil: number): Promise<void>
  /** Forget the source refs kept until before `before` (ms); resolves with how many. */
  pruneSources(before: number): Promise<number>
  /** Ids of devices that have queued messages. */
  devicesWithMessages(): Promise<string[]>
  /** Messages queued for all devices together, and the feedback records not written to the stream yet. */
  depth(): Promise<{ messages: number; feedback: number }>
  /** Claim up to `limit` unclaimed feedback rows of the outbox, oldest first (claims lapse after claimMs). */
  pendingFeedback(limit: number, claimMs?: number): Promise<PendingFeedback[]>
  /** Written to the stream: delete. */
  removeFeedback(ids: number[]): Promise<void>
  /** Not written (stream down): give the claim back for the next attempt. */
  releaseFeedback(ids: number[]): Promise<void>
}
