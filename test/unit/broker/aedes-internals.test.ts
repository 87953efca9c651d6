import { readFileSync } from 'node:fs'
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Aedes, type Client } from 'aedes'
import mqttPacket from 'mqtt-packet'
import { checkInternals, connackSent, guardParser, INTERNALS, nextMessageId, PINNED, releaseConnectPacket, sentDisconnect, setParserPolicy, type ParserPolicy } from '../../../src/broker/aedes-internals.js'

/**
 * One test per private member of Aedes and mqtt-packet the gateway relies on (INTERNALS in
 * src/broker/aedes-internals.ts), each on a real broker or parser of the pinned versions. A new
 * version that moves any of them fails here, and the gateway's boot check refuses to start.
 */

type Internal = (typeof INTERNALS)[number]['name']
const tested = new Set<Internal>()
function internal(name: Internal, fn: () => void | Promise<void>): void {
  tested.add(name)
  it(name, fn)
}

/** Aedes reads its stream on 'readable', a tick after the write. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

const connectBytes = (clientId = 'dev'): Buffer => mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: false, keepalive: 30, username: clientId, password: Buffer.from('pw') })

describe('Aedes and mqtt-packet internals (pinned versions)', () => {
  let aedes: Aedes
  const clients: Client[] = []
  const newClient = (): { client: Client; stream: PassThrough } => {
    const stream = new PassThrough()
    const client = aedes.handle(stream as unknown as Parameters<Aedes['handle']>[0])
    clients.push(client)
    return { client, stream }
  }
  const internals = (c: Client): Record<string, unknown> => c as unknown as Record<string, unknown>

  beforeAll(async () => {
    aedes = await Aedes.createBroker({ authenticate: (_c, _u, _p, done) => done(null, true) })
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    await new Promise<void>((r) => aedes.close(() => r()))
  })

  it('package.json pins exactly the versions the internals were read from', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
    expect(pkg.dependencies.aedes).toBe(PINNED.aedes)
    expect(pkg.dependencies['mqtt-packet']).toBe(PINNED['mqtt-packet'])
  })

  it('the boot check passes on this broker and fails with E_INTERNALS_CHANGED when an internal is gone', async () => {
    expect(() => checkInternals(aedes)).not.toThrow()
    const other = await Aedes.createBroker({})
    const persistence = (other as unknown as { persistence: Record<string, unknown> }).persistence
    delete persistence.subscriptionsByClient
    persistence.subscriptionsByClient = undefined
    expect(() => checkInternals(other)).toThrow(expect.objectContaining({ code: 'E_INTERNALS_CHANGED', message: expect.stringContaining('subscriptionsByClient') }))
    await new Promise<void>((r) => other.close(() => r()))
  })

  internal('aedes.clients', async () => {
    const { client, stream } = newClient()
    stream.write(connectBytes('listed'))
    await new Promise<void>((r) => aedes.once('client', () => r()))
    expect((aedes as unknown as { clients: Record<string, Client> }).clients.listed).toBe(client)
  })

  internal('aedes.persistence', () => {
    const p = (aedes as unknown as { persistence: Record<string, unknown> }).persistence
    for (const m of ['outgoingClearMessageId', 'addSubscriptions', 'removeSubscriptions', 'subscriptionsByClient']) expect(typeof p[m], m).toBe('function')
  })

  internal('aedes.publish(packet, client, done)', async () => {
    expect(aedes.publish.length).toBe(3)
    // The third argument is the callback at runtime.
    await new Promise<void>((resolve) => (aedes.publish as unknown as (p: object, c: null, done: () => void) => void)({ cmd: 'publish', topic: 'x', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false }, null, resolve))
  })

  internal('client._parser', () => {
    const { client } = newClient()
    const parser = internals(client)._parser as { client: Client; parse: unknown }
    expect(parser.client).toBe(client)
    expect(typeof parser.parse).toBe('function')
  })

  internal('client._nextId', () => {
    const { client } = newClient()
    const first = internals(client)._nextId as number
    expect(first).toBeGreaterThanOrEqual(1)
    expect(first).toBeLessThanOrEqual(65535)
    expect(nextMessageId(client)).toBe(first)
    expect(internals(client)._nextId).toBe(first >= 65535 ? 1 : first + 1)
  })

  internal('client._disconnected', async () => {
    const { client, stream } = newClient()
    expect(sentDisconnect(client)).toBe(false)
    stream.write(connectBytes('leaver'))
    await new Promise<void>((r) => aedes.once('client', () => r()))
    stream.write(mqttPacket.generate({ cmd: 'disconnect' }))
    await new Promise<void>((r) => aedes.once('clientDisconnect', () => r()))
    expect(sentDisconnect(client)).toBe(true)
  })

  internal('client.connackSent', async () => {
    const { client, stream } = newClient()
    expect(connackSent(client)).toBe(false)
    stream.write(connectBytes('acked'))
    await new Promise<void>((r) => aedes.once('connackSent', () => r()))
    expect(connackSent(client)).toBe(true)
  })

  internal('client.broker', () => {
    expect(internals(newClient().client).broker).toBe(aedes)
  })

  // The parser members are exercised through guardParser and a ParserPolicy on a real client:
  // the policy sees what each guarded step reads.
  const seen: Array<{ step: string; value: unknown }> = []
  const policy: ParserPolicy = {
    lengthRead: (_c, cmd, length) => (seen.push({ step: 'length', value: [cmd, length] }), true),
    connectBody: (_c, level, length) => (seen.push({ step: 'connect', value: [level, length] }), level !== 'wait'),
    stringRead: (_c, cmd, text, bytes) => (seen.push({ step: 'string', value: [cmd, text, bytes().toString('hex')] }), true),
  }
  const guarded = (): { client: Client; stream: PassThrough } => {
    setParserPolicy(aedes, policy)
    const c = newClient()
    guardParser(c.client)
    seen.length = 0
    return c
  }

  internal('parser.client', async () => {
    const { client } = guarded()
    client.conn.write(Buffer.from([0xc0, 0x00])) // PINGREQ before CONNECT: parsed, then refused by Aedes
    await tick()
    expect(seen[0]).toEqual({ step: 'length', value: ['pingreq', 0] })
  })

  internal('parser.packet', async () => {
    const { stream } = guarded()
    stream.write(Buffer.from([0x30, 0x05]))
    await tick()
    expect(seen).toContainEqual({ step: 'length', value: ['publish', 5] })
  })

  internal('parser._list', async () => {
    const { client, stream } = guarded()
    const list = (internals(client)._parser as { _list: { constructor: { name: string }; consume: unknown } })._list
    expect(list.constructor.name).toBe('BufferList')
    expect(typeof list.consume).toBe('function')
    // CONNECT level is read from the buffer before the body is complete.
    stream.write(Buffer.from([0x10, 0x7f, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x05]))
    await tick()
    expect(seen).toContainEqual({ step: 'connect', value: [5, 0x7f] })
  })

  internal('parser._pos', async () => {
    const { stream } = guarded()
    stream.write(connectBytes('pos-dev'))
    // The bytes of each string start after its 2-byte length, at the position the parser was at.
    await tick()
    expect(seen).toContainEqual({ step: 'string', value: ['connect', 'pos-dev', Buffer.from('pos-dev').toString('hex')] })
  })

  internal('parser.settings', async () => {
    const { client, stream } = newClient()
    stream.write(connectBytes('settled'))
    await new Promise<void>((r) => aedes.once('client', () => r()))
    const parser = internals(client)._parser as { settings: Record<string, unknown> }
    expect(parser.settings.password).toBeInstanceOf(Buffer)
    releaseConnectPacket(client)
    expect(parser.settings).toEqual({ protocolVersion: 4 })
  })

  internal('Parser#_parseLength', async () => {
    const { stream } = guarded()
    stream.write(Buffer.from([0x82, 0xff, 0xff, 0xff, 0x7f]))
    await tick()
    expect(seen[0]).toEqual({ step: 'length', value: ['subscribe', 268_435_455] })
  })

  internal('Parser#_parsePayload', async () => {
    const { stream } = guarded()
    stream.write(Buffer.from([0x10, 0x20, 0x00]))
    await tick()
    expect(seen).toContainEqual({ step: 'connect', value: ['wait', 0x20] })
  })

  internal('Parser#_parseString', async () => {
    const { stream } = guarded()
    stream.write(connectBytes('é-dev'))
    await tick()
    expect(seen).toContainEqual({ step: 'string', value: ['connect', 'é-dev', Buffer.from('é-dev').toString('hex')] })
    expect(seen).toContainEqual({ step: 'string', value: ['connect', 'MQTT', '4d515454'] })
  })

  internal('Parser#_emitError', async () => {
    const { client } = newClient()
    const errors: Error[] = []
    client.on('error', (e) => errors.push(e))
    ;(internals(client)._parser as { _emitError(e: Error): void })._emitError(new Error('stop'))
    expect(errors.map((e) => e.message)).toEqual(['stop'])
  })

  internal('bl/BufferList.js', () => {
    const { client } = guarded()
    const list = (internals(client)._parser as { _list: { append(b: Buffer): void; length: number; readUInt16BE(o: number): number; toString(e: string, s: number, n: number): string } })._list
    list.append(Buffer.from([0x00, 0x02, 0x68, 0x69]))
    expect(list.length).toBe(4)
    expect(list.readUInt16BE(0)).toBe(2)
    expect(list.toString('utf8', 2, 4)).toBe('hi')
  })

  it('every internal listed in aedes-internals.ts has its test here', () => {
    expect([...tested].sort()).toEqual(INTERNALS.map((i) => i.name).sort())
  })
})
