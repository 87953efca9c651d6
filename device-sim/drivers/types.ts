import type { Behaviour } from '../scenario.js'

/**
 * The port every device driver implements: one simulated device's connection. The device
 * (device.ts) owns timing, sequence numbers, back-off and measurement; a driver only speaks the
 * protocol. Two adapters: MqttJsDriver (mqtt.js, the default and cheapest per device) and
 * AzureSdkDriver (the unmodified Azure IoT device SDK).
 */

export interface TelemetryMessage {
  payload: Buffer
  /** Application properties, including sim-seq, sim-ts and sim-run. */
  properties: Record<string, string>
  qos: 0 | 1
}

export interface MethodReply {
  status: number
  payload: unknown
}

/** What a driver calls back into when the cloud talks to the device. */
export interface CommandHandlers {
  /** A cloud-to-device message arrived (the driver has completed it). */
  onC2d(properties: ReadonlyMap<string, string | null>, payload: Buffer): void
  onMethod(name: string, payload: Buffer): Promise<MethodReply>
}

export interface DriverOptions {
  deviceId: string
  /** Base64 device key (SAS). */
  key: string
  /** Host named in the user name and the SAS audience. */
  hubHost: string
  /** mqtt://host:port (mqtt driver) or the host to connect to (azure driver, GatewayHostName). */
  gatewayUrl: string
  /**
   * Every instance to try, starting with gatewayUrl; a device whose connection is lost or
   * refused goes on to the next (mqtt driver). Absent: gatewayUrl only.
   */
  gatewayUrls?: string[]
  /** Local address to bind (spreads connections over 127.0.0.x). */
  localAddress?: string
  behaviour: Behaviour
  handlers: CommandHandlers
  transport: 'mqtt' | 'mqttws'
  /** PEM text to trust (TLS transports). */
  ca?: string
}

export interface DeviceDriver {
  readonly connected: boolean
  /**
   * Connect (first time) or connect again after a close, keeping the session and the
   * unacknowledged QoS 1 messages. Resolves once the gateway accepted the connection.
   */
  connect(): Promise<void>
  /** Resolves on PUBACK for QoS 1, once written for QoS 0. */
  publish(message: TelemetryMessage): Promise<void>
  /** Send a reported-properties patch; resolves on the gateway's 204. */
  reportTwin(patch: Record<string, unknown>): Promise<void>
  /** Cut the connection abruptly (no DISCONNECT), as a network failure would. */
  drop(): void
  /** Final, graceful close; pending QoS 1 messages are abandoned. */
  close(): Promise<void>
  /** Set by the device: called when an established connection is lost (not after close()). */
  onConnectionLost: (err?: Error) => void
}
