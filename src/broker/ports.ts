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

export interface PublishHandler {
  /**
   * Take a device publish. For QoS 1 the promise must resolve only once the message is durable:
   * the broker writes the PUBACK right after. A rejection (GatewayError) closes the connection.
   */
  handlePublish(ctx: ConnectionContext, packet: InboundPublish): Promise<void>
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
 * 3.1.2.4 makes subscriptions session state). Synchronous: the broker reads it on every delivery.
 */
export interface SessionStore {
  subscriptions(deviceId: string): ReadonlyMap<string, number>
  addSubscription(deviceId: string, filter: string, qos: number): void
  removeSubscriptions(deviceId: string, filters: readonly string[]): void
  /** A clean-session CONNECT discards the previous session [MQTT-3.1.2-6]. */
  clearSubscriptions(deviceId: string): void
  /** Re-read a device's subscriptions (another gateway on the same store may have written them). */
  loadSubscriptions(deviceId?: string): void
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
