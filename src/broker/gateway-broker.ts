import { X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import { Aedes, type AedesOptions, type Client, type PublishPacket, type Subscription } from 'aedes'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import { GatewayError, toGatewayError } from '../errors/catalogue.js'
import { guardPacketSize, releaseConnectPacket, setPacketGuard } from './packet-guard.js'
import { nextMessageId, topicMatches, writePublish } from './outbound.js'
import { connectionMeta, contexts, DeviceConnection } from './device-connection.js'
import { attachSessionHooks, restoreSession } from './session-hooks.js'
import type {
  ConnectionContext,
  ConnectionObserver,
  DeliveryObserver,
  DeviceAuthenticator,
  DeviceChannel,
  DisconnectReason,
  PublishHandler,
  SendResult,
  SessionStore,
  SubscriptionPolicy,
  Transport,
} from './ports.js'

export interface GatewayBrokerOptions {
  authenticator: DeviceAuthenticator
  publishHandler: PublishHandler
  subscriptionPolicy: SubscriptionPolicy
  observer: ConnectionObserver
  /** Subscriptions that outlive connections and restarts (clean session 0, protocol note §7). */
  sessions: SessionStore
  deliveryObserver?: DeliveryObserver
  metrics: GatewayMetrics
  logger: Logger
  maxConnections: number
  maxPayloadBytes: number
  connectTimeoutMs: number
}

/**
 * The MQTT broker: Aedes plus hooks. Thin by design: each hook awaits a port and maps errors.
 *
 * Device publishes are fully handled inside `authorizePublish`: in Aedes 1.2 the QoS 1 PUBACK is
 * written right after that hook calls back and before `broker.publish()` runs, so only there can
 * the ack wait for the stream. Afterwards the packet is dropped instead of being published
 * broker-wide (see `keepDevicePublishesOffFanOut`).
 */
export class GatewayBroker implements DeviceChannel {
  readonly aedes: Aedes
  private readonly log: Logger
  private readonly ingested = new WeakSet<object>()
  private closing = false

  private constructor(
    aedes: Aedes,
    private readonly options: GatewayBrokerOptions,
  ) {
    this.aedes = aedes
    this.log = options.logger.child({ component: 'broker' })
  }

  static async create(options: GatewayBrokerOptions): Promise<GatewayBroker> {
    let self: GatewayBroker | null = null
    const hooks: AedesOptions = {
      connectTimeout: options.connectTimeoutMs,
      authenticate: (client, username, password, done) => self!.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => self!.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => self!.authorizeSubscribe(client, sub, done),
      // Nothing a device publishes is ever forwarded; cloud-to-device and `$iothub/...` traffic is
      // written to the one connection it is meant for (GatewayBroker.send), never routed.
      authorizeForward: (_client, packet) => packet,
    }
    const aedes = await Aedes.createBroker(hooks)
    self = new GatewayBroker(aedes, options)
    const broker = self
    setPacketGuard(aedes, options.maxPayloadBytes, (client) => broker.onOversize(client))
    self.keepDevicePublishesOffFanOut()
    attachSessionHooks(aedes, options.sessions, options.deliveryObserver)
    self.wireEvents()
    return self
  }

  /** Hand a new transport connection to Aedes. */
  /** `tlsSocket`: the TLS connection under an mqtts or wss stream, for its client certificate. */
  handle(stream: Parameters<Aedes['handle']>[0], transport: Transport, remoteAddress: string, req?: Parameters<Aedes['handle']>[1], tlsSocket?: TLSSocket): void {
    if (this.closing) {
      stream.destroy()
      return
    }
    const client = this.aedes.handle(stream, req)
    connectionMeta.set(client, { transport, remoteAddress, ...(tlsSocket ? { peerCertificates: () => presentedCertificates(tlsSocket) } : {}) })
    guardPacketSize(client)
  }

  /** The live connection of a device, if any. */
  connectionOf(deviceId: string): ConnectionContext | null {
    const client = this.liveClient(deviceId)
    return client ? (contexts.get(client) ?? null) : null
  }

  isSubscribed(deviceId: string, topic: string): boolean {
    const client = this.liveClient(deviceId)
    if (!client || !isReady(client)) return false
    for (const filter of this.options.sessions.subscriptions(deviceId).keys()) {
      if (topicMatches(filter, topic)) return true
    }
    return false
  }

  send(deviceId: string, topic: string, payload: Buffer, qos: 0 | 1, dup = false): SendResult | null {
    const client = this.liveClient(deviceId)
    const ctx = client ? contexts.get(client) : undefined
    if (!client || !ctx || ctx.closed || !isReady(client)) return null
    const messageId = qos === 1 ? nextMessageId(client) : null
    const written = writePublish(client, { topic, payload, qos, dup, ...(messageId === null ? {} : { messageId }) })
    return { ctx, messageId, written }
  }

  /** Close a device's live connection (device disabled, removed, keys rotated). */
  kick(deviceId: string): boolean {
    const client = this.liveClient(deviceId)
    if (!client) return false
    const ctx = contexts.get(client)
    if (ctx) ctx.closeReason = 'kicked'
    client.close()
    return true
  }

  get connectedCount(): number {
    return this.aedes.connectedClients
  }

  /** Close every client and the broker. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    for (const client of Object.values(this.clients())) {
      const ctx = contexts.get(client)
      if (ctx && !ctx.closeReason) ctx.closeReason = 'gateway-shutdown'
    }
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
  }

  private clients(): Record<string, Client> {
    return (this.aedes as unknown as { clients: Record<string, Client> }).clients
  }

  private liveClient(deviceId: string): Client | null {
    const client = this.clients()[deviceId]
    return client && !client.closed ? client : null
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: (Error & { returnCode: number }) | null, success: boolean | null) => void,
  ): void {
    const meta = connectionMeta.get(client) ?? { transport: 'tcp' as Transport, remoteAddress: 'unknown' }
    const peer = meta.peerCertificates?.()
    const attempt = { clientId: client.id, username, password, remoteAddress: meta.remoteAddress, peerCertificate: peer?.cert, peerChain: peer?.chain }
    const run = async (): Promise<DeviceConnection> => {
      if (this.closing) throw new GatewayError('E_SHUTTING_DOWN', 'the gateway is shutting down')
      if (this.aedes.connectedClients >= this.options.maxConnections) {
        throw new GatewayError('E_CONNECTION_LIMIT', `the gateway holds its maximum of ${this.options.maxConnections} connections`)
      }
      const who = await this.options.authenticator.authenticate(attempt)
      return new DeviceConnection(who.deviceId, meta.remoteAddress, meta.transport, who.method)
    }
    run().then(
      (ctx) => {
        contexts.set(client, ctx)
        releaseConnectPacket(client)
        restoreSession(client, ctx.deviceId, this.options.sessions)
        const previous = this.liveClient(ctx.deviceId)
        const previousCtx = previous && previous !== client ? contexts.get(previous) : undefined
        if (previousCtx && !previousCtx.closeReason) previousCtx.closeReason = 'replaced'
        done(null, true)
      },
      (err: unknown) => {
        const gerr = toGatewayError(err)
        this.options.metrics.authFailures.inc({ code: gerr.code })
        // The client id is the claimed device id; the credentials themselves are never logged.
        this.log.warn({ code: gerr.code, clientId: client.id, remoteAddress: meta.remoteAddress, transport: meta.transport }, `connect refused: ${gerr.message}`)
        done(Object.assign(new Error(gerr.message), { returnCode: gerr.returnCode, code: gerr.code }), false)
      },
    )
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    const ctx = client ? contexts.get(client) : undefined
    if (!client || !ctx) {
      // Only the gateway itself publishes without a client (wills are not used by IoT Hub devices).
      done(null)
      return
    }
    const inbound = { topic: packet.topic, payload: toBuffer(packet.payload), qos: packet.qos as 0 | 1 | 2, retain: packet.retain === true }
    this.options.publishHandler.handlePublish(ctx, inbound).then(
      () => {
        this.ingested.add(packet)
        done(null)
      },
      (err: unknown) => done(this.refuse(client, ctx, toGatewayError(err), 'publish')),
    )
  }

  private authorizeSubscribe(client: Client, sub: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void): void {
    const ctx = contexts.get(client)
    try {
      if (!ctx) throw new GatewayError('E_TOPIC_FORBIDDEN', 'subscription before authentication')
      const qos = this.options.subscriptionPolicy.authorizeSubscription(ctx, sub.topic, sub.qos)
      done(null, { ...sub, qos: qos as Subscription['qos'] })
    } catch (err) {
      // A refused filter closes the connection: the Azure SDK treats SUBACK 0x80 as success,
      // so a silent refusal would break the feature without anyone noticing (protocol note §7).
      done(this.refuse(client, ctx, toGatewayError(err), 'subscribe'))
    }
  }

  /** Log, count and turn a refusal into the error that makes Aedes close the connection. */
  private refuse(client: Client, ctx: DeviceConnection | undefined, err: GatewayError, action: 'publish' | 'subscribe'): Error {
    if (ctx) ctx.closeReason = `error:${err.code}`
    if (err.code === 'E_TOPIC_FORBIDDEN') this.options.metrics.aclDenials.inc({ action, code: err.code })
    else this.options.metrics.protocolErrors.inc({ code: err.code })
    const level = err.code === 'E_SHUTTING_DOWN' ? 'info' : 'warn'
    this.log[level]({ code: err.code, deviceId: ctx?.deviceId ?? client.id, action }, `closing connection: ${err.message}`)
    return err
  }

  private onOversize(client: Client): void {
    const ctx = contexts.get(client)
    const err = new GatewayError('E_PAYLOAD_TOO_LARGE', `a packet exceeds the maximum payload of ${this.options.maxPayloadBytes} bytes`)
    this.refuse(client, ctx, err, 'publish')
  }

  /**
   * Aedes would run every device publish through its broker-wide pub/sub (mqemitter, offline
   * enqueue per QoS 1 message). Device publishes are already in the stream by the time Aedes
   * calls `publish`, so they stop here: no other MQTT client can receive them, and a flood of
   * device publishes never reaches mqemitter (whose recursion crashed bare Aedes, aedes #193).
   */
  private keepDevicePublishesOffFanOut(): void {
    // Aedes' runtime signature is publish(packet, client?, done?); its typings show two arguments.
    type Done = (error?: Error) => void
    const original = this.aedes.publish.bind(this.aedes) as unknown as (packet: object, client: unknown, done?: Done) => void
    const ingested = this.ingested
    const patched = (packet: object, client: unknown, done?: Done): void => {
      if (ingested.has(packet)) {
        ingested.delete(packet)
        const cb = typeof client === 'function' ? (client as Done) : done
        if (cb) cb()
        return
      }
      original(packet, client, done)
    }
    ;(this.aedes as unknown as { publish: typeof patched }).publish = patched
  }

  private wireEvents(): void {
    const a = this.aedes
    a.on('client', (client) => {
      const ctx = contexts.get(client)
      if (!ctx) return
      ctx.announced = true
      this.options.metrics.connects.inc()
      this.options.metrics.connections.set(a.connectedClients)
      this.options.observer.connected(ctx)
    })
    a.on('clientDisconnect', (client) => this.onGone(client))
    a.on('keepaliveTimeout', (client) => {
      const ctx = contexts.get(client)
      if (ctx && !ctx.closeReason) ctx.closeReason = 'keepalive-timeout'
    })
    a.on('clientError', (client, err) => {
      const ctx = contexts.get(client)
      if (ctx && !ctx.closeReason) ctx.closeReason = `error:${(err as Partial<GatewayError>).code ?? 'E_PROTOCOL_ERROR'}`
      this.log.debug({ deviceId: client.id, err: err.message }, 'client error')
    })
    a.on('connectionError', (client, err) => {
      this.log.debug({ clientId: client?.id, err: err.message }, 'connection error before CONNECT completed')
    })
  }

  private onGone(client: Client): void {
    const ctx = contexts.get(client)
    this.options.metrics.connections.set(this.aedes.connectedClients)
    if (!ctx || ctx.closed) return
    ctx.closed = true
    if (!ctx.announced) return
    // A DISCONNECT packet sets this flag in Aedes [MQTT-3.14.4-3].
    const disconnected = (client as unknown as { _disconnected?: boolean })._disconnected === true
    const reason: DisconnectReason = ctx.closeReason ?? (disconnected ? 'client-disconnect' : 'socket-closed')
    this.options.observer.disconnected(ctx, reason)
  }
}

/** CONNACK written and the session's queue emptied (aedes connect.js sets `connected`). */
function isReady(client: Client): boolean {
  return (client as unknown as { connected?: boolean }).connected === true
}

function toBuffer(payload: PublishPacket['payload']): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
}

/**
 * The client certificate of a TLS connection and the certificates it sent after its own
 * (intermediate CAs), as Node links them (issuerCertificate), each once. One call for both:
 * after getPeerX509Certificate() Node's getPeerCertificate(true) no longer links the chain.
 */
function presentedCertificates(socket: TLSSocket): { cert: X509Certificate; chain: X509Certificate[] } | undefined {
  const leaf: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
  if (!leaf?.raw) return undefined
  const chain: X509Certificate[] = []
  const seen = new Set<string>([leaf.fingerprint256])
  for (let c = leaf.issuerCertificate; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256)
    chain.push(new X509Certificate(c.raw))
  }
  return { cert: new X509Certificate(leaf.raw), chain }
}
