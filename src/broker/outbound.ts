import type { Client } from 'aedes'
import mqttPacket from 'mqtt-packet'
import { GatewayError } from '../errors/catalogue.js'

/**
 * Writing device-bound PUBLISH packets to one connection, beside Aedes' own delivery, with a bound
 * on what waits in the connection's send buffer.
 *
 * Why not `client.publish`: for a clean-session-0 client Aedes keeps every QoS 1 packet in its
 * in-memory persistence and replays it on reconnect, a second, volatile copy of what the durable
 * command queue already owns (it would deliver twice after a reconnect and lose it all on restart).
 * The command queue decides what is delivered and redelivered; this writes the packet and leaves
 * Aedes' outgoing queue empty.
 *
 * The bound: a device that sends requests (twin GET, ...) and never reads the answers would make
 * the gateway buffer them without end. Past `maxBytes` unsent, the broker stops reading from the
 * device (see `drained`) until the buffer drains; a write that would take it past twice that, or a
 * buffer that stays over `maxBytes` for `drainMs`, disconnects the device with E_SLOW_CONSUMER.
 */

export interface OutboundBound {
  maxBytes: number
  drainMs: number
  /** Close the connection with E_SLOW_CONSUMER (count and log it). */
  overflow(client: Client, error: GatewayError): void
}

interface Conn {
  writableLength: number
  once(event: 'drain' | 'close', listener: () => void): unknown
  off(event: 'drain' | 'close', listener: () => void): unknown
}

const connOf = (client: Client): Conn => client.conn as unknown as Conn

export function writePublish(
  client: Client,
  packet: { topic: string; payload: Buffer; qos: 0 | 1; messageId?: number; dup?: boolean },
  bound: OutboundBound,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!client.connected || client.closed) {
      reject(new Error('connection closed'))
      return
    }
    const conn = connOf(client)
    // Topic, identifiers and header are at most a few KiB beside the payload.
    if (conn.writableLength + packet.payload.length > 2 * bound.maxBytes) {
      const error = slowConsumer(`${conn.writableLength} bytes are still unsent to the device`)
      bound.overflow(client, error)
      reject(error)
      return
    }
    // mqtt-packet writes the whole packet synchronously; Node serialises writes on one socket.
    try {
      mqttPacket.writeToStream({ cmd: 'publish', retain: false, dup: packet.dup === true, ...packet }, client.conn as Parameters<typeof mqttPacket.writeToStream>[1])
    } catch (err) {
      reject(err as Error)
      return
    }
    setImmediate(resolve)
  })
}

/**
 * Resolves at once while the send buffer is within `maxBytes`; otherwise when it drains. A buffer
 * that does not drain within `drainMs` disconnects the device and rejects. The broker awaits this
 * before taking each PUBLISH from the device: Aedes reads the next chunk of a socket only once the
 * packets of the last one are handled, so waiting here stops reading from the device.
 */
export function drained(client: Client, bound: OutboundBound): Promise<void> | null {
  const conn = connOf(client)
  if (conn.writableLength <= bound.maxBytes) return null
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      conn.off('drain', done)
      conn.off('close', done)
      resolve()
    }
    const timer = setTimeout(() => {
      conn.off('drain', done)
      conn.off('close', done)
      const error = slowConsumer(`the device read none of ${conn.writableLength} unsent bytes for ${Math.round(bound.drainMs / 1000)} s`)
      bound.overflow(client, error)
      reject(error)
    }, bound.drainMs)
    conn.once('drain', done)
    conn.once('close', done)
  })
}

function slowConsumer(why: string): GatewayError {
  return new GatewayError('E_SLOW_CONSUMER', `the device does not read what is sent to it: ${why}`)
}

/**
 * MQTT topic filter matching [MQTT-4.7.1]: `#` matches the parent level and any number of child
 * levels, `+` exactly one level. Filters and topics starting with `$` only match each other
 * literally at the first level [MQTT-4.7.2-1], which holds here because no filter starts with a wildcard.
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}
