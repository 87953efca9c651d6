import { isUtf8 } from 'node:buffer'
import type { Aedes, Client } from 'aedes'
import { GatewayError, type ErrorCode } from '../errors/catalogue.js'
import { connackSent, failParser, guardParser, setParserPolicy } from './aedes-internals.js'

/**
 * What each connection's MQTT parser may take (the parser hooks themselves are in
 * aedes-internals.ts, the one module that touches mqtt-packet's private members):
 *
 * 1. Every packet is refused as soon as its fixed header announces more bytes than its type may
 *    have, before the body is buffered (the parser has no limit of its own and would hold up to
 *    256 MiB per connection). Until the connection has authenticated every packet, CONNECT
 *    included, has the tight `limits.maxConnectPacketBytes`. After that, PUBLISH may
 *    carry `limits.maxPayloadBytes` (checked exactly again by the ingest), SUBSCRIBE and
 *    UNSUBSCRIBE `limits.maxSubscribePacketBytes`, and the other types their fixed MQTT 3.1.1 sizes.
 * 2. A CONNECT whose protocol level is not 3 (MQTT 3.1) or 4 (MQTT 3.1.1) gets CONNACK 1 and the
 *    connection is closed [MQTT-3.1.2-2], decided from its first bytes, whatever the rest holds
 *    (an oversize one too).
 * 3. A string (topic, filter, client id, user name) that is not well-formed UTF-8 or holds U+0000
 *    closes the connection [MQTT-1.5.3-1, MQTT-1.5.3-2]; mqtt-packet would replace the bad bytes.
 */

export interface PacketLimits {
  /** Largest PUBLISH payload; the packet may add its topic and packet identifier. */
  maxPayloadBytes: number
  maxConnectPacketBytes: number
  maxSubscribePacketBytes: number
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
/** Protocol levels Aedes speaks: 3 (MQTT 3.1, "MQIsdp") and 4 (MQTT 3.1.1); bit 7 marks a bridge. */
const SUPPORTED_LEVELS = new Set([3, 4])

/**
 * Install the policy on the broker; `onRefused` counts and logs (the connection is being closed).
 * Call `guardPacketSize(client)` on every new connection.
 */
export function setPacketGuard(broker: Aedes, limits: PacketLimits, onRefused: (client: Client, error: GatewayError) => void, isAuthenticated: (client: Client) => boolean): void {
  const publishLimit = limits.maxPayloadBytes + TOPIC_AND_ID_OVERHEAD

  const refuse = (client: Client, code: ErrorCode, message: string): false => {
    const error = new GatewayError(code, message)
    onRefused(client, error)
    failParser(client, error)
    client.conn.destroy()
    return false
  }

  setParserPolicy(broker, {
    lengthRead(client, cmd, length) {
      if (stopped(client)) return false
      // Authenticated, not merely answered: a refused CONNECT gets its CONNACK too.
      const authenticated = isAuthenticated(client)
      // A CONNECT is judged in connectBody, once its protocol level can be read (point 2).
      if (cmd === 'connect' && !authenticated) return true
      const limit = !authenticated ? limits.maxConnectPacketBytes : cmd === 'publish' ? publishLimit : cmd === 'subscribe' || cmd === 'unsubscribe' ? limits.maxSubscribePacketBytes : cmd === 'connect' ? limits.maxConnectPacketBytes : CONTROL_PACKET_BYTES
      if (length <= limit) return true
      if (cmd === 'publish' && authenticated) {
        return refuse(client, 'E_PAYLOAD_TOO_LARGE', `a PUBLISH of ${length} bytes exceeds the maximum payload of ${limits.maxPayloadBytes} bytes`)
      }
      return refuse(client, 'E_PACKET_TOO_LARGE', `a ${cmd ?? 'packet'} of ${length} bytes exceeds the limit of ${limit} bytes${authenticated ? '' : ' before authentication'}`)
    },

    connectBody(client, level, length) {
      if (stopped(client)) return false
      // Only the first CONNECT: a second one is a protocol violation Aedes closes for [MQTT-3.1.0-2].
      if (connackSent(client) || client.connecting || client.connected) return true
      if (level === 'wait') return false
      if (level !== 'unknown' && !SUPPORTED_LEVELS.has(level & 0x7f)) return refuseVersion(client, level, onRefused)
      if (length > limits.maxConnectPacketBytes) {
        return refuse(client, 'E_PACKET_TOO_LARGE', `a CONNECT of ${length} bytes exceeds limits.maxConnectPacketBytes (${limits.maxConnectPacketBytes})`)
      }
      return true
    },

    stringRead(client, cmd, text, bytes) {
      // Decoding replaced malformed bytes with U+FFFD; only then are the bytes themselves looked at.
      const malformed = text.includes('\uFFFD') && !isUtf8(bytes())
      if (!malformed && !text.includes('\u0000')) return true
      if (stopped(client)) return false
      const what = malformed ? 'is not well-formed UTF-8 [MQTT-1.5.3-1]' : 'holds U+0000 [MQTT-1.5.3-2]'
      return refuse(client, 'E_PROTOCOL_ERROR', `a string in a ${cmd ?? 'packet'} ${what}`)
    },
  })
}

export function guardPacketSize(client: Client): void {
  guardParser(client)
}

/** The connection is being closed (a refusal, CONNACK 1 written): parse nothing more of it. */
function stopped(client: Client): boolean {
  const conn = client.conn as unknown as { destroyed?: boolean; writableEnded?: boolean }
  return conn.destroyed === true || conn.writableEnded === true
}

/**
 * [MQTT-3.1.2-2]: answer CONNACK 1, then close. Not through the parser's error (Aedes would
 * destroy the socket before the CONNACK is out): the ended socket stops every later parser step.
 */
function refuseVersion(client: Client, level: number, onRefused: (client: Client, error: GatewayError) => void): false {
  onRefused(client, new GatewayError('E_PROTOCOL_VERSION', `protocol level ${level} is not supported (MQTT 3.1 and 3.1.1 are)`))
  const conn = client.conn as unknown as NodeJS.WritableStream & { destroy(): void }
  conn.end(CONNACK_UNACCEPTABLE_VERSION)
  setTimeout(() => conn.destroy(), 1000).unref()
  return false
}
