import { planOf } from './arb-session.js'
import { fuzzDeviceId, MID, pick, type ConnectPlan, type PacketPlan, type SessionPlan, type StepPlan, type TransportPlan } from './plan.js'
import { mutate, pieces, taintField } from './mutate.js'
import { encodeConnect, encodePublish, encodeSubscribe, generate, reserved, varint, type Encoded } from './wire.js'

/** What a correct gateway does with one step; the driver checks it. */
export type Expectation =
  /** QoS 1 telemetry of the device itself: if the gateway PUBACKs it, `mid` must be in the stream. */
  | { kind: 'ack'; mid: string }
  /** Must never be acknowledged (no PUBACK, PUBREC or SUBACK for its packet id): the gateway closes instead. */
  | { kind: 'refuse'; why: string }
  /** First packet: a CONNACK with exactly this code, before the connection closes. */
  | { kind: 'connack'; code: number; why: string }
  /** First packet, a complete CONNECT: a CONNACK or the connection closed, within the answer bound. */
  | { kind: 'answer' }
  /** The packet announces more than a limit: the connection is closed once the length is read. */
  | { kind: 'close'; why: string }

export interface Step {
  label: string
  bytes: Buffer
  /** Whole MQTT packets with every length right, so the gateway's parser stays in step with us. */
  framed: boolean
  /** Sizes of the writes the bytes are sent in, `trickleMs` apart. */
  pieces: number[]
  trickleMs: number
  pauseMs: number
  messageId?: number
  expect?: Expectation
}

export interface Session {
  seed: number
  index: number
  transport: TransportPlan
  login: 'valid' | 'raw'
  device: number
  deviceId: string
  clean: boolean
  keepalive: number
  steps: Step[]
}

/** The gateway limits that decide which announced lengths must be refused (config `limits.*`). */
export interface EdgeLimits {
  maxConnectPacketBytes: number
  maxSubscribePacketBytes: number
  maxPayloadBytes: number
}

/** Topic (2 + 65535) and packet id (2) on top of the payload: a PUBLISH over this is oversize whatever its topic. */
const PUBLISH_OVERHEAD = 2 + 65535 + 2

/** Case `index` of the run with `seed`, ready to send. */
export function caseOf(seed: number, index: number, limits: EdgeLimits): Session {
  return buildSession(planOf(seed, index), seed, index, limits)
}

export function buildSession(plan: SessionPlan, seed: number, index: number, limits: EdgeLimits): Session {
  const deviceId = fuzzDeviceId(plan.device)
  const tag = `${(seed >>> 0).toString(36)}-${index}`
  const steps: Step[] = []
  plan.steps.forEach((sp, i) => steps.push(buildStep(sp, i, steps, tag, plan, limits)))
  if (plan.swap && steps.length > 1) {
    const a = pick(plan.swap[0], steps.length)
    const b = pick(plan.swap[1], steps.length)
    ;[steps[a], steps[b]] = [steps[b]!, steps[a]!]
  }
  // Expectations hold only while everything sent before is whole packets: after damaged bytes the
  // gateway may read anything from the stream. The first step of a raw session keeps its own.
  let clean = true
  steps.forEach((s, i) => {
    if (!clean || (plan.login === 'raw' && i > 0)) delete s.expect
    if (!s.framed) clean = false
  })
  return { seed, index, transport: plan.transport, login: plan.login, device: plan.device, deviceId, clean: plan.clean, keepalive: plan.keepalive, steps }
}

function buildStep(sp: StepPlan, i: number, before: readonly Step[], tag: string, plan: SessionPlan, limits: EdgeLimits): Step {
  const base = { pieces: [] as number[], trickleMs: 0, pauseMs: sp.pauseMs }
  switch (sp.kind) {
    case 'garbage':
      return { ...base, label: 'garbage', bytes: Buffer.from(sp.bytes), framed: false, pieces: [sp.bytes.length] }
    case 'oversize': {
      const bytes = Buffer.concat([Buffer.from([sp.firstByte]), varint(sp.announced), Buffer.alloc(sp.filler, 0x61)])
      const why = oversizeRule(sp.firstByte, sp.announced, sp.filler, plan.login, limits)
      return { ...base, label: `header 0x${sp.firstByte.toString(16)} announcing ${sp.announced} bytes, then ${sp.filler}`, bytes, framed: false, pieces: [bytes.length], ...(why ? { expect: { kind: 'close', why } } : {}) }
    }
    case 'duplicate': {
      const earlier = before.filter((s) => !s.label.startsWith('header '))
      if (earlier.length === 0) return { ...base, label: 'PINGREQ', bytes: generate({ cmd: 'pingreq' }), framed: true, pieces: [2] }
      const k = pick(sp.of, earlier.length)
      const src = earlier[k]!
      if (!sp.mutation) return { ...src, label: `again: ${src.label}`, pauseMs: sp.pauseMs }
      const bytes = mutate(src.bytes, sp.mutation)
      return { ...base, label: `${sp.mutation.kind}(again: ${src.label})`, bytes, framed: false, pieces: [bytes.length] }
    }
    case 'packet': {
      const messageId = i + 1
      const built = buildPacket(sp.packet, messageId, `${tag}-${i}`, plan)
      const bytes = sp.mutation ? mutate(built.bytes, sp.mutation) : built.bytes
      const label = sp.mutation ? `${sp.mutation.kind}(${built.label})` : built.label
      const framed = sp.mutation === null
      return {
        ...base,
        label,
        bytes,
        framed,
        pieces: pieces(bytes.length, sp.split),
        trickleMs: sp.split?.trickleMs ?? 0,
        ...(built.messageId === undefined ? {} : { messageId: built.messageId }),
        ...(framed && built.expect ? { expect: built.expect } : {}),
      }
    }
  }
}

/** A CONNECT's protocol level is its 9th body byte (name length, name "MQTT", level). */
const CONNECT_LEVEL_BYTES = 9

function oversizeRule(firstByte: number, announced: number, filler: number, login: SessionPlan['login'], limits: EdgeLimits): string | null {
  if (login === 'raw') {
    // An oversize CONNECT is judged once its protocol level can be read: an unsupported level
    // gets CONNACK 1 whatever the length [MQTT-3.1.2-2]. Until then it is an idle connection.
    if (firstByte >> 4 === 1 && filler < CONNECT_LEVEL_BYTES) return null
    return announced > limits.maxConnectPacketBytes ? `a packet before CONNACK announcing ${announced} bytes (limits.maxConnectPacketBytes ${limits.maxConnectPacketBytes})` : null
  }
  const type = firstByte >> 4
  if ((type === 8 || type === 10) && announced > limits.maxSubscribePacketBytes) {
    return `a ${type === 8 ? 'SUBSCRIBE' : 'UNSUBSCRIBE'} announcing ${announced} bytes (limits.maxSubscribePacketBytes ${limits.maxSubscribePacketBytes})`
  }
  if (type === 3 && announced > limits.maxPayloadBytes + PUBLISH_OVERHEAD) return `a PUBLISH announcing ${announced} bytes (limits.maxPayloadBytes ${limits.maxPayloadBytes})`
  return null
}

interface Built {
  label: string
  bytes: Buffer
  messageId?: number
  expect?: Expectation
}

const short = (s: string, n = 72): string => JSON.stringify(s.length > n ? `${s.slice(0, n)}…` : s)

function buildPacket(p: PacketPlan, messageId: number, mid: string, plan: SessionPlan): Built {
  switch (p.type) {
    case 'connect':
      return buildConnect(p, plan)
    case 'publish': {
      const topic = p.topic.split(MID).join(mid)
      const enc = encodePublish({ topic, payload: Buffer.from(p.payload), qos: p.qos, retain: p.retain, dup: p.dup, messageId })
      const tainted = p.taint ? taintField(enc.bytes, enc.fields.topic, p.taint, Buffer.byteLength(topic.slice(0, topic.lastIndexOf('/') + 1))) : null
      const bytes = tainted ?? enc.bytes
      const taintWhy = tainted && p.taint ? (p.taint.kind === 'nul' ? 'U+0000 in a topic name [MQTT-4.7.3-2]' : 'invalid UTF-8 in a topic name [MQTT-1.5.3-1]') : null
      const label = `PUBLISH qos${p.qos}${p.retain ? ' retain' : ''}${p.dup ? ' dup' : ''} id ${messageId} ${short(topic)}${taintWhy ? ` with ${p.taint!.kind === 'nul' ? 'U+0000' : 'invalid UTF-8'}` : ''} (${p.payload.length} B)`
      return { label, bytes, ...(p.qos > 0 ? { messageId } : {}), ...publishExpectation(p, plan, mid, topic, taintWhy) }
    }
    case 'subscribe': {
      const enc = encodeSubscribe(messageId, p.filters)
      const bytes = (p.taint ? taintField(enc.bytes, enc.fields.filter0, p.taint) : null) ?? enc.bytes
      const label = `SUBSCRIBE id ${messageId} ${p.filters.map((f) => `${short(f.topic, 48)} q${f.qos}`).join(', ') || '(no filter)'}${p.taint && bytes !== enc.bytes ? ` with ${p.taint.kind}` : ''}`
      const why = plan.login === 'raw' ? 'SUBSCRIBE before authentication' : p.forbidden
      return { label, bytes, messageId, ...(why ? { expect: { kind: 'refuse', why } } : {}) }
    }
    case 'unsubscribe':
      return { label: `UNSUBSCRIBE id ${messageId} ${p.filters.map((f) => short(f, 48)).join(', ')}`, bytes: unsubscribe(messageId, p.filters), messageId }
    case 'ack':
      return { label: `${p.cmd.toUpperCase()} id ${p.messageId}`, bytes: ackBytes(p.cmd, p.messageId) }
    case 'simple':
      return { label: p.cmd.toUpperCase(), bytes: generate({ cmd: p.cmd }) }
    case 'server':
      return { label: `${p.cmd.toUpperCase()} (server-only type)`, bytes: serverBytes(p) }
    case 'reserved':
      return { label: `reserved type ${p.code} flags ${p.flags} (${p.body.length} B)`, bytes: reserved(p.code, p.flags, Buffer.from(p.body)) }
  }
}

function publishExpectation(p: Extract<PacketPlan, { type: 'publish' }>, plan: SessionPlan, mid: string, topic: string, taintWhy: string | null): { expect?: Expectation } {
  if (p.qos === 0) return {}
  if (plan.login === 'raw') return { expect: { kind: 'refuse', why: 'PUBLISH before authentication' } }
  if (p.qos === 2) return { expect: { kind: 'refuse', why: 'QoS 2 (IoT Hub closes the connection)' } }
  if (taintWhy) return { expect: { kind: 'refuse', why: taintWhy } }
  if (p.topicClass.kind === 'forbidden') return { expect: { kind: 'refuse', why: p.topicClass.why } }
  if (p.topicClass.kind === 'telemetry' && topic.includes(mid)) return { expect: { kind: 'ack', mid } }
  return {}
}

/** MQTT 3.1.1 levels a 3.1.1 gateway might accept (3.1 and 3.1.1, and their bridge forms); any other gets CONNACK 1. */
const MAYBE_SUPPORTED_LEVELS = new Set([3, 4, 0x83, 0x84])

function buildConnect(c: ConnectPlan, plan: SessionPlan): Built {
  const enc: Encoded = encodeConnect({
    protocolId: c.protocolId,
    level: c.level,
    clientId: c.clientId,
    clean: c.clean,
    keepalive: c.keepalive,
    ...(c.username === undefined ? {} : { username: c.username }),
    ...(c.password === undefined ? {} : { password: Buffer.from(c.password) }),
    ...(c.will ? { will: { topic: c.will.topic.split(MID).join('w'), payload: Buffer.from(c.will.payload), qos: c.will.qos, retain: c.will.retain } } : {}),
    extraFlags: c.extraFlags,
    // An MQTT 5 client sends its CONNECT in the MQTT 5 layout.
    v5: c.level === 5,
  })
  const tainted = c.taint ? taintField(enc.bytes, enc.fields[c.taint.field], c.taint) : null
  const bytes = tainted ?? enc.bytes
  const label = `CONNECT ${short(c.protocolId, 8)} level ${c.level} flags+0x${c.extraFlags.toString(16)} client ${short(c.clientId, 32)} user ${c.username === undefined ? '-' : short(c.username, 48)} password ${c.password === undefined ? '-' : `${c.password.length} B`}${c.will ? ` will q${c.will.qos}` : ''}${tainted ? ` ${c.taint!.kind} in ${c.taint!.field}` : ''}`
  if (plan.login !== 'raw') return { label, bytes }
  const unsupported = c.protocolId === 'MQTT' && !MAYBE_SUPPORTED_LEVELS.has(c.level) && c.extraFlags === 0 && !tainted && (c.will?.qos ?? 0) <= 2
  const expect: Expectation = unsupported ? { kind: 'connack', code: 1, why: `protocol level ${c.level} is not 3.1.1 [MQTT-3.1.2-2]` } : { kind: 'answer' }
  return { label, bytes, expect }
}

function unsubscribe(messageId: number, filters: string[]): Buffer {
  // generate() refuses an empty list; write that one by hand (a protocol violation [MQTT-3.10.3-2]).
  if (filters.length === 0) return Buffer.from([0xa2, 0x02, messageId >> 8, messageId & 0xff])
  return generate({ cmd: 'unsubscribe', messageId, unsubscriptions: filters })
}

function ackBytes(cmd: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp', id: number): Buffer {
  // [MQTT-3.6.1-1]: PUBREL's fixed header flags are 0010.
  const first = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 }[cmd]
  return Buffer.from([first, 0x02, id >> 8, id & 0xff])
}

function serverBytes(p: Extract<PacketPlan, { type: 'server' }>): Buffer {
  switch (p.cmd) {
    case 'connack':
      return Buffer.from([0x20, 0x02, p.sessionPresent ? 1 : 0, p.returnCode])
    case 'suback':
      return Buffer.from([0x90, 2 + p.granted.length, p.messageId >> 8, p.messageId & 0xff, ...p.granted])
    case 'unsuback':
      return Buffer.from([0xb0, 0x02, p.messageId >> 8, p.messageId & 0xff])
  }
}
