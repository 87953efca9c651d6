import { connect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'

/**
 * A minimal MQTT 3.1.1 publisher for load generation: pre-encoded packets, a fixed window of
 * unacknowledged QoS 1 publishes, PUBACK latency per message. Much cheaper per message than
 * mqtt.js, so that one load process can saturate a broker on the other core.
 */
export interface RawClientOptions {
  host: string
  port: number
  clientId: string
  username?: string
  password?: string
  clean?: boolean
}

export class RawPublisher {
  private socket!: Socket
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 })
  private readonly sentAt = new Map<number, bigint>()
  private nextId = 1
  acked = 0
  onAck: (latencyNs: bigint) => void = () => {}

  constructor(private readonly options: RawClientOptions) {}

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.options.host, port: this.options.port })
      this.socket = socket
      socket.setNoDelay(true)
      socket.on('error', reject)
      this.parser.on('packet', (packet) => {
        if (packet.cmd === 'connack') {
          if (packet.returnCode === 0) resolve()
          else reject(new Error(`CONNACK ${packet.returnCode}`))
        } else if (packet.cmd === 'puback') {
          const t0 = this.sentAt.get(packet.messageId!)
          if (t0 !== undefined) {
            this.sentAt.delete(packet.messageId!)
            this.acked++
            this.onAck(process.hrtime.bigint() - t0)
          }
        }
      })
      socket.on('data', (buf) => this.parser.parse(buf))
      socket.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: this.options.clientId,
          clean: this.options.clean ?? true,
          keepalive: 60,
          ...(this.options.username ? { username: this.options.username } : {}),
          ...(this.options.password ? { password: Buffer.from(this.options.password) } : {}),
        }),
      )
    })
  }

  get inFlight(): number {
    return this.sentAt.size
  }

  /** Send one QoS 1 publish; returns false when the socket buffer is full. */
  publish(topic: string, payload: Buffer): boolean {
    const messageId = this.nextId
    this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1
    this.sentAt.set(messageId, process.hrtime.bigint())
    return this.socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: false, dup: false }))
  }

  close(): void {
    this.socket.end(mqttPacket.generate({ cmd: 'disconnect' }))
    this.socket.destroy()
  }
}
