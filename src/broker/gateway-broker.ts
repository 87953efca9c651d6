import type { TLSSocket } from 'node:tls'
import { Aedes, type AedesOptions, type Client, type PublishPacket, type Subscription } from 'aedes'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import { RepeatLimitedLog } from '../observability/repeat-log.js'
import { GatewayError, toGatewayError } from '../errors/catalogue.js'
import { brokerClients, checkInternals, nextMessageId, releaseConnectPacket, wrapPublish } from './aedes-internals.js'
import { guardPacketSize, setPacketGuard } from './packet-guard.js'
import { drained, topicMatches, writePublish, type OutboundBound } from './outbound.js'
import { connectionMeta, contexts, DeviceConnection, isCleanSession, type ConnectionMeta, type Hold } from './device-connection.js'
import { attachSessionHooks, keepSubscriptionsOutOfAedes } from './session-hooks.js'
import { wireConnectionEvents } from './connection-events.js'
import { ExpiryWheel } from './token-expiry.js'
import { presentedCertificates } from './tls-peer.js'
import type { ConnectionAdmission } from './admission.js'
import { isIotHubTopic } from '../protocol/topics.js'
import type {
  ConnectionContext,
  ConnectionObserver,
  DeliveryObserver,
  DeviceAuthenticator,
  DeviceChannel,
  InboundPublish,
  PublishDone,
  PublishHandler,
  SendResult,
  SessionStore,
  DeviceOwnership,
  SubscriptionPolicy,
  Transport,
} from './ports.js'

export interface BrokerLimits {
  maxPayloadBytes: number
  maxConnectPacketBytes: number
  maxSubscribePacketBytes: number
  maxPacketsBeforeConnack: number
  maxOutboundBytes: number
  outboundDrainSeconds: number
}

export interface GatewayBrokerOptions {
  authenticator: DeviceAuthenticator
  publishHandler: PublishHandler
  subscriptionPolicy: SubscriptionPolicy
  observer: ConnectionObserver
  /** Subscriptions that outlive connections and restarts (clean session 0 [MQTT-3.1.2-4]). */
  sessions: SessionStore
  /** Claims each device before its CONNACK (several instances: the newest connection wins). */
  ownership?: DeviceOwnership
  deliveryObserver?: DeliveryObserver
  metrics: GatewayMetrics
  logger: Logger
  limits: BrokerLimits
  connectTimeoutMs: number
  /** A connection is closed this long after its SAS token expires (auth.clockSkewSeconds). */
  tokenGraceMs: number
  /** Marks sockets authenticated; the listeners admitted them (broker/admission.ts). */
  admission?: ConnectionAdmission
  /** log.repeatIntervalSeconds in ms: client-caused warnings are logged once per code per interval. */
  repeatIntervalMs: number
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
  private readonly warnings: RepeatLimitedLog
  private readonly outbound: OutboundBound
  private readonly expiry: ExpiryWheel<Client>
  private closing = false
  /** What a connection holds (DeviceConnection.hold): its session cache entry, its ownership epoch. */
  private readonly sessionHold: Hold
  private readonly ownershipHold: Hold

  private constructor(
    aedes: Aedes,
    private readonly options: GatewayBrokerOptions,
  ) {
    this.aedes = aedes
    this.log = options.logger.child({ component: 'broker' })
    this.warnings = new RepeatLimitedLog(this.log, options.repeatIntervalMs, options.metrics.logLinesLeftOut)
    this.outbound = {
      maxBytes: options.limits.maxOutboundBytes,
      drainMs: options.limits.outboundDrainSeconds * 1000,
      overflow: (client, error) => this.closeFor(client, error),
    }
    this.expiry = new ExpiryWheel((client) => this.tokenExpired(client))
    this.sessionHold = { release: (ctx) => options.sessions.forget(ctx.deviceId) }
    this.ownershipHold = { release: (ctx) => options.ownership?.release(ctx.deviceId, ctx.epoch) }
  }

  static async create(options: GatewayBrokerOptions): Promise<GatewayBroker> {
    let self: GatewayBroker | null = null
    const hooks: AedesOptions = {
      connectTimeout: options.connectTimeoutMs,
      // Packets a client sends before its CONNACK wait in memory, unauthenticated: few, and small (packet-guard.ts).
      queueLimit: options.limits.maxPacketsBeforeConnack,
      drainTimeout: options.limits.outboundDrainSeconds * 1000,
      authenticate: (client, username, password, done) => self!.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => self!.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => self!.authorizeSubscribe(client, sub, done),
      // Nothing is ever forwarded through Aedes' broker-wide pub/sub: cloud-to-device and
      // `$iothub/...` traffic is written to the one connection it is meant for (GatewayBroker.send).
      authorizeForward: () => null,
    }
    const aedes = await Aedes.createBroker(hooks)
    try {
      checkInternals(aedes)
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      throw err
    }
    self = new GatewayBroker(aedes, options)
    const broker = self
    setPacketGuard(aedes, options.limits, (client, error) => broker.refusedByGuard(client, error), (client) => contexts.has(client))
    self.keepDevicePublishesOffFanOut()
    keepSubscriptionsOutOfAedes(aedes)
    attachSessionHooks(aedes, options.sessions, options.deliveryObserver)
    wireConnectionEvents(aedes, options.observer, options.metrics, self.log, (client) => broker.expiry.cancel(client))
    return self
  }

  /**
   * Hand a new transport connection to Aedes. `tlsSocket`: the TLS connection under an mqtts or
   * wss stream, for its client certificate; `admissionKey`: the socket's key in the admission control.
   */
  handle(stream: Parameters<Aedes['handle']>[0], transport: Transport, remoteAddress: string, req?: Parameters<Aedes['handle']>[1], tlsSocket?: TLSSocket, admissionKey?: string): void {
    if (this.closing) {
      stream.destroy()
      return
    }
    const client = this.aedes.handle(stream, req)
    const meta: ConnectionMeta = {
      transport,
      remoteAddress,
      ...(admissionKey === undefined ? {} : { admissionKey }),
      ...(tlsSocket ? { peerCertificates: () => presentedCertificates(tlsSocket) } : {}),
    }
    connectionMeta.set(client, meta)
    // Whatever the connection holds (its session cache entry) goes with its transport, whether
    // Aedes ever registered the client or not.
    stream.once('close', () => {
      meta.gone = true
      contexts.get(client)?.releaseHolds()
    })
    guardPacketSize(client)
  }

  /** The live connection of a device, if any. */
  connectionOf(deviceId: string): ConnectionContext | null {
    const client = this.liveClient(deviceId)
    return client ? (contexts.get(client) ?? null) : null
  }

  isSubscribed(deviceId: string, topic: string): boolean {
    const client = this.liveClient(deviceId)
    if (!client || !client.connected) return false
    for (const filter of this.options.sessions.subscriptions(deviceId).keys()) {
      if (topicMatches(filter, topic)) return true
    }
    return false
  }

  send(deviceId: string, topic: string, payload: Buffer, qos: 0 | 1, dup = false): SendResult | null {
    const client = this.liveClient(deviceId)
    const ctx = client ? contexts.get(client) : undefined
    // `connected`: CONNACK written and the session's queue emptied (aedes connect.js).
    if (!client || !ctx || ctx.closed || !client.connected) return null
    const messageId = qos === 1 ? nextMessageId(client) : null
    const written = writePublish(client, { topic, payload, qos, dup, ...(messageId === null ? {} : { messageId }) }, this.outbound)
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

  /**
   * The device connected again elsewhere (another instance claimed it with `epoch`): close the
   * connection here if it is older. IoT Hub: a new connection replaces the old one.
   */
  replaceOlderThan(deviceId: string, epoch: number): boolean {
    const client = this.liveClient(deviceId)
    const ctx = client ? contexts.get(client) : undefined
    if (!client || !ctx || ctx.epoch >= epoch) return false
    if (!ctx.closeReason) ctx.closeReason = 'replaced'
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
    this.expiry.stop()
    for (const client of Object.values(brokerClients(this.aedes))) {
      const ctx = contexts.get(client)
      if (ctx && !ctx.closeReason) ctx.closeReason = 'gateway-shutdown'
    }
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
  }

  private liveClient(deviceId: string): Client | null {
    const client = brokerClients(this.aedes)[deviceId]
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
    const run = async (): Promise<{ ctx: DeviceConnection; expiresAt: number | undefined }> => {
      if (this.closing) throw new GatewayError('E_SHUTTING_DOWN', 'the gateway is shutting down')
      const who = await this.options.authenticator.authenticate(attempt)
      const ctx = new DeviceConnection(who.deviceId, meta.remoteAddress, meta.transport, who.method)
      // The session is in the cache before the CONNACK: deliveries right behind it read it.
      const { sessions } = this.options
      await sessions.restore(who.deviceId, isCleanSession(client))
      ctx.hold(this.sessionHold)
      const { ownership } = this.options
      if (ownership) {
        try {
          ctx.epoch = await ownership.claim(who.deviceId, ctx.connectionId)
        } catch (err) {
          ctx.releaseHolds()
          throw err
        }
        ctx.hold(this.ownershipHold)
      }
      return { ctx, expiresAt: who.tokenExpiresAt }
    }
    run().then(
      ({ ctx, expiresAt }) => {
        if (meta.gone) {
          // Closed while it was being authenticated: nothing to register, nothing to keep.
          ctx.releaseHolds()
          done(Object.assign(new Error('the connection closed during authentication'), { returnCode: 3 }), false)
          return
        }
        contexts.set(client, ctx)
        releaseConnectPacket(client)
        if (meta.admissionKey !== undefined) {
          this.options.admission?.established(meta.admissionKey)
          meta.admissionKey = undefined
        }
        if (expiresAt !== undefined) this.expiry.schedule(client, expiresAt * 1000 + this.options.tokenGraceMs)
        const previous = this.liveClient(ctx.deviceId)
        const previousCtx = previous && previous !== client ? contexts.get(previous) : undefined
        if (previousCtx && !previousCtx.closeReason) previousCtx.closeReason = 'replaced'
        done(null, true)
      },
      (err: unknown) => {
        const gerr = toGatewayError(err)
        this.options.metrics.authFailures.inc({ code: gerr.code })
        // The client id is the claimed device id; the credentials themselves are never logged.
        this.warnings.warn(gerr.code, { clientId: client.id, remoteAddress: meta.remoteAddress, transport: meta.transport }, `connect refused: ${gerr.message}`)
        done(Object.assign(new Error(gerr.message), { returnCode: gerr.returnCode, code: gerr.code }), false)
      },
    )
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    if (!client) {
      // Only the gateway itself publishes without a client (wills are not used by IoT Hub devices).
      done(null)
      return
    }
    const ctx = contexts.get(client)
    if (!ctx) {
      // A PUBLISH sent right behind its CONNECT (MQTT 3.1.1 lets a client do that) can reach this
      // hook while the CONNECT is still being authenticated. It waits for the CONNACK, and goes
      // nowhere if the CONNECT is refused: nothing before authentication is acknowledged.
      void afterConnack(client).then((connected) =>
        connected && contexts.has(client)
          ? this.authorizePublish(client, packet, done)
          : done(this.refuse(client, undefined, new GatewayError('E_PROTOCOL_ERROR', 'a PUBLISH from a connection that did not authenticate [MQTT-3.1.0-1]'), 'publish')),
      )
      return
    }
    const inbound: InboundPublish = { topic: packet.topic, payload: toBuffer(packet.payload), qos: packet.qos as 0 | 1 | 2, retain: packet.retain === true }
    const finish = (err: unknown): void => {
      if (err !== null) {
        done(this.refuse(client, ctx, toGatewayError(err), 'publish'))
        return
      }
      ;(packet as IngestedPacket)[INGESTED] = true
      done(null)
    }
    if (isIotHubTopic(packet.topic)) {
      // Requests on IoT Hub's topics are answered one at a time per connection (DeviceConnection.serialize).
      ctx
        .serialize(() => new Promise<void>((resolve, reject) => this.whenDrained(client, ctx, inbound, (err) => (err === null ? resolve() : reject(err)))))
        .then(
          () => finish(null),
          (err: unknown) => finish(err ?? new GatewayError('E_INTERNAL', 'device request failed')),
        )
    } else this.whenDrained(client, ctx, inbound, finish)
  }

  /** A device that does not read what it is sent is not read either (outbound.ts). */
  private whenDrained(client: Client, ctx: DeviceConnection, inbound: InboundPublish, done: PublishDone): void {
    const ready = drained(client, this.outbound)
    const handler = this.options.publishHandler
    if (!ready) handler.handlePublish(ctx, inbound, done)
    else
      ready.then(
        () => handler.handlePublish(ctx, inbound, done),
        (err: unknown) => done(err ?? new GatewayError('E_SLOW_CONSUMER', 'the device does not read what it is sent')),
      )
  }

  private authorizeSubscribe(client: Client, sub: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void): void {
    const ctx = contexts.get(client)
    if (!ctx && !client.closed && !client.connected) {
      // Sent right behind its CONNECT: decided once the CONNECT is (see authorizePublish).
      void afterConnack(client).then(() => this.authorizeSubscribe(client, sub, done))
      return
    }
    try {
      if (!ctx) throw new GatewayError('E_TOPIC_FORBIDDEN', 'subscription before authentication')
      const qos = this.options.subscriptionPolicy.authorizeSubscription(ctx, sub.topic, sub.qos)
      done(null, { ...sub, qos: qos as Subscription['qos'] })
    } catch (err) {
      // A refused filter closes the connection: the Azure SDK treats SUBACK 0x80 as success, so a
      // silent refusal would break the feature without anyone noticing. Nothing of the packet is
      // stored (session-hooks.ts).
      done(this.refuse(client, ctx, toGatewayError(err), 'subscribe'))
    }
  }

  /** Log (once per code per interval), count and turn a refusal into the error that makes Aedes close the connection. */
  private refuse(client: Client, ctx: DeviceConnection | undefined, err: GatewayError, action: 'publish' | 'subscribe' | 'packet'): Error {
    if (ctx && !ctx.closeReason) ctx.closeReason = `error:${err.code}`
    if (err.code === 'E_TOPIC_FORBIDDEN') this.options.metrics.aclDenials.inc({ action, code: err.code })
    else this.options.metrics.protocolErrors.inc({ code: err.code })
    const fields = { deviceId: ctx?.deviceId ?? client.id ?? undefined, remoteAddress: connectionMeta.get(client)?.remoteAddress, action }
    if (err.code === 'E_SHUTTING_DOWN') this.log.info({ code: err.code, ...fields }, `closing connection: ${err.message}`)
    else this.warnings.warn(err.code, fields, `closing connection: ${err.message}`)
    return err
  }

  /** The packet guard stopped a connection's parser (oversize, bad UTF-8, protocol level). */
  private refusedByGuard(client: Client, error: GatewayError): void {
    this.refuse(client, contexts.get(client), error, 'packet')
  }

  /** Close a connection the gateway gave up on (slow consumer), counted and logged once per interval. */
  private closeFor(client: Client, error: GatewayError): void {
    if (client.closed) return
    this.refuse(client, contexts.get(client), error, 'packet')
    client.close()
  }

  /** IoT Hub closes a connection when its SAS token expires; the device reconnects with a new one. */
  private tokenExpired(client: Client): void {
    const ctx = contexts.get(client)
    if (!ctx || ctx.closed || client.closed) return
    if (!ctx.closeReason) ctx.closeReason = 'token-expired'
    this.log.info({ deviceId: ctx.deviceId, code: 'E_AUTH_EXPIRED' }, 'closing connection: its SAS token expired')
    client.close()
  }

  /**
   * Aedes would run every device publish through its broker-wide pub/sub (mqemitter, offline
   * enqueue per QoS 1 message). Device publishes are already in the stream by the time Aedes
   * calls `publish`, so they stop here: no other MQTT client can receive them, and a flood of
   * device publishes never reaches mqemitter (whose recursion crashed bare Aedes, aedes #193).
   */
  private keepDevicePublishesOffFanOut(): void {
    wrapPublish(this.aedes, (original) => (packet, client, done) => {
      if ((packet as IngestedPacket)[INGESTED] === true) {
        const cb = typeof client === 'function' ? (client as typeof done) : done
        if (cb) cb()
        return
      }
      original(packet, client, done)
    })
  }
}

/** Resolves true once the client's CONNACK 0 is written and its session restored, false if it closes first. */
function afterConnack(client: Client): Promise<boolean> {
  if (client.connected) return Promise.resolve(true)
  if (client.closed) return Promise.resolve(false)
  return new Promise((resolve) => {
    const connected = (): void => {
      client.conn.off('close', closed)
      resolve(true)
    }
    const closed = (): void => {
      client.off('connected', connected)
      resolve(false)
    }
    // aedes connect.js emits 'connected' on the client once CONNACK and session restore are done.
    client.once('connected', connected)
    client.conn.once('close', closed)
  })
}

function toBuffer(payload: PublishPacket['payload']): Buffer {
  // mqtt-packet hands a Buffer already (a view, no copy needed).
  return typeof payload === 'string' ? Buffer.from(payload) : payload
}

/**
 * Marks a device publish the gateway has taken, so that Aedes' publish stops it (see
 * keepDevicePublishesOffFanOut). A property on the packet, not a WeakSet: weak collections cost
 * the garbage collector work for every one of 100k packets a second.
 */
const INGESTED = Symbol('streamgate.ingested')
type IngestedPacket = PublishPacket & { [INGESTED]?: boolean }

