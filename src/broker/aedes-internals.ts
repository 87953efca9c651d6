import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { PassThrough } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import { GatewayError } from '../errors/catalogue.js'

/**
 * The one module that touches private members of Aedes and mqtt-packet. Both are pinned to exact
 * versions in package.json (PINNED below must match); `checkInternals()` runs at every broker
 * start and refuses to start (E_INTERNALS_CHANGED) when any member listed in INTERNALS is missing
 * or behaves differently, and test/unit/broker/aedes-internals.test.ts names each one.
 * Everything else in the gateway uses the public surface of Aedes (`handle`, hooks, events,
 * `client.conn`, `client.connected`, `client.clean`, `client.closed`, `client.close()`).
 */

export const PINNED = { aedes: '1.2.0', 'mqtt-packet': '9.0.2' } as const

/** Each internal relied on, and what for. */
export const INTERNALS = [
  { name: 'aedes.clients', why: 'the live Client of a device id (DeviceChannel.send, kick)' },
  { name: 'aedes.persistence', why: 'take PUBACK identifiers on the way in; keep subscriptions out of Aedes (the SessionStore owns them)' },
  { name: 'aedes.publish(packet, client, done)', why: 'the runtime signature wrapped to keep device publishes off the broker-wide fan-out' },
  { name: 'client._parser', why: 'the per-connection MQTT parser whose steps are guarded' },
  { name: 'client._nextId', why: 'packet identifiers of device-bound QoS 1 PUBLISHes, shared with Aedes' },
  { name: 'client._disconnected', why: 'tells a DISCONNECT packet from a dropped socket [MQTT-3.14.4-3]' },
  { name: 'client.connackSent', why: 'whether the CONNACK is written: before it, packets have the tight pre-authentication limit' },
  { name: 'client.broker', why: 'the broker a parser belongs to, from inside a parser step' },
  { name: 'parser.client', why: 'the Client a parser belongs to (set by Aedes)' },
  { name: 'parser.packet', why: 'cmd and announced length of the packet being parsed' },
  { name: 'parser._list', why: 'the parser buffer (bl BufferList): peek at CONNECT bytes, slice strings' },
  { name: 'parser._pos', why: 'read position inside the packet body' },
  { name: 'parser.settings', why: 'the CONNECT kept for the life of the connection (released after authentication)' },
  { name: 'Parser#_parseLength', why: 'refuse a packet by its announced length before its body is buffered' },
  { name: 'Parser#_parsePayload', why: 'answer an unsupported protocol level with CONNACK 1 before the CONNECT is parsed' },
  { name: 'Parser#_parseString', why: 'refuse strings that are not valid UTF-8 or hold U+0000 [MQTT-1.5.3-1, -2]' },
  { name: 'Parser#_emitError', why: 'end parsing with an error the connection is closed for' },
  { name: 'bl/BufferList.js', why: 'the plain buffer list mqtt-packet can use instead of its stream-based one' },
] as const

// ---- parser ----

interface BufferListLike {
  length: number
  append(buf: Buffer): unknown
  consume(bytes: number): unknown
  readUInt8(offset: number): number
  readUInt16BE(offset: number): number
  slice(start?: number, end?: number): Buffer
  toString(encoding: 'utf8', start?: number, end?: number): string
}

interface ParserInternals {
  packet: { cmd?: string; length: number }
  settings: { protocolVersion?: number; bridgeMode?: boolean }
  client?: Client
  _list: BufferListLike
  _pos: number
  _parseLength(): boolean
  _parsePayload(): boolean
  _parseString(maybeBuffer?: boolean): string | null
  _emitError(err: Error): void
}

const requireHere = createRequire(import.meta.url)
/** The mqtt-packet Aedes itself loads, and the bl that mqtt-packet loads. */
const requireFromAedes = createRequire(requireHere.resolve('aedes'))
const mqttPacketEntry = requireFromAedes.resolve('mqtt-packet')
const requireFromMqttPacket = createRequire(mqttPacketEntry)
const ParserClass = requireFromMqttPacket('./parser.js') as { prototype: ParserInternals }
/** The plain BufferList mqtt-packet's parser can buffer in (it uses append, consume, read*, slice). */
const BufferList = requireFromMqttPacket('bl/BufferList.js') as new () => BufferListLike
const parseLength = ParserClass.prototype._parseLength
const parsePayload = ParserClass.prototype._parsePayload
const parseString = ParserClass.prototype._parseString

/**
 * What a connection's parser asks before going on (broker/packet-guard.ts holds the policy).
 * Returning false stops the parser: the packet is never emitted to Aedes.
 */
export interface ParserPolicy {
  /** The fixed header is read: `length` bytes follow. */
  lengthRead(client: Client, cmd: string | undefined, length: number): boolean
  /**
   * A CONNECT's body is about to be parsed; `level` is its protocol level byte, 'wait' while fewer
   * bytes than that are buffered (return false: asked again with more), 'unknown' when the protocol
   * name is not MQTT's (mqtt-packet refuses it).
   */
  connectBody(client: Client, level: number | 'wait' | 'unknown', length: number): boolean
  /** A string was read; `bytes()` gives its encoded form. */
  stringRead(client: Client, cmd: string | undefined, text: string, bytes: () => Buffer): boolean
}

const policies = new WeakMap<Aedes, ParserPolicy>()

export function setParserPolicy(aedes: Aedes, policy: ParserPolicy): void {
  policies.set(aedes, policy)
}

function policyOf(parser: ParserInternals): { policy: ParserPolicy; client: Client } | undefined {
  const client = parser.client
  const policy = client ? policies.get((client as unknown as ClientInternals).broker) : undefined
  return policy && client ? { policy, client } : undefined
}

/** Runs as a parser's `_parseLength` (`this` is the parser). */
function guardedParseLength(this: ParserInternals): boolean {
  const p = policyOf(this)
  if (!p || !parseLength.call(this)) return false
  return p.policy.lengthRead(p.client, this.packet.cmd, this.packet.length)
}

/** Runs as a parser's `_parsePayload`. */
function guardedParsePayload(this: ParserInternals): boolean {
  if (this.packet.cmd === 'connect') {
    const p = policyOf(this)
    if (!p || !p.policy.connectBody(p.client, protocolLevel(this._list), this.packet.length)) return false
  }
  return parsePayload.call(this)
}

/** Runs as a parser's `_parseString`; `_pos` is at the string's length prefix before the call. */
function guardedParseString(this: ParserInternals, maybeBuffer?: boolean): string | null {
  const start = this._pos
  const text = parseString.call(this, maybeBuffer)
  if (text === null) return text
  const p = policyOf(this)
  if (p && !p.policy.stringRead(p.client, this.packet.cmd, text, () => this._list.slice(start + 2, this._pos))) {
    // Stop the parse loop: the packet is not emitted; the policy has closed the connection.
    ;(this as unknown as { error: Error }).error = new Error('string refused')
  }
  return text
}

/** The protocol level of a CONNECT body in `list` (name length, name, level: MQTT 3.1.1 section 3.1.2). */
function protocolLevel(list: BufferListLike): number | 'wait' | 'unknown' {
  if (list.length < 2) return 'wait'
  const nameLength = list.readUInt16BE(0)
  if (nameLength !== 4 && nameLength !== 6) return 'unknown'
  if (list.length < 2 + nameLength + 1) return 'wait'
  const name = list.toString('utf8', 2, 2 + nameLength)
  if (name !== 'MQTT' && name !== 'MQIsdp') return 'unknown'
  return list.readUInt8(2 + nameLength)
}

/**
 * Put a connection's parser under its broker's ParserPolicy, and let it buffer in a plain
 * BufferList instead of its default BufferListStream (a Duplex that is never piped but costs its
 * two stream states per connection). Call right after aedes.handle(), before the first read.
 * Per-parser property writes of shared functions: no closure per connection.
 */
export function guardParser(client: Client): void {
  const parser = (client as unknown as { _parser: ParserInternals })._parser
  parser._parseLength = guardedParseLength
  parser._parsePayload = guardedParsePayload
  parser._parseString = guardedParseString
  if (parser._list.length === 0) parser._list = new BufferList()
}

/** End a connection's parsing with an error; Aedes closes the connection for it. */
export function failParser(client: Client, error: Error): void {
  ;(client as unknown as { _parser: ParserInternals })._parser._emitError(error)
}

/** What the parser reads of its settings after CONNECT, one frozen object per protocol version. */
const settingsByVersion = new Map<number, Readonly<{ protocolVersion: number }>>()

/**
 * Let go of the CONNECT packet once it is authenticated: the parser keeps it as its `settings` for
 * the life of the connection but reads only `protocolVersion` (and `bridgeMode`) from it, and its
 * password is a slice of the socket's read buffer, which it kept alive as well.
 */
export function releaseConnectPacket(client: Client): void {
  const parser = (client as unknown as { _parser: ParserInternals })._parser
  const version = parser.settings.protocolVersion
  // A bridge's CONNECT keeps its settings: `bridgeMode` changes how SUBSCRIBE is parsed.
  if (typeof version !== 'number' || parser.settings.bridgeMode) return
  let settings = settingsByVersion.get(version)
  if (!settings) settingsByVersion.set(version, (settings = Object.freeze({ protocolVersion: version })))
  parser.settings = settings
}

// ---- client ----

interface ClientInternals {
  _nextId: number
  _disconnected?: boolean
  connackSent: boolean
  broker: Aedes
}

const internalsOf = (client: Client): ClientInternals => client as unknown as ClientInternals

/** Next packet identifier Aedes would use; shared so that ids never collide with Aedes' own. */
export function nextMessageId(client: Client): number {
  const c = internalsOf(client)
  const id = c._nextId
  // Packet identifiers are 1..65535 [MQTT-2.3.1-1].
  c._nextId = id >= 65535 ? 1 : id + 1
  return id
}

/** True when the client ended with a DISCONNECT packet [MQTT-3.14.4-3]. */
export function sentDisconnect(client: Client): boolean {
  return internalsOf(client)._disconnected === true
}

/** True once the CONNACK is written (aedes connect.js doConnack). */
export function connackSent(client: Client): boolean {
  return internalsOf(client).connackSent === true
}

// ---- broker ----

export function brokerClients(aedes: Aedes): Readonly<Record<string, Client>> {
  return (aedes as unknown as { clients: Record<string, Client> }).clients
}

/** Aedes' in-memory persistence (aedes-persistence), as far as it is used here. */
export interface PersistenceInternals {
  outgoingClearMessageId(client: Client, packet: { messageId?: number }): Promise<unknown>
  addSubscriptions(client: Client, subs: unknown[]): Promise<void>
  removeSubscriptions(client: Client, subs: string[]): Promise<void>
  subscriptionsByClient(client: { id: string }): Promise<unknown[]>
}

export function persistenceOf(aedes: Aedes): PersistenceInternals {
  return (aedes as unknown as { persistence: PersistenceInternals }).persistence
}

type Done = (error?: Error) => void
export type PublishFn = (packet: object, client: unknown, done?: Done) => void

/** Replace `aedes.publish` (runtime signature `publish(packet, client?, done?)`; the typings show two). */
export function wrapPublish(aedes: Aedes, wrap: (original: PublishFn) => PublishFn): void {
  const original = aedes.publish.bind(aedes) as unknown as PublishFn
  ;(aedes as unknown as { publish: PublishFn }).publish = wrap(original)
}

// ---- boot check ----

function fail(what: string): never {
  throw new GatewayError(
    'E_INTERNALS_CHANGED',
    `${what}: streamgate relies on internals of aedes ${PINNED.aedes} and mqtt-packet ${PINNED['mqtt-packet']} (src/broker/aedes-internals.ts); install exactly those versions (npm ci)`,
  )
}

/** The version in the package.json above a package's resolved entry (aedes exports no ./package.json). */
function installedVersion(name: 'aedes' | 'mqtt-packet'): string {
  let dir = dirname(name === 'aedes' ? requireHere.resolve('aedes') : mqttPacketEntry)
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === name && pkg.version) return pkg.version
    } catch {
      // no package.json at this level
    }
  }
  return 'unknown'
}

/**
 * Check every internal in INTERNALS on a live broker (after Aedes.createBroker): versions, the
 * parser's steps, and the members of a client made on a throw-away stream and closed at once.
 */
export function checkInternals(aedes: Aedes): void {
  for (const name of ['aedes', 'mqtt-packet'] as const) {
    const version = installedVersion(name)
    if (version !== PINNED[name]) fail(`${name} ${version} is installed`)
  }
  for (const step of ['_parseLength', '_parsePayload', '_parseString', '_emitError'] as const) {
    if (typeof ParserClass.prototype[step] !== 'function') fail(`mqtt-packet's Parser has no ${step}`)
  }
  const list = new BufferList()
  for (const m of ['append', 'consume', 'readUInt8', 'readUInt16BE', 'slice', 'toString'] as const) {
    if (typeof list[m] !== 'function') fail(`bl's BufferList has no ${m}()`)
  }
  const broker = aedes as unknown as Record<string, unknown>
  if (typeof broker.clients !== 'object' || broker.clients === null) fail('aedes has no clients map')
  const persistence = broker.persistence as Record<string, unknown> | undefined
  for (const m of ['outgoingClearMessageId', 'addSubscriptions', 'removeSubscriptions', 'subscriptionsByClient'] as const) {
    if (typeof persistence?.[m] !== 'function') fail(`aedes' persistence has no ${m}()`)
  }
  if (aedes.publish.length !== 3) fail('aedes.publish no longer takes (packet, client, done)')
  const client = aedes.handle(new PassThrough() as unknown as Parameters<Aedes['handle']>[0])
  try {
    const c = client as unknown as Record<string, unknown>
    const parser = c._parser as Record<string, unknown> | undefined
    if (!parser || parser.client !== client) fail('an aedes client has no _parser pointing back at it')
    if (typeof parser.packet !== 'object' || typeof parser.settings !== 'object') fail('the parser has no packet or settings')
    if (typeof (parser._list as { consume?: unknown } | undefined)?.consume !== 'function') fail('the parser has no _list buffer')
    if (typeof parser._pos !== 'number' && parser._pos !== undefined) fail('the parser position _pos is not a number')
    if (typeof c._nextId !== 'number' || c._nextId < 1 || c._nextId > 65535) fail('an aedes client has no _nextId packet identifier')
    if (c._disconnected !== false) fail('an aedes client has no _disconnected flag')
    if (c.connackSent !== false) fail('an aedes client has no connackSent flag')
    if (c.broker !== aedes) fail('an aedes client has no broker reference')
  } finally {
    client.close()
  }
}
