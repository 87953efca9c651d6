import { createRequire } from 'node:module'
import type { Aedes, Client } from 'aedes'

/**
 * Three changes to each connection's MQTT parser (mqtt-packet 9 internals, pinned with aedes 1.2.0;
 * test/integration/limits.test.ts fails if they change):
 *
 * 1. Refuse oversize PUBLISH packets as soon as their fixed header is parsed, before the body is
 *    buffered: the parser has no size limit and would otherwise hold a packet of any announced
 *    length (up to 256 MiB) in memory. The exact payload check happens again in the ingest
 *    pipeline; this guard only bounds memory per connection.
 * 2. Buffer unparsed bytes in a plain BufferList instead of the parser's default BufferListStream,
 *    a Duplex stream that is never piped (only append, read and consume are used) but costs
 *    its two stream states per connection.
 * 3. After authentication, let go of the CONNECT packet: the parser keeps it as its `settings` for
 *    the life of the connection but reads only `protocolVersion` (and `bridgeMode`) from it. Its
 *    password is a slice of the socket's read buffer, so it kept that buffer alive as well.
 *
 * All three are per-parser property writes of shared values: no closure per connection (memory per
 * connection is a headline figure, see docs/performance.md).
 */
const TOPIC_AND_ID_OVERHEAD = 2 + 65535 + 2

interface ParserInternals {
  packet: { cmd?: string; length: number }
  settings: { protocolVersion?: number; bridgeMode?: boolean }
  client?: Client
  _list: unknown
  _parseLength: () => boolean
  emit(event: 'error', err: Error): boolean
}

interface Guard {
  limit: number
  onOversize: (client: Client) => void
}

/** The bl package mqtt-packet itself loads, so its BufferList has the methods the parser calls. */
const fromMqttPacket = createRequire(createRequire(import.meta.url).resolve('mqtt-packet'))
const BufferList = fromMqttPacket('bl/BufferList.js') as new () => unknown

/** One guard per broker, found through the client Aedes sets on every parser (`parser.client`). */
const guards = new WeakMap<Aedes, Guard>()

export function setPacketGuard(broker: Aedes, maxPayloadBytes: number, onOversize: (client: Client) => void): void {
  guards.set(broker, { limit: maxPayloadBytes + TOPIC_AND_ID_OVERHEAD, onOversize })
}

/** Runs as the parser's own `_parseLength` (`this` is the parser); the class's step does the parsing. */
function guardedParseLength(this: ParserInternals): boolean {
  const complete = (Object.getPrototypeOf(this) as ParserInternals)._parseLength.call(this)
  const client = this.client
  const guard = client ? guards.get((client as unknown as { broker: Aedes }).broker) : undefined
  if (complete && guard && client && this.packet.length > guard.limit && this.packet.cmd === 'publish') {
    guard.onOversize(client)
    client.conn.destroy()
    return false
  }
  return complete
}

export function guardPacketSize(client: Client): void {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser
  const original = parser ? Object.getPrototypeOf(parser)._parseLength : undefined
  if (!parser || typeof original !== 'function' || parser.client !== client || typeof (parser._list as { consume?: unknown }).consume !== 'function') {
    throw new Error('aedes/mqtt-packet internals changed: cannot guard packet size')
  }
  parser._parseLength = guardedParseLength
  // Called right after aedes.handle(), before the first read: nothing is buffered yet.
  if ((parser._list as { length: number }).length === 0) parser._list = new BufferList()
}

/** What the parser reads of its settings after CONNECT, one frozen object per protocol version. */
const settingsByVersion = new Map<number, Readonly<{ protocolVersion: number }>>()

/** Call once the CONNECT is authenticated (Aedes has read the packet by then). */
export function releaseConnectPacket(client: Client): void {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser
  const version = parser?.settings.protocolVersion
  // A bridge's CONNECT keeps its settings: `bridgeMode` changes how SUBSCRIBE is parsed.
  if (!parser || typeof version !== 'number' || parser.settings.bridgeMode) return
  let settings = settingsByVersion.get(version)
  if (!settings) settingsByVersion.set(version, (settings = Object.freeze({ protocolVersion: version })))
  parser.settings = settings
}
