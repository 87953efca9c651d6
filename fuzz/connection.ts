import { connect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { binaryFrame, upgradeRequest, WebSocketReader } from './websocket.js'

/** How a fuzz connection ended. */
export type End = 'closed-by-gateway' | 'reset-by-gateway' | 'closed-by-us' | 'connect-failed'

export interface OpenOptions {
  host: string
  port: number
  localAddress?: string
  timeoutMs: number
  /** MQTT over WebSocket: the upgrade request's path and sub-protocol (none when null). */
  ws?: { path: string; protocol: string | null }
}

/**
 * One connection to the gateway as the fuzzer sees it: bytes out, MQTT packets in (parsed with
 * mqtt-packet, as a client would), and whether and how the gateway closed it. Over TCP, or over
 * WebSocket on the HTTP port, where each write is one binary frame.
 */
export class FuzzConnection {
  end: End | null = null
  /** Set when the gateway's own bytes do not parse as MQTT 3.1.1. */
  parseError: string | null = null
  lastActivity = performance.now()
  private readonly waiters = new Set<() => void>()
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 })
  private readonly ws: WebSocketReader | null

  private constructor(
    private readonly socket: Socket,
    onPacket: (packet: mqttPacket.Packet) => void,
    ws: boolean,
  ) {
    this.ws = ws ? new WebSocketReader() : null
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.lastActivity = performance.now()
      const payloads = this.ws ? this.ws.push(chunk) : [chunk]
      if (this.ws?.closed) this.finish('closed-by-gateway')
      for (const p of payloads) if (this.parseError === null) this.parser.parse(p)
      this.wake()
    })
    this.parser.on('packet', (packet: mqttPacket.Packet) => onPacket(packet))
    this.parser.on('error', (err: Error) => {
      this.parseError = err.message
    })
    socket.on('end', () => this.finish('closed-by-gateway'))
    socket.on('error', (err: NodeJS.ErrnoException) => this.finish(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset-by-gateway' : 'closed-by-gateway'))
    socket.on('close', () => this.finish('closed-by-gateway'))
  }

  /** Connect (and upgrade, over WebSocket); null when the TCP connection failed. */
  static async open(o: OpenOptions, onPacket: (packet: mqttPacket.Packet) => void): Promise<FuzzConnection | null> {
    const socket = await new Promise<Socket | null>((resolve) => {
      const s = connect({ host: o.host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) })
      const timer = setTimeout(() => {
        s.destroy()
        resolve(null)
      }, o.timeoutMs)
      s.once('connect', () => {
        clearTimeout(timer)
        s.removeAllListeners('error')
        resolve(s)
      })
      s.once('error', () => {
        clearTimeout(timer)
        resolve(null)
      })
    })
    if (!socket) return null
    const conn = new FuzzConnection(socket, onPacket, o.ws !== undefined)
    if (o.ws) {
      socket.write(upgradeRequest(o.ws.path, `${o.host}:${o.port}`, o.ws.protocol))
      await conn.until(() => conn.upgradeStatus !== null, o.timeoutMs)
    }
    return conn
  }

  /** HTTP status of the WebSocket upgrade (101 when it worked); null over TCP or before the answer. */
  get upgradeStatus(): number | null {
    return this.ws?.status ?? null
  }

  get closed(): boolean {
    return this.end !== null
  }

  /** Write bytes unless the connection is gone; false when nothing was written. */
  write(bytes: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false
    this.lastActivity = performance.now()
    this.socket.write(this.ws ? binaryFrame(bytes) : bytes)
    return true
  }

  /** Wait until `done()` holds, the connection closes, or `ms` pass; returns `done()`. */
  async until(done: () => boolean, ms: number): Promise<boolean> {
    const deadline = performance.now() + ms
    while (!done() && !this.closed) {
      const left = deadline - performance.now()
      if (left <= 0) break
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer)
          this.waiters.delete(wake)
          resolve()
        }
        const timer = setTimeout(wake, left)
        this.waiters.add(wake)
      })
    }
    return done()
  }

  /** Wait until the gateway closes the connection or nothing has moved for `idleMs`. */
  async settle(idleMs: number, capMs: number): Promise<void> {
    const deadline = performance.now() + capMs
    while (!this.closed && performance.now() < deadline) {
      const quiet = performance.now() - this.lastActivity
      if (quiet >= idleMs) return
      await this.until(() => false, Math.min(idleMs - quiet, deadline - performance.now()))
    }
  }

  /** Close our side (if the gateway has not) and stop listening. */
  destroy(): void {
    if (!this.closed) this.end = 'closed-by-us'
    this.socket.destroy()
    this.wake()
  }

  private finish(end: End): void {
    if (this.end === null) this.end = end
    this.wake()
  }

  private wake(): void {
    for (const w of [...this.waiters]) w()
  }
}
