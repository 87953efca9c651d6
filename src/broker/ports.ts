/**
 * What the broker layer needs from the rest of the gateway. The broker is thin: Aedes hooks turn
 * callbacks into awaited calls on these ports. It knows nothing about streams or SQLite.
 */

export type Transport = 'tcp' | 'tls' | 'ws' | 'wss'

/** One authenticated device connection, as the rest of the gateway sees it. */
export interface ConnectionContext {
  readonly deviceId: string
  /** Unique per connection (a device reconnecting gets a new one). */
  readonly connectionId: string
  readonly remoteAddress: string
  readonly transport: Transport
  /** How the device proved its identity, e.g. 'sas-primary', 'password'. */
  readonly authMethod: string
  readonly connectedAt: number
  /** True once the socket is gone: work for this connection may be abandoned. */
  isClosed(): boolean
}

export interface ConnectAttempt {
  clientId: string
  username: string | undefined
  password: Buffer | undefined
  remoteAddress: string
}

export interface DeviceAuthenticator {
  /**
   * Resolves with the device identity or rejects with a GatewayError (its connack code is sent).
   * `tokenExpiresAt` (seconds since the epoch): the credential's end; the connection is closed then.
   */
  authenticate(attempt: ConnectAttempt): Promise<{ deviceId: string; method: string; tokenExpiresAt?: number }>
}

export interface InboundPublish {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
}

/** Called once per publish: `null` when it is handled (for QoS 1: durable), else the error (a GatewayError). */
export type PublishDone = (err: unknown) => void

export interface PublishHandler {
  /**
   * Take a device publish and call `done` exactly once. For QoS 1, `done(null)` only once the
   * message is durable: the broker writes the PUBACK right after. An error closes the connection.
   * A callback, not a promise: this runs once per telemetry message, and the promises of the
   * chain (handler, ingest, appender) were a tenth of the event loop's time at saturation.
   */
  handlePublish(ctx: ConnectionContext, packet: InboundPublish, done: PublishDone): void
}

export interface SubscriptionPolicy {
  /** Returns the granted QoS, or throws a GatewayError (E_TOPIC_FORBIDDEN): the connection is closed. */
  authorizeSubscription(ctx: ConnectionContext, filter: string, qos: number): number
}

export type DisconnectReason =
  | 'client-disconnect'
  | 'socket-closed'
  | 'keepalive-timeout'
  | 'replaced'
  | 'kicked'
  | 'token-expired'
  | 'gateway-shutdown'
  | `error:${string}`

export interface ConnectionObserver {
  connected(ctx: ConnectionContext): void
  disconnected(ctx: ConnectionContext, reason: DisconnectReason): void
}

/**
 * Subscriptions of devices, kept across reconnects and gateway restarts: the Azure SDK connects
 * with clean session 0 and never re-subscribes after a token-renewal reconnect (MQTT 3.1.1 section
 * 3.1.2.4 makes subscriptions session state).
 *
 * Shaped for a networked store (PostgreSQL) shared by several gateways: the broker reads
 * `subscriptions` on every delivery, so that read is synchronous and served from a per-device
 * cache held in memory while the device is connected to this process. The cache is filled by
 * `restore`, awaited in the connect path before CONNACK, and dropped by `forget` when the
 * connection is gone. Writes change the cache at once and go through to the store in the order
 * they were made, per device; a write that fails is reported by the store and does not reach
 * the caller (the SUBACK is long written by then).
 */
export interface SessionStore {
  /** The filters (with granted QoS) of a device connected here; empty for one that is not. */
  subscriptions(deviceId: string): ReadonlyMap<string, number>
  addSubscription(deviceId: string, filter: string, qos: number): void
  removeSubscriptions(deviceId: string, filters: readonly string[]): void
  /**
   * A connection of the device is being accepted: with `cleanSession` the stored session is
   * discarded [MQTT-3.1.2-6]; otherwise it is read again from the store (another gateway may
   * have had the device last) once this store's own pending writes for the device are done.
   * Rejects with a GatewayError (E_REGISTRY_UNAVAILABLE, E_SHUTTING_DOWN: CONNACK 3) when the
   * store cannot be used. Each restore that resolves holds the cache entry until one `forget`.
   */
  restore(deviceId: string, cleanSession: boolean): Promise<void>
  /** The connection that restored is gone: its hold ends, and the cache entry with the last one. */
  forget(deviceId: string): void
  /** The device was removed: its stored session goes (a device created again starts clean, as in IoT Hub). */
  discard(deviceId: string): Promise<void>
}

/**
 * Who holds a device's connection, across gateway instances (src/cluster): each accepted CONNECT
 * claims the device before its CONNACK, with a per-device epoch that only grows, and lets go when
 * the connection is gone. A release carries its epoch, so a late one from a connection that was
 * replaced (here or on another instance) changes nothing.
 */
export interface DeviceOwnership {
  /** Rejects with a GatewayError (CONNACK 3) when the shared state cannot be reached. */
  claim(deviceId: string, connectionId: string): Promise<number>
  release(deviceId: string, epoch: number): void
}

/** Hears what happens on the device-bound side of connections. */
export interface DeliveryObserver {
  /** The connection is ready for device-bound packets (CONNACK written; Aedes 'clientReady'). */
  ready(ctx: ConnectionContext): void
  /** A subscription was granted (a reason to try delivering what waits for the device). */
  subscribed(ctx: ConnectionContext, filter: string): void
  /** The device acknowledged a QoS 1 PUBLISH written with `DeviceChannel.send` [MQTT-4.3.2]. */
  acknowledged(ctx: ConnectionContext, messageId: number): void
}

/**
 * Sends to the one connection of a device, never a broker-wide publish: every device subscribes to
 * the same `$iothub/...` filters, which IoT Hub scopes to the connection.
 */
export interface DeviceChannel {
  /** The live connection of a device, if it is on this gateway. */
  connectionOf(deviceId: string): ConnectionContext | null
  /** True when the device is connected here and one of its session's filters matches `topic`. */
  isSubscribed(deviceId: string, topic: string): boolean
  /**
   * Write a PUBLISH to the device's live, ready connection. Returns at once with the connection it
   * goes to and, for QoS 1, its packet identifier (so the caller can expect the PUBACK before it can
   * arrive); `written` settles once the packet is handed to the socket. null when the device is not
   * connected here.
   */
  send(deviceId: string, topic: string, payload: Buffer, qos: 0 | 1, dup?: boolean): SendResult | null
}

export interface SendResult {
  ctx: ConnectionContext
  messageId: number | null
  written: Promise<void>
}
