import type { Client } from 'aedes'
import mqttPacket from 'mqtt-packet'

/**
 * Writing device-bound PUBLISH packets to one connection, beside Aedes' own delivery.
 *
 * Why not `client.publish`: for a clean-session-0 client Aedes keeps every QoS 1 packet in its
 * in-memory persistence and replays it on reconnect, a second, volatile copy of what the durable
 * command queue already owns (it would deliver twice after a reconnect and lose it all on restart).
 * The command queue decides what is delivered and redelivered; this writes the packet and leaves
 * Aedes' outgoing queue empty.
 */

/** The Aedes client internals used here (aedes 1.2 lib/client.js). */
interface ClientInternals {
  conn: NodeJS.WritableStream
  connected: boolean
  /** Next packet identifier Aedes would use; shared so that ids never collide with Aedes' own. */
  _nextId: number
}

export function nextMessageId(client: Client): number {
  const c = client as unknown as ClientInternals
  const id = c._nextId
  // Packet identifiers are 1..65535 [MQTT-2.3.1-1].
  c._nextId = id >= 65535 ? 1 : id + 1
  return id
}

export function writePublish(client: Client, packet: { topic: string; payload: Buffer; qos: 0 | 1; messageId?: number; dup?: boolean }): Promise<void> {
  const c = client as unknown as ClientInternals
  return new Promise((resolve, reject) => {
    if (!c.connected || client.closed) {
      reject(new Error('connection closed'))
      return
    }
    // mqtt-packet writes the whole packet synchronously; Node serialises writes on one socket.
    try {
      mqttPacket.writeToStream({ cmd: 'publish', retain: false, dup: packet.dup === true, ...packet }, c.conn as Parameters<typeof mqttPacket.writeToStream>[1])
    } catch (err) {
      reject(err as Error)
      return
    }
    setImmediate(resolve)
  })
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
