import mqttPacket from 'mqtt-packet'

/**
 * MQTT 3.1.1 bytes for the fuzzer. CONNECT, PUBLISH and SUBSCRIBE are encoded here rather than
 * with mqtt-packet's `generate()` because the fuzzer needs two things generate() refuses: fields
 * it validates (protocol levels other than 3/4/5, an empty client id with clean session 0, a
 * password without a user name) and the byte range of each string, so that a mutation can put
 * invalid UTF-8 or U+0000 inside one string while every length stays right. Everything else is
 * generate()'s. test/unit/fuzz-wire.test.ts parses each encoder's output back with mqtt-packet.
 */

/** A string field's bytes inside a packet: [offset, length) of its content, after the 2-byte length. */
export type Field = readonly [offset: number, length: number]

export interface Encoded {
  bytes: Buffer
  /** Content ranges of the packet's strings, by name (topic, filter0, clientId, username, ...). */
  fields: Record<string, Field>
}

/** MQTT remaining length, the variable byte integer of [MQTT-2.2.3]: 1 to 4 bytes, 7 bits each. */
export function varint(n: number): Buffer {
  const out: number[] = []
  let x = n
  do {
    let byte = x % 128
    x = Math.floor(x / 128)
    if (x > 0) byte |= 0x80
    out.push(byte)
  } while (x > 0)
  return Buffer.from(out)
}

/** Largest remaining length a 4-byte varint can announce: `ff ff ff 7f`. */
export const MAX_REMAINING_LENGTH = 268_435_455

/** Offset of the variable header: 1 byte of type and flags, then the remaining-length varint. */
export function bodyOffset(packet: Buffer): number {
  let i = 1
  while (i < packet.length && i < 5 && (packet[i]! & 0x80) !== 0) i++
  return i + 1
}

/** Assembles a packet from its first byte and body parts, recording string fields on the way. */
class PacketBuilder {
  private readonly parts: Buffer[] = []
  private size = 0
  readonly fields: Record<string, Field> = {}

  bytes(b: Buffer | number[]): this {
    const buf = Buffer.isBuffer(b) ? b : Buffer.from(b)
    this.parts.push(buf)
    this.size += buf.length
    return this
  }

  u16(n: number): this {
    const b = Buffer.alloc(2)
    b.writeUInt16BE(n & 0xffff)
    return this.bytes(b)
  }

  /** A length-prefixed string or binary field [MQTT-1.5.3]. */
  str(value: string | Buffer, name?: string): this {
    const b = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
    this.u16(b.length)
    if (name) this.fields[name] = [this.size, b.length]
    return this.bytes(b)
  }

  finish(firstByte: number): Encoded {
    const head = Buffer.concat([Buffer.from([firstByte]), varint(this.size)])
    const fields: Record<string, Field> = {}
    for (const [k, [off, len]] of Object.entries(this.fields)) fields[k] = [off + head.length, len]
    return { bytes: Buffer.concat([head, ...this.parts]), fields }
  }
}

/** `B`: the byte type of password and will payload (plans hold plain Uint8Arrays, encoding takes Buffers). */
export interface ConnectFields<B extends Uint8Array = Buffer> {
  protocolId: string
  level: number
  clientId: string
  clean: boolean
  keepalive: number
  username?: string
  password?: B
  will?: { topic: string; payload: B; qos: number; retain: boolean }
  /** Connect-flag bits forced on top of the computed ones (bit 0 is reserved [MQTT-3.1.2-3]). */
  extraFlags?: number
  /** Lay the packet out as MQTT 5 does: empty property lists after the keepalive and before the will. */
  v5?: boolean
}

export function encodeConnect(c: ConnectFields): Encoded {
  let flags = c.clean ? 0x02 : 0
  if (c.will) flags |= 0x04 | ((c.will.qos & 3) << 3) | (c.will.retain ? 0x20 : 0)
  if (c.password !== undefined) flags |= 0x40
  if (c.username !== undefined) flags |= 0x80
  flags |= c.extraFlags ?? 0
  const b = new PacketBuilder().str(c.protocolId, 'protocolId').bytes([c.level & 0xff, flags & 0xff]).u16(c.keepalive)
  if (c.v5) b.bytes([0])
  b.str(c.clientId, 'clientId')
  if (c.will && c.v5) b.bytes([0])
  if (c.will) b.str(c.will.topic, 'willTopic').str(c.will.payload)
  if (c.username !== undefined) b.str(c.username, 'username')
  if (c.password !== undefined) b.str(c.password, 'password')
  return b.finish(0x10)
}

export interface PublishFields {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  dup: boolean
  messageId: number
}

export function encodePublish(p: PublishFields): Encoded {
  const b = new PacketBuilder().str(p.topic, 'topic')
  if (p.qos > 0) b.u16(p.messageId)
  b.bytes(p.payload)
  return b.finish(0x30 | (p.dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 0x01 : 0))
}

export function encodeSubscribe(messageId: number, subscriptions: ReadonlyArray<{ topic: string; qos: number }>): Encoded {
  const b = new PacketBuilder().u16(messageId)
  subscriptions.forEach((s, i) => b.str(s.topic, `filter${i}`).bytes([s.qos & 0xff]))
  // [MQTT-3.8.1-1]: bits 3..0 of a SUBSCRIBE's fixed header are 0010.
  return b.finish(0x82)
}

/** mqtt-packet's own encoding of the other packet types, which need no field offsets. */
export function generate(packet: mqttPacket.Packet): Buffer {
  return mqttPacket.generate(packet)
}

/** A packet of a reserved type (0 or 15 [MQTT-2.2.1]) with the given flags and body. */
export function reserved(type: 0 | 15, flags: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(type << 4) | (flags & 0x0f)]), varint(body.length), body])
}

export function hex(bytes: Uint8Array, max = Infinity): string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (b.length <= max) return b.toString('hex')
  return `${b.subarray(0, max).toString('hex')}... (${b.length} bytes)`
}
