import { randomBytes } from 'node:crypto'

/**
 * Just enough WebSocket (RFC 6455) for MQTT over WebSocket on the gateway's HTTP port: the
 * upgrade request, client frames (binary, masked [RFC 6455 5.3]) and server frames. Written by
 * hand, not with the `ws` client, so that the request path can be anything a client may send.
 */

export function upgradeRequest(path: string, host: string, protocol: string | null): Buffer {
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    ...(protocol === null ? [] : [`Sec-WebSocket-Protocol: ${protocol}`]),
  ]
  // latin1: a path is sent byte for byte, whatever it holds.
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1')
}

/** One binary frame carrying `payload`, masked as every client frame must be. */
export function binaryFrame(payload: Buffer): Buffer {
  const n = payload.length
  const head = n < 126 ? Buffer.from([0x82, 0x80 | n]) : n < 65536 ? Buffer.from([0x82, 0x80 | 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0x82, 0x80 | 127]), u64(n)])
  const mask = randomBytes(4)
  const body = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) body[i] = payload[i]! ^ mask[i & 3]!
  return Buffer.concat([head, mask, body])
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

/** Reads the server's side: first the HTTP response to the upgrade, then frames. */
export class WebSocketReader {
  /** HTTP status of the upgrade response, once its head has arrived. */
  status: number | null = null
  closed = false
  private buf = Buffer.alloc(0)

  /** Feed bytes from the socket; returns the binary payloads complete so far. */
  push(chunk: Buffer): Buffer[] {
    this.buf = Buffer.concat([this.buf, chunk])
    if (this.status === null) {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end < 0) return []
      this.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(this.buf.subarray(0, end).toString('latin1'))?.[1] ?? 0)
      this.buf = this.buf.subarray(end + 4)
    }
    return this.status === 101 ? this.frames() : []
  }

  private frames(): Buffer[] {
    const out: Buffer[] = []
    for (;;) {
      if (this.buf.length < 2) return out
      const opcode = this.buf[0]! & 0x0f
      let len = this.buf[1]! & 0x7f
      let at = 2
      if (len === 126) {
        if (this.buf.length < 4) return out
        len = this.buf.readUInt16BE(2)
        at = 4
      } else if (len === 127) {
        if (this.buf.length < 10) return out
        len = Number(this.buf.readBigUInt64BE(2))
        at = 10
      }
      // Server frames are never masked [RFC 6455 5.1].
      if (this.buf.length < at + len) return out
      const payload = this.buf.subarray(at, at + len)
      this.buf = this.buf.subarray(at + len)
      if (opcode === 0x8) this.closed = true
      else if (opcode === 0x2 || opcode === 0x0) out.push(Buffer.from(payload))
    }
  }
}
