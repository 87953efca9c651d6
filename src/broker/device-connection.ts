import type { X509Certificate } from 'node:crypto'
import { randomUUID } from 'node:crypto'
import type { Client } from 'aedes'
import type { ConnectionContext, DisconnectReason, Transport } from './ports.js'

/**
 * Something a connection holds while it lives, let go with the connection's own state: one
 * object per kind shared by every connection (no closure per connection, each ~100 bytes with
 * its scope, for each of thousands of idle devices).
 */
export interface Hold {
  release(ctx: DeviceConnection): void
}

/** Per-connection state the hooks keep beside the Aedes client. */
export class DeviceConnection implements ConnectionContext {
  readonly connectionId = randomUUID()
  readonly connectedAt = Date.now()
  closed = false
  /** Why the gateway is closing this connection, when it decided to. */
  closeReason: DisconnectReason | null = null
  announced = false
  /** The device's ownership epoch this connection claimed (DeviceOwnership); 0 without one. */
  epoch = 0
  /** The last device request of this connection in processing (see `serialize`). */
  private requests: Promise<void> | undefined
  /** What the connection holds while it lives (its session cache entry, ...), let go once. */
  private holds: Hold[] | null = []

  constructor(
    readonly deviceId: string,
    readonly remoteAddress: string,
    readonly transport: Transport,
    readonly authMethod: string,
  ) {}

  isClosed(): boolean {
    return this.closed
  }

  /** Keep `hold` until the connection is gone (`releaseHolds`); released at once if it is gone already. */
  hold(hold: Hold): void {
    if (this.holds) this.holds.push(hold)
    else hold.release(this)
  }

  /** The transport closed: let go of everything held, in reverse order, once. */
  releaseHolds(): void {
    const holds = this.holds
    this.holds = null
    if (holds) for (let i = holds.length - 1; i >= 0; i--) holds[i]!.release(this)
  }

  /**
   * Run `task` after the ones before it on this connection; skipped once the connection is closed.
   * Device requests go one at a time: one socket chunk can hold thousands of twin GETs, and
   * answering them all at once would hold thousands of answers in memory before the first is sent.
   */
  serialize(task: () => Promise<void>): Promise<void> {
    const run = (this.requests ?? Promise.resolve()).then(() => (this.closed ? undefined : task()))
    this.requests = run.catch(() => undefined)
    return run
  }
}

/** Every Aedes client gets its transport and address recorded by the listener before CONNECT. */
export const connectionMeta = new WeakMap<object, ConnectionMeta>()

export interface ConnectionMeta {
  transport: Transport
  remoteAddress: string
  /** The socket's key in the admission control (broker/admission.ts), to mark it authenticated. */
  admissionKey?: string
  /** The transport closed (set by GatewayBroker.handle). */
  gone?: boolean
  /**
   * The TLS socket's client certificate and the certificates sent after it (intermediate CAs),
   * read at CONNECT time (the handshake is done by then); undefined when the client sent none.
   */
  peerCertificates?: () => { cert: X509Certificate; chain: X509Certificate[] } | undefined
}
export const contexts = new WeakMap<Client, DeviceConnection>()

/** `client.clean` is public in Aedes' runtime; its typings mark it read-only. */
export function isCleanSession(client: Client): boolean {
  return client.clean === true
}
