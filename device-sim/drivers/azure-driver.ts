import { SimError } from '../errors.js'
import type { DeviceDriver, DriverOptions, TelemetryMessage } from './types.js'
import type { DriverFactory } from './index.js'

/**
 * One device on the unmodified Azure IoT device SDK (azure-iot-device + azure-iot-device-mqtt),
 * over its `Mqtt` (mqtts, 8883) or `MqttWs` (wss, 443) transport. The SDK always uses TLS, so
 * this driver needs a gateway TLS listener and --ca for a private CA; the socket goes to the
 * --gateway host through GatewayHostName while the user name and SAS audience keep hubHost
 * (IoT Hub MQTT support, "TLS/SSL configuration" and MQTT over WebSockets on port 443). The SDK renews tokens and re-subscribes itself; the device's back-off
 * still drives reconnection after a drop, through open().
 */

interface SdkMessage {
  data: unknown
  properties: { add(key: string, value: string): void; propertyList: Array<{ key: string; value: string }> }
}
interface SdkMethodResponse {
  send(status: number, payload: unknown): Promise<void>
}
interface SdkTwin {
  properties: { reported: { update(patch: unknown, done: (err?: Error) => void): void } }
}
interface SdkClient {
  setOptions(options: Record<string, unknown>): Promise<unknown>
  open(): Promise<unknown>
  close(): Promise<unknown>
  sendEvent(message: SdkMessage): Promise<unknown>
  getTwin(): Promise<SdkTwin>
  complete(message: SdkMessage): Promise<unknown>
  onDeviceMethod(name: string, handler: (request: { methodName: string; payload: unknown }, response: SdkMethodResponse) => void): void
  on(event: 'message', fn: (message: SdkMessage) => void): void
  on(event: 'disconnect' | 'error', fn: (err?: Error) => void): void
}
interface SdkModule {
  Client: { fromConnectionString(cs: string, transport: unknown): SdkClient }
  Message: new (data: Buffer) => SdkMessage
}

export async function loadAzureDriver(): Promise<DriverFactory> {
  let device: SdkModule
  let transports: { Mqtt: unknown; MqttWs: unknown }
  try {
    device = (await import('azure-iot-device')) as unknown as SdkModule
    transports = (await import('azure-iot-device-mqtt')) as unknown as { Mqtt: unknown; MqttWs: unknown }
  } catch {
    throw new SimError('E_SIM_DRIVER_UNAVAILABLE', 'the azure driver needs azure-iot-device and azure-iot-device-mqtt installed')
  }
  return (options) => new AzureSdkDriver(options, device, options.transport === 'mqttws' ? transports.MqttWs : transports.Mqtt)
}

/** Every SDK method name the sim answers: the SDK registers handlers by name, not by wildcard. */
const METHOD_NAMES = ['ping', 'reboot', 'setInterval', 'echo']

class AzureSdkDriver implements DeviceDriver {
  onConnectionLost: (err?: Error) => void = () => {}
  private readonly client: SdkClient
  private isConnected = false
  private closing = false
  private twin: SdkTwin | null = null
  private subscribed = false

  constructor(
    private readonly options: DriverOptions,
    private readonly sdk: SdkModule,
    transport: unknown,
  ) {
    const url = new URL(options.gatewayUrl)
    // GatewayHostName moves only the socket; HostName stays what the gateway signs against.
    const port = url.port && options.transport === 'mqtt' ? `:${url.port}` : ''
    const cs = `HostName=${options.hubHost};DeviceId=${options.deviceId};SharedAccessKey=${options.key};GatewayHostName=${url.hostname}${port}`
    this.client = sdk.Client.fromConnectionString(cs, transport)
    this.client.on('disconnect', (err) => {
      this.isConnected = false
      if (!this.closing) this.onConnectionLost(err)
    })
    this.client.on('error', () => {})
  }

  get connected(): boolean {
    return this.isConnected
  }

  async connect(): Promise<void> {
    if (this.options.ca) await this.client.setOptions({ ca: this.options.ca })
    await this.client.open()
    this.isConnected = true
    if (!this.subscribed) this.subscribe()
  }

  async publish(message: TelemetryMessage): Promise<void> {
    // The SDK always publishes telemetry at QoS 1 (IoT Hub MQTT support, "Sending device-to-cloud messages"); qos 0 is not available.
    const m = new this.sdk.Message(message.payload)
    for (const [k, v] of Object.entries(message.properties)) m.properties.add(k, v)
    await this.client.sendEvent(m)
  }

  async reportTwin(patch: Record<string, unknown>): Promise<void> {
    this.twin ??= await this.client.getTwin()
    const twin = this.twin
    await new Promise<void>((resolve, reject) => twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve())))
  }

  drop(): void {
    // The SDK hides its socket; closing and reopening is the nearest it allows.
    void this.client.close().then(() => this.onConnectionLost())
    this.isConnected = false
  }

  async close(): Promise<void> {
    this.closing = true
    await this.client.close().catch(() => {})
  }

  private subscribe(): void {
    this.subscribed = true
    const { behaviour, handlers } = this.options
    if (behaviour.c2d) {
      this.client.on('message', (message) => {
        const properties = new Map<string, string | null>(message.properties.propertyList.map((p) => [p.key, p.value]))
        handlers.onC2d(properties, Buffer.isBuffer(message.data) ? message.data : Buffer.from(String(message.data)))
        void this.client.complete(message)
      })
    }
    if (behaviour.methods) {
      for (const name of METHOD_NAMES) {
        this.client.onDeviceMethod(name, (request, response) => {
          void handlers.onMethod(request.methodName, Buffer.from(JSON.stringify(request.payload ?? null))).then((reply) => response.send(reply.status, reply.payload))
        })
      }
    }
  }
}
