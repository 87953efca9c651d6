/**
 * What the broker layer needs from the rest of the gateway. The broker is thin: Aedes hooks turn
 * callbacks into awaited calls on these ports. It knows nothing about streams or SQLite.
 */

export type Transport = 'tcp' | 'ws'

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
  /** Resolves with the device identity or rejects with a GatewayError (its connack code is sent). */
  authenticate(attempt: ConnectAttempt): Promise<{ deviceId: string; method: string }>
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
  | 'gateway-shutdown'
  | `error:${string}`

export interface ConnectionObserver {
  connected(ctx: ConnectionContext): void
  disconnected(ctx: ConnectionContext, reason: DisconnectReason): void
}
