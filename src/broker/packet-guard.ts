import { isUtf8 } from 'node:buffer'
import type { Aedes, Client } from 'aedes'
import { GatewayError, type ErrorCode } from '../errors/catalogue.js'
import { BufferList, brokerOf, connackSent, parserOf, parserStep, type ParserInternals } from './aedes-internals.js'

/**
 * Guards on each connection's MQTT parser (the steps come from aedes-internals.ts, the one module
 * that touches mqtt-packet's private members):
 *
 * 1. Every packet is refused as soon as its fixed header announces more bytes than its type may
 *    have, before the body is buffered (the parser has no limit of its own and would hold up to
 *    256 MiB per connection). Before the CONNACK is written every packet, CONNECT included, has
 *    the tight `limits.maxConnectPacketBytes`: nobody has authenticated yet. After it, PUBLISH may
 *    carry `limits.maxPayloadBytes` (checked exactly again by the ingest), SUBSCRIBE and
 *    UNSUBSCRIBE `limits.maxSubscribePacketBytes`, and the other types their fixed MQTT 3.1.1 sizes.
 * 2. A CONNECT whose protocol level is not 3 (MQTT 3.1) or 4 (MQTT 3.1.1) gets CONNACK 1 and the
 *    connection is closed [MQTT-3.1.2-2], decided from its first bytes, whatever the rest holds.
 * 3. A string (topic, filter, client id, user name) that is not well-formed UTF-8 or holds U+0000
 *    closes the connection [MQTT-1.5.3-1, MQTT-1.5.3-2]; mqtt-packet would replace the bad bytes.
 * 4. Unparsed bytes wait in a plain BufferList instead of the parser's default BufferListStream,
 *    a Duplex that is never piped but costs its two stream states per connection.
 * 5. After authentication the CONNECT packet is let go of: the parser keeps it as `settings` for
 *    the life of the connection but reads only `protocolVersion` (and `bridgeMode`) from it, and
 *    its password is a slice of the socket's read buffer.
 *
 * Each guard is a per-parser property write of a shared function: no closure per connection
 * (memory per connection is a headline figure, see docs/performance.md).
 */

export interface PacketLimits {
  /** Largest PUBLISH payload; the packet may add its topic and packet identifier. */
  maxPayloadBytes: number
  maxConnectPacketBytes: number
  maxSubscribePacketBytes: number
}

interface Guard {
  publish: number
  connect: number
  subscribe: number
  /** A refusal: count, log and close (the guard has already stopped the parser). */
  onRefused: (client: Client, error: GatewayError) => void
}

/** Topic length prefix, the longest topic, packet identifier. */
const TOPIC_AND_ID_OVERHEAD = 2 + 65535 + 2
/**
 * MQTT 3.1.1 fixed sizes: PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK carry a 2-byte packet
 * identifier, PINGREQ, PINGRESP and DISCONNECT nothing [MQTT-3.4 to 3.14]; with headroom for the
 * MQTT 5 reason codes a client might send before being refused.
 */
const CONTROL_PACKET_BYTES = 64
/** CONNACK 1, unacceptable protocol version [MQTT-3.2.2-3 table 3.1]. */
const CONNACK_UNACCEPTABLE_VERSION = Buffer.from([0x20, 0x02, 0x00, 0x01])
/** Protocol levels Aedes speaks: 3 (MQTT 3.1, "MQIsdp") and 4 (MQTT 3.1.1). */
const SUPPORTED_LEVELS = new Set([3, 4])

const guards = new WeakMap<Aedes, Guard>()
const parseLength = parserStep('_parseLength')
const parsePayload = parserStep('_parsePayload')
const parseString = parserStep('_parseString')

export function setPacketGuard(broker: Aedes, limits: PacketLimits, onRefused: (client: Client, error: GatewayError) => void): void {
  guards.set(broker, {
    publish: limits.maxPayloadBytes + TOPIC_AND_ID_OVERHEAD,
    connect: limits.maxConnectPacketBytes,
    subscribe: limits.maxSubscribePacketBytes,
    onRefused,
  })
}

/** Call right after aedes.handle(), before the first read: nothing is buffered yet. */
export function guardPacketSize(client: Client): void {
  const parser = parserOf(client)
  parser._parseLength = guardedParseLength
  parser._parsePayload = guardedParsePayload
  parser._parseString = guardedParseString
  if (parser._list.length === 0) parser._list = new BufferList()
}

function limitFor(guard: Guard, cmd: string | undefined, client: Client): number {
  // Before CONNACK nobody has authenticated: one tight limit for whatever arrives.
  if (!connackSent(client)) return guard.connect
  switch (cmd) {
    case 'publish':
      return guard.publish
    case 'subscribe':
    case 'unsubscribe':
      return guard.subscribe
    case 'connect':
      return guard.connect
    default:
      return CONTROL_PACKET_BYTES
  }
}

/** The guard of a live parser, or undefined once its connection is being closed. */
function activeGuard(parser: ParserInternals): { guard: Guard; client: Client } | undefined {
  const client = parser.client
  if (!client) return undefined
  const conn = client.conn as unknown as { destroyed?: boolean; writableEnded?: boolean }
  if (conn.destroyed || conn.writableEnded) return undefined
  const guard = guards.get(brokerOf(client))
  return guard ? { guard, client } : undefined
}

function refuse(parser: ParserInternals, guard: Guard, client: Client, code: ErrorCode, message: string): false {
  const error = new GatewayError(code, message)
  // The parser stops here: the packet is never emitted, and later reads see the closed connection.
  parser._emitError(error)
  guard.onRefused(client, error)
  client.conn.destroy()
  return false
}

/** Runs as the parser's `_parseLength` (`this` is the parser). */
function guardedParseLength(this: ParserInternals): boolean {
  const active = activeGuard(this)
  if (!active) return false
  const complete = parseLength.call(this)
  if (!complete) return false
  const { guard, client } = active
  const { cmd, length } = this.packet
  // A CONNECT is judged in the payload step, once its protocol level can be read (point 2 above).
  if (cmd === 'connect' && !connackSent(client)) return true
  const limit = limitFor(guard, cmd, client)
  if (length <= limit) return true
  if (cmd === 'publish' && connackSent(client)) {
    return refuse(this, guard, client, 'E_PAYLOAD_TOO_LARGE', `a PUBLISH of ${length} bytes exceeds the maximum payload of ${guard.publish - TOPIC_AND_ID_OVERHEAD} bytes`)
  }
  return refuse(this, guard, client, 'E_PACKET_TOO_LARGE', `a ${cmd ?? 'packet'} of ${length} bytes exceeds the limit of ${limit} bytes${connackSent(client) ? '' : ' before CONNACK'}`)
}

/** Runs as the parser's `_parsePayload`: the first CONNECT is judged by its protocol level, then its size. */
function guardedParsePayload(this: ParserInternals): boolean {
  if (this.packet.cmd === 'connect') {
    const active = activeGuard(this)
    if (!active) return false
    const { guard, client } = active
    if (!connackSent(client) && !client.connecting && !client.connected) {
      const level = protocolLevel(this)
      if (level === 'wait') return false
      if (level !== 'unknown' && !SUPPORTED_LEVELS.has(level & 0x7f)) return refuseVersion(guard, client, level)
      if (this.packet.length > guard.connect) {
        return refuse(this, guard, client, 'E_PACKET_TOO_LARGE', `a CONNECT of ${this.packet.length} bytes exceeds limits.maxConnectPacketBytes (${guard.connect})`)
      }
    }
  }
  return parsePayload.call(this)
}

/**
 * The protocol level byte of the CONNECT being parsed (after the protocol name), 'wait' while
 * fewer bytes than that are buffered, 'unknown' when the name is not MQTT's (mqtt-packet refuses it).
 */
function protocolLevel(parser: ParserInternals): number | 'wait' | 'unknown' {
  const list = parser._list
  if (list.length < 2) return 'wait'
  const nameLength = list.readUInt16BE(0)
  if (nameLength !== 4 && nameLength !== 6) return 'unknown'
  if (list.length < 2 + nameLength + 1) return 'wait'
  const name = list.toString('utf8', 2, 2 + nameLength)
  if (name !== 'MQTT' && name !== 'MQIsdp') return 'unknown'
  return list.readUInt8(2 + nameLength)
}

/**
 * [MQTT-3.1.2-2]: answer CONNACK 1, then close. Not through the parser's error (Aedes would
 * destroy the socket before the CONNACK is out): the ended socket stops every later parser step.
 */
function refuseVersion(guard: Guard, client: Client, level: number): false {
  guard.onRefused(client, new GatewayError('E_PROTOCOL_VERSION', `protocol level ${level} is not supported (MQTT 3.1 and 3.1.1 are)`))
  const conn = client.conn as unknown as NodeJS.WritableStream & { destroy(): void }
  conn.end(CONNACK_UNACCEPTABLE_VERSION)
  setTimeout(() => conn.destroy(), 1000).unref()
  return false
}

/** Runs as the parser's `_parseString`: the result is checked for well-formed UTF-8 without U+0000. */
function guardedParseString(this: ParserInternals, maybeBuffer?: boolean): string | null {
  const start = this._pos
  const text = parseString.call(this, maybeBuffer)
  if (text === null) return text
  // Decoding replaced malformed bytes with U+FFFD; only then are the bytes themselves looked at.
  const malformed = text.includes('\uFFFD') && !isUtf8(this._list.slice(start + 2, this._pos))
  if (malformed || text.includes('\u0000')) {
    const active = activeGuard(this)
    const what = malformed ? 'is not well-formed UTF-8 [MQTT-1.5.3-1]' : 'holds U+0000 [MQTT-1.5.3-2]'
    if (active) refuse(this, active.guard, active.client, 'E_PROTOCOL_ERROR', `a string in a ${this.packet.cmd ?? 'packet'} ${what}`)
    else this._emitError(new GatewayError('E_PROTOCOL_ERROR', `a string ${what}`))
  }
  return text
}

/** What the parser reads of its settings after CONNECT, one frozen object per protocol version. */
const settingsByVersion = new Map<number, Readonly<{ protocolVersion: number }>>()

/** Call once the CONNECT is authenticated (Aedes has read the packet by then). */
export function releaseConnectPacket(client: Client): void {
  const parser = parserOf(client)
  const version = parser.settings.protocolVersion
  // A bridge's CONNECT keeps its settings: `bridgeMode` changes how SUBSCRIBE is parsed.
  if (typeof version !== 'number' || parser.settings.bridgeMode) return
  let settings = settingsByVersion.get(version)
  if (!settings) settingsByVersion.set(version, (settings = Object.freeze({ protocolVersion: version })))
  parser.settings = settings
}
