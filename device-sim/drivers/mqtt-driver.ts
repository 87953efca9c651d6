import { createConnection } from 'node:net'
import { MqttClient, connect as mqttConnect, type IClientOptions, type IConnackPacket } from 'mqtt'
import { generateSasToken } from '../../src/auth/sas.js'
import { SimError } from '../errors.js'
import type { DeviceDriver, DriverOptions, TelemetryMessage } from './types.js'
import { METHODS_FILTER, TWIN_RESPONSE_FILTER, c2dFilter, classifyIncoming, methodResponseTopic, telemetryTopic, twinPatchTopic } from './mqtt-topics.js'

/** SAS tokens live an hour, as the SDK's; a reconnect signs a fresh one. */
const TOKEN_TTL_S = 3600
const TWIN_TIMEOUT_MS = 10_000

/**
 * One device over mqtt.js, speaking IoT Hub's dialect as the Azure SDK does (IoT Hub MQTT support, "Using the MQTT protocol directly (as a device)"):
 * MQTT 3.1.1, clean session 0, user name `<host>/<id>/?api-version=...`, SAS token as password.
 * mqtt.js's own reconnect is off: the device decides when to reconnect (back-off, storms), and
 * calls connect() again, which reuses the client so unacknowledged QoS 1 messages are resent.
 */
export class MqttJsDriver implements DeviceDriver {
  onConnectionLost: (err?: Error) => void = () => {}
  private client: MqttClient | null = null
  private closing = false
  private nextRid = 1
  private readonly twinWaiters = new Map<string, (status: number) => void>()
  private twinSubscribed = false
  /** QoS 1 messages without a PUBACK yet, in publish order, each with its (re)send function. */
  private readonly unacked = new Map<number, () => void>()
  private nextKey = 1
  /** Index in gatewayUrls of the instance this device connects to now. */
  private at = 0
  private readonly urls: string[]

  constructor(private readonly options: DriverOptions) {
    this.urls = options.gatewayUrls?.length ? options.gatewayUrls : [options.gatewayUrl]
  }

  /** The instance connected to (or tried) now. */
  get gatewayUrl(): string {
    return this.urls[this.at]!
  }

  get connected(): boolean {
    return this.client?.connected ?? false
  }

  async connect(): Promise<void> {
    const client = this.client ?? this.createClient()
    // A fresh token each time: a reconnect late in a long run must not present an expired one.
    client.options.password = this.token()
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      const cleanup = (): void => {
        client.off('connect', onConnect)
        client.off('error', onError)
        client.off('close', onClose)
      }
      const onConnect = (packet: IConnackPacket): void => (cleanup(), resolve(packet))
      // A refused or failed connect sends the next attempt to the next instance (when there are several).
      const onError = (err: Error): void => (cleanup(), this.moveOn(), reject(err))
      const onClose = (): void => (cleanup(), this.moveOn(), reject(new SimError('E_SIM_DRIVER_UNAVAILABLE', 'connection closed before CONNACK', { code: 'ECONNCLOSED' })))
      client.on('connect', onConnect)
      client.on('error', onError)
      client.on('close', onClose)
      if (this.client === null) {
        this.client = client
        client.connect()
      } else client.reconnect()
    })
    // Subscriptions outlive connections in a persistent session (§7); renew them only when
    // the gateway says it kept no session.
    if (!connack.sessionPresent) await this.subscribe(client)
    // At-least-once is ours to keep: mqtt.js 5 does not resend its in-flight QoS 1 messages
    // after a manual reconnect() (measured: 200 in flight at a drop, none resent, none acked),
    // and hands a message published while offline to nobody. So everything unacknowledged is
    // published again, in order, under new packet ids; the stream counts any duplicate.
    for (const send of [...this.unacked.values()]) send()
  }

  publish(message: TelemetryMessage): Promise<void> {
    const client = this.requireClient()
    const topic = telemetryTopic(this.options.deviceId, message.properties)
    if (message.qos === 0) {
      // Not connected: the message is gone, as on a device without a buffer; the stream's
      // count shows the loss.
      if (!client.connected) return Promise.resolve()
      return new Promise((resolve, reject) => void client.publish(topic, message.payload, { qos: 0 }, (err) => (err ? reject(err) : resolve())))
    }
    return new Promise((resolve) => {
      const key = this.nextKey++
      const send = (): void =>
        void client.publish(topic, message.payload, { qos: 1 }, (err) => {
          // The first PUBACK settles it; a resent copy's later PUBACK finds it gone.
          if (!err && this.unacked.delete(key)) resolve()
        })
      this.unacked.set(key, send)
      if (client.connected) send()
    })
  }

  async reportTwin(patch: Record<string, unknown>): Promise<void> {
    const client = this.requireClient()
    if (!this.twinSubscribed) {
      await client.subscribeAsync(TWIN_RESPONSE_FILTER, { qos: 0 })
      this.twinSubscribed = true
    }
    const rid = String(this.nextRid++)
    const status = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => (this.twinWaiters.delete(rid), reject(new SimError('E_SIM_DRIVER_UNAVAILABLE', 'twin patch unanswered', { code: 'E_TWIN_TIMEOUT' }))), TWIN_TIMEOUT_MS)
      this.twinWaiters.set(rid, (s) => (clearTimeout(timer), resolve(s)))
      // Twin traffic is QoS 0 both ways (§5).
      client.publish(twinPatchTopic(rid), JSON.stringify(patch), { qos: 0 })
    })
    if (status !== 204) throw new SimError('E_SIM_DRIVER_UNAVAILABLE', `twin patch answered ${status}`, { code: `TWIN_${status}` })
  }

  drop(): void {
    this.client?.stream?.destroy()
  }

  async close(): Promise<void> {
    this.closing = true
    const client = this.client
    if (!client) return
    await client.endAsync(true)
  }

  private requireClient(): MqttClient {
    if (!this.client) throw new SimError('E_SIM_DRIVER_UNAVAILABLE', 'not connected yet')
    return this.client
  }

  private token(): string {
    const { hubHost, deviceId, key } = this.options
    return generateSasToken({ host: hubHost, deviceId, key, expiresAt: Math.floor(Date.now() / 1000) + TOKEN_TTL_S })
  }

  private createClient(): MqttClient {
    const { deviceId, hubHost, gatewayUrl, localAddress } = this.options
    const options: IClientOptions = {
      clientId: deviceId,
      username: `${hubHost}/${deviceId}/?api-version=2021-04-12&DeviceClientType=streamgate-sim`,
      clean: false,
      protocolVersion: 4,
      keepalive: 180,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      // A QoS 0 message produced while offline is lost, as on a real device without a buffer.
      queueQoSZero: false,
      manualConnect: true,
      ...(this.options.ca ? { ca: this.options.ca } : {}),
    }
    const url = new URL(gatewayUrl)
    const client =
      url.protocol === 'mqtt:' || url.protocol === 'tcp:'
        ? // mqtt.js's TCP builder ignores localAddress, so build the socket here; each
          // (re)connect reads the instance to use now.
          new MqttClient(() => {
            const target = new URL(this.gatewayUrl)
            return createConnection({ host: target.hostname, port: Number(target.port || 1883), ...(localAddress ? { localAddress } : {}) })
          }, options)
        : mqttConnect(gatewayUrl, options)
    client.on('message', (topic, payload) => this.onMessage(client, topic, payload))
    client.on('close', () => {
      if (!this.closing && this.wasConnected) {
        this.moveOn()
        this.onConnectionLost()
      }
      this.wasConnected = false
    })
    client.on('connect', () => (this.wasConnected = true))
    // Errors after connect (e.g. ECONNRESET) arrive here; 'close' follows and drives reconnection.
    client.on('error', () => {})
    return client
  }

  private wasConnected = false

  private moveOn(): void {
    this.at = (this.at + 1) % this.urls.length
  }

  private async subscribe(client: MqttClient): Promise<void> {
    const { behaviour, deviceId } = this.options
    if (behaviour.c2d) await client.subscribeAsync(c2dFilter(deviceId), { qos: 1 })
    if (behaviour.methods) await client.subscribeAsync(METHODS_FILTER, { qos: 0 })
    this.twinSubscribed = false
  }

  private onMessage(client: MqttClient, topic: string, payload: Buffer): void {
    const incoming = classifyIncoming(this.options.deviceId, topic)
    switch (incoming.kind) {
      case 'c2d':
        // mqtt.js has already PUBACKed it: over MQTT that is the completion (§4).
        this.options.handlers.onC2d(incoming.properties, payload)
        return
      case 'method':
        void this.options.handlers.onMethod(incoming.name, payload).then((reply) => {
          client.publish(methodResponseTopic(reply.status, incoming.rid), JSON.stringify(reply.payload ?? null), { qos: 0 })
        })
        return
      case 'twin-response':
        this.twinWaiters.get(incoming.rid)?.(incoming.status)
        this.twinWaiters.delete(incoming.rid)
        return
      default:
        return
    }
  }
}
