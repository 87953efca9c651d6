import { describe, expect, it } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { caseOf, type EdgeLimits } from '../../fuzz/session.js'
import { encodeConnect, encodePublish, encodeSubscribe, hex, varint } from '../../fuzz/wire.js'
import { mutate, taintField } from '../../fuzz/mutate.js'
import { validConnectBytes } from '../../fuzz/driver.js'

const LIMITS: EdgeLimits = { maxConnectPacketBytes: 8192, maxSubscribePacketBytes: 8192, maxPayloadBytes: 262144 }

/** Every packet mqtt-packet reads from `bytes`, or the error it stops at. */
function parse(bytes: Buffer): { packets: mqttPacket.Packet[]; error: string | null } {
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: mqttPacket.Packet[] = []
  let error: string | null = null
  parser.on('packet', (p: mqttPacket.Packet) => packets.push(p))
  parser.on('error', (e: Error) => (error ??= e.message))
  parser.parse(bytes)
  return { packets, error }
}

describe('fuzz: wire encoders', () => {
  it('encode CONNECT, PUBLISH and SUBSCRIBE as mqtt-packet reads them', () => {
    const connect = parse(validConnectBytes('dev-1', 'SharedAccessSignature sr=x&sig=y&se=1', false, 60).bytes)
    expect(connect.error).toBeNull()
    expect(connect.packets[0]).toMatchObject({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'dev-1', clean: false, keepalive: 60, username: 'localhost/dev-1/?api-version=2021-04-12' })
    const publish = parse(encodePublish({ topic: 'devices/d/messages/events/%24.mid=1', payload: Buffer.from('hi'), qos: 1, retain: true, dup: true, messageId: 7 }).bytes)
    expect(publish.packets[0]).toMatchObject({ cmd: 'publish', topic: 'devices/d/messages/events/%24.mid=1', qos: 1, retain: true, dup: true, messageId: 7 })
    const subscribe = parse(encodeSubscribe(9, [{ topic: '$iothub/twin/res/#', qos: 0 }, { topic: 'a/+', qos: 1 }]).bytes)
    expect(subscribe.packets[0]).toMatchObject({ cmd: 'subscribe', messageId: 9, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }, { topic: 'a/+', qos: 1 }] })
  })

  it('writes remaining lengths up to ff ff ff 7f', () => {
    expect(hex(varint(0))).toBe('00')
    expect(hex(varint(127))).toBe('7f')
    expect(hex(varint(128))).toBe('8001')
    expect(hex(varint(268_435_455))).toBe('ffffff7f')
  })

  it('taints a string in place: the lengths stay right, the text is no longer UTF-8', () => {
    const enc = encodeConnect({ protocolId: 'MQTT', level: 4, clientId: 'client-id', clean: true, keepalive: 0, username: 'user' })
    const tainted = taintField(enc.bytes, enc.fields.clientId, { kind: 'utf8', at: 30000, variant: 4 })!
    expect(tainted.length).toBe(enc.bytes.length)
    const clientId = tainted.subarray(enc.fields.clientId![0], enc.fields.clientId![0] + enc.fields.clientId![1])
    expect(() => new TextDecoder('utf-8', { fatal: true }).decode(clientId)).toThrow()
    expect(parse(tainted).packets).toHaveLength(1)
  })

  it('corrupts the remaining length to the largest one', () => {
    const bytes = mutate(Buffer.from([0xc0, 0x00]), { kind: 'length', to: 'huge', random: 0 })
    expect(hex(bytes)).toBe('c0ffffff7f')
  })
})

describe('fuzz: cases', () => {
  it('are the same for the same seed and index, and differ between indexes', () => {
    const a = caseOf(42, 17, LIMITS)
    const b = caseOf(42, 17, LIMITS)
    expect(b.steps.map((s) => hex(s.bytes))).toEqual(a.steps.map((s) => hex(s.bytes)))
    expect(caseOf(42, 18, LIMITS).steps.map((s) => hex(s.bytes))).not.toEqual(a.steps.map((s) => hex(s.bytes)))
  })

  it('cover every packet type, damaged bytes, oversize headers, both logins and both transports', () => {
    const firstBytes = new Set<number>()
    const labels = new Set<string>()
    const kinds = new Set<string>()
    for (let i = 0; i < 600; i++) {
      const s = caseOf(7, i, LIMITS)
      kinds.add(`${s.login}/${s.transport.kind}`)
      for (const step of s.steps) {
        if (step.framed) firstBytes.add(step.bytes[0]! >> 4)
        labels.add(step.label.split(/[ (]/)[0]!)
        if (step.expect) kinds.add(step.expect.kind)
      }
    }
    expect([...firstBytes].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
    for (const l of ['garbage', 'header', 'bitflip', 'truncate', 'length', 'string-length', 'again:']) expect(labels).toContain(l)
    for (const k of ['valid/tcp', 'raw/tcp', 'valid/ws', 'raw/ws', 'ack', 'refuse', 'connack', 'answer', 'close']) expect(kinds).toContain(k)
  })

  it('expects an acknowledgement only of whole, well-formed QoS 1 telemetry carrying its $.mid', () => {
    for (let i = 0; i < 400; i++) {
      const s = caseOf(11, i, LIMITS)
      let clean = true
      for (const step of s.steps) {
        if (step.expect?.kind === 'ack') {
          expect(clean && step.framed).toBe(true)
          const { packets, error } = parse(step.bytes)
          expect(error).toBeNull()
          expect(packets[0]).toMatchObject({ cmd: 'publish', qos: 1, messageId: step.messageId })
          expect((packets[0] as mqttPacket.IPublishPacket).topic).toContain(step.expect.mid)
        }
        clean &&= step.framed
      }
    }
  })
})

describe('fuzz: output watch', () => {
  it('flags crashes, stack traces, error lines and leak warnings, not the warnings of refused clients', async () => {
    const { OutputWatch } = await import('../../fuzz/watch.js')
    let out = 'streamgate is running\n'
    const watch = new OutputWatch(() => out)
    out += [
      '{"level":40,"msg":"closing connection: Topic not allowed: wildcard or NUL in a topic name","code":"E_TOPIC_FORBIDDEN"}',
      '{"level":40,"msg":"connect refused: unhandled packet before CONNECT"}',
      '(node:123) DeprecationWarning: punycode is deprecated',
      'URIError: URI malformed',
      '    at Server.onUpgrade (file:///app/dist/src/broker/listeners.js:89:39)',
      '{"level":50,"component":"twin","err":"Maximum call stack size exceeded","msg":"twin request failed"}',
      '(node:123) MaxListenersExceededWarning: Possible EventEmitter memory leak detected',
      'partial line without its newline',
    ].join('\n')
    expect(watch.scan().map((s) => s.sign)).toEqual(['JavaScript error', 'stack trace', 'stack overflow', 'process warning'])
    expect(watch.scan()).toEqual([])
  })
})
