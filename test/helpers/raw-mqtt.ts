import { connect, type Socket } from 'node:net'
import { createWebSocketStream, WebSocket } from 'ws'
import type { Duplex } from 'node:stream'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { varint } from '../../fuzz/wire.js'

/**
 * A raw MQTT peer for hostile tests: it writes whatever bytes it is given (well-formed or not),
 * over TCP or WebSocket, and records what the gateway answers and when it closes. Nothing is
 * retried, nothing is corrected.
 */
export class RawPeer {
  readonly packets: Packet[] = []
  /** Raw bytes received, for answers the parser could not read (or before the parser errors). */
  received = Buffer.alloc(0)
  readonly closed: Promise<void>
  private closedFlag = false
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 })
  private readonly waiters: Array<() => void> = []

  /** `closes`: what signals the end (a WebSocket stream emits no 'close' of its own). */
  private constructor(readonly stream: Duplex, closes: { once(event: 'close', listener: () => void): unknown } = stream) {
    this.parser.on('packet', (p) => {
      this.packets.push(p)
      for (const w of this.waiters.splice(0)) w()
    })
    this.parser.on('error', () => undefined)
    stream.on('data', (b: Buffer) => {
      this.received = Buffer.concat([this.received, b])
      this.parser.parse(b)
    })
    stream.on('error', () => undefined)
    this.closed = new Promise((resolve) =>
      closes.once('close', () => {
        this.closedFlag = true
        for (const w of this.waiters.splice(0)) w()
        resolve()
      }),
    )
  }

  static tcp(port: number, localAddress?: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket: Socket = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) })
      socket.once('connect', () => resolve(new RawPeer(socket)))
      socket.once('error', reject)
    })
  }

  static ws(url: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'mqtt')
      ws.once('open', () => resolve(new RawPeer(createWebSocketStream(ws), ws)))
      ws.once('error', reject)
    })
  }

  get isClosed(): boolean {
    return this.closedFlag
  }

  write(bytes: Buffer | Packet): void {
    this.stream.write(Buffer.isBuffer(bytes) ? bytes : mqttPacket.generate(bytes))
  }

  /** Resolves with the first packet of `cmd` received, or null once the connection closed without one. */
  async next<C extends Packet['cmd']>(cmd: C, timeoutMs = 10_000): Promise<Extract<Packet, { cmd: C }> | null> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.packets.find((p): p is Extract<Packet, { cmd: C }> => p.cmd === cmd)
      if (found) return found
      if (this.closedFlag) return null
      if (Date.now() > deadline) throw new Error(`no ${cmd} within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** Resolves true when the gateway closes the connection within `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))
    const result = await Promise.race([this.closed.then(() => true as const), timedOut])
    clearTimeout(timer)
    return result
  }

  destroy(): void {
    this.stream.destroy()
  }
}

/** A well-formed IoT Hub CONNECT for a device with a SAS token (clean session 0, like the Azure SDK). */
export function deviceConnect(deviceId: string, token: string, extra: Partial<mqttPacket.IConnectPacket> = {}): mqttPacket.IConnectPacket {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: deviceId,
    clean: false,
    keepalive: 60,
    username: `localhost/${deviceId}/?api-version=2021-04-12`,
    password: Buffer.from(token),
    ...extra,
  }
}

/** The bytes of a packet's remaining-length field [MQTT-2.2.3]. */
export function remainingLength(n: number): number[] {
  return [...varint(n)]
}
