import fc from 'fast-check'
import type { AckPlan, ConnectPlan, PacketPlan, PublishPlan, ReservedPlan, ServerPlan, SimplePlan, SubscribePlan, Taint, UnsubscribePlan } from './plan.js'
import { INVALID_UTF8 } from './plan.js'
import { charsOf, memo, payload, publishTopic, sometimes, subscribeFilter } from './arb-topics.js'

/** Well-formed packets of every MQTT 3.1.1 type, as plans (fields, not bytes). */

const fraction = fc.nat(65535)

export const taint: fc.Arbitrary<Taint> = fc.record({ kind: fc.constantFrom('utf8' as const, 'utf8' as const, 'nul' as const), at: fraction, variant: fc.nat(INVALID_UTF8.length - 1) })

const messageId = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 65535 }), weight: 9 }, { arbitrary: fc.constant(0), weight: 1 })

/** A SAS token of the right shape whose signature is wrong: no raw session ever authenticates. */
function forgedSas(deviceId: string): fc.Arbitrary<string> {
  return fc
    .tuple(fc.base64String({ minLength: 44, maxLength: 44 }), fc.constantFrom('4102444800', '1', '0', '99999999999999', '-1', 'x'), fc.boolean())
    .map(([sig, se, skn]) => `SharedAccessSignature sr=localhost%2Fdevices%2F${encodeURIComponent(deviceId)}&sig=${encodeURIComponent(sig)}&se=${se}${skn ? '&skn=device' : ''}`)
}

const asBytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'))

export function connectPacket(deviceIds: readonly string[]): fc.Arbitrary<ConnectPlan> {
  return connectOf(deviceIds.join(','))
}

const connectOf = memo((ids: string): fc.Arbitrary<ConnectPlan> => {
  const deviceIds = ids.split(',')
  const known = fc.constantFrom(...deviceIds)
  const clientId = fc.oneof(
    { arbitrary: known, weight: 6 },
    { arbitrary: charsOf('abcdefghijklmnopqrstuvwxyz0123456789-', 1, 23).map((s) => `unknown-${s}`), weight: 2 },
    { arbitrary: fc.constant(''), weight: 1 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }), weight: 1 },
    { arbitrary: fc.integer({ min: 24, max: 2000 }).map((n) => 'c'.repeat(n)), weight: 1 },
    { arbitrary: known.map((d) => `${d}\u0000`), weight: 1 },
  )
  return clientId.chain((id) => {
    const device = id === '' ? deviceIds[0]! : id
    const username = fc.oneof(
      { arbitrary: fc.constant(`localhost/${device}/?api-version=2021-04-12`), weight: 6 },
      { arbitrary: fc.constant(`localhost/${device}/?api-version=2021-04-12&DeviceClientType=fuzz%2F1&model-id=dtmi%3Ax%3B1`), weight: 1 },
      { arbitrary: known.map((other) => `localhost/${other}/?api-version=2021-04-12`), weight: 1 },
      { arbitrary: fc.constantFrom(device, `evil.example/${device}/?api-version=2021-04-12`, `localhost/${device}/mod/?x`, '/?', '', 'localhost//?'), weight: 1 },
      { arbitrary: fc.string({ unit: 'binary', maxLength: 64 }), weight: 1 },
      { arbitrary: fc.integer({ min: 4000, max: 20000 }).map((n) => `localhost/${device}/?${'q'.repeat(n)}`), weight: 1 },
    )
    const password = fc.oneof(
      { arbitrary: forgedSas(device).map(asBytes), weight: 6 },
      { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 1 },
      { arbitrary: fc.constantFrom('SharedAccessSignature ', 'SharedAccessSignature sr=&sig=&se=', 'SharedAccessSignature sr=%zz&sig=%&se=1', 'password').map(asBytes), weight: 1 },
      { arbitrary: fc.integer({ min: 4097, max: 30000 }).map((n) => asBytes(`SharedAccessSignature sr=${'a'.repeat(n)}`)), weight: 1 },
    )
    const will = fc.record({ topic: publishTopic(device, device).map((t) => t.topic), payload: fc.uint8Array({ maxLength: 32 }), qos: fc.constantFrom(0, 1, 2, 3), retain: fc.boolean() })
    return fc.record(
      {
        type: fc.constant('connect' as const),
        protocolId: fc.oneof({ arbitrary: fc.constant('MQTT'), weight: 12 }, { arbitrary: fc.constant('MQIsdp'), weight: 1 }, { arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 8 }), weight: 1 }),
        level: fc.oneof({ arbitrary: fc.constant(4), weight: 10 }, { arbitrary: fc.constantFrom(3, 5), weight: 2 }, { arbitrary: fc.nat(255), weight: 3 }),
        clientId: fc.constant(id),
        clean: fc.boolean(),
        keepalive: fc.oneof(fc.constantFrom(0, 60, 180, 1177), fc.nat(65535)),
        username: sometimes(username, 90, undefined),
        password: sometimes(password, 85, undefined),
        will: sometimes(will, 10, undefined),
        extraFlags: fc.oneof({ arbitrary: fc.constant(0), weight: 12 }, { arbitrary: fc.constantFrom(0x01, 0x04, 0x08, 0x18, 0x20, 0x40, 0x80), weight: 1 }),
        taint: sometimes(
          fc.tuple(taint, fc.constantFrom('clientId' as const, 'username' as const, 'password' as const, 'willTopic' as const)).map(([t, field]) => ({ ...t, field })),
          10,
          undefined,
        ),
      },
      { requiredKeys: ['type', 'protocolId', 'level', 'clientId', 'clean', 'keepalive', 'extraFlags'] },
    )
  })
})

export function publishPacket(deviceId: string, otherId: string): fc.Arbitrary<PublishPlan> {
  return fc.record(
    {
      type: fc.constant('publish' as const),
      choice: publishTopic(deviceId, otherId),
      qos: fc.oneof({ arbitrary: fc.constant(1 as const), weight: 6 }, { arbitrary: fc.constant(0 as const), weight: 3 }, { arbitrary: fc.constant(2 as const), weight: 1 }),
      retain: fc.oneof({ arbitrary: fc.constant(false), weight: 6 }, { arbitrary: fc.constant(true), weight: 1 }),
      dup: fc.oneof({ arbitrary: fc.constant(false), weight: 6 }, { arbitrary: fc.constant(true), weight: 1 }),
      payload,
      taint: sometimes(taint, 8, undefined),
    },
    { requiredKeys: ['type', 'choice', 'qos', 'retain', 'dup', 'payload'] },
  ).map(({ choice, ...rest }) => ({ ...rest, topic: choice.topic, topicClass: choice.topicClass }))
}

export function subscribePacket(deviceId: string, otherId: string): fc.Arbitrary<SubscribePlan> {
  const qos = fc.oneof({ arbitrary: fc.constantFrom(0, 1), weight: 8 }, { arbitrary: fc.constant(2), weight: 1 }, { arbitrary: fc.constantFrom(3, 0x80, 0xff), weight: 1 })
  const filters = fc.oneof({ arbitrary: fc.array(fc.tuple(subscribeFilter(deviceId, otherId), qos), { minLength: 1, maxLength: 3 }), weight: 20 }, { arbitrary: fc.constant([]), weight: 1 })
  return fc.tuple(filters, sometimes(taint, 8, undefined)).map(([list, t]): SubscribePlan => {
    const why =
      list.length === 0
        ? 'SUBSCRIBE without a filter [MQTT-3.8.3-3]'
        : (list.find(([f]) => f.forbidden !== null)?.[0].forbidden ??
          (list.some(([, q]) => q > 2) ? 'requested QoS over 2 [MQTT-3.8.3-4]' : t ? (t.kind === 'nul' ? 'U+0000 in a topic filter [MQTT-4.7.3-2]' : 'invalid UTF-8 in a topic filter [MQTT-1.5.3-1]') : null))
    return { type: 'subscribe', filters: list.map(([f, q]) => ({ topic: f.topic, qos: q })), forbidden: why, ...(t ? { taint: t } : {}) }
  })
}

export function unsubscribePacket(deviceId: string, otherId: string): fc.Arbitrary<UnsubscribePlan> {
  return fc.array(subscribeFilter(deviceId, otherId).map((f) => f.topic), { minLength: 0, maxLength: 3 }).map((filters) => ({ type: 'unsubscribe' as const, filters }))
}

const ackPacket: fc.Arbitrary<AckPlan> = fc.record({ type: fc.constant('ack' as const), cmd: fc.constantFrom('puback' as const, 'pubrec' as const, 'pubrel' as const, 'pubcomp' as const), messageId })

const simplePacket: fc.Arbitrary<SimplePlan> = fc.oneof(
  { arbitrary: fc.constant({ type: 'simple' as const, cmd: 'pingreq' as const }), weight: 4 },
  { arbitrary: fc.constant({ type: 'simple' as const, cmd: 'disconnect' as const }), weight: 1 },
  { arbitrary: fc.constant({ type: 'simple' as const, cmd: 'pingresp' as const }), weight: 1 },
)

const serverPacket: fc.Arbitrary<ServerPlan> = fc.oneof(
  fc.record({ type: fc.constant('server' as const), cmd: fc.constant('connack' as const), returnCode: fc.nat(5), sessionPresent: fc.boolean() }),
  fc.record({ type: fc.constant('server' as const), cmd: fc.constant('suback' as const), messageId: fc.integer({ min: 1, max: 65535 }), granted: fc.array(fc.constantFrom(0, 1, 2, 128), { minLength: 1, maxLength: 3 }) }),
  fc.record({ type: fc.constant('server' as const), cmd: fc.constant('unsuback' as const), messageId: fc.integer({ min: 1, max: 65535 }) }),
)

const reservedPacket: fc.Arbitrary<ReservedPlan> = fc.record({ type: fc.constant('reserved' as const), code: fc.constantFrom(0 as const, 15 as const), flags: fc.nat(15), body: fc.uint8Array({ maxLength: 16 }) })

/** Any packet a client might send after CONNECT, weighted towards what devices really send. */
export function anyPacket(deviceIds: readonly string[], deviceId: string, otherId: string): fc.Arbitrary<PacketPlan> {
  return anyPacketOf(deviceIds.join(','), deviceId, otherId)
}

const anyPacketOf = memo((ids: string, deviceId: string, otherId: string): fc.Arbitrary<PacketPlan> => {
  const deviceIds = ids.split(',')
  return fc.oneof(
    { arbitrary: publishPacket(deviceId, otherId), weight: 45 },
    { arbitrary: subscribePacket(deviceId, otherId), weight: 10 },
    { arbitrary: unsubscribePacket(deviceId, otherId), weight: 4 },
    { arbitrary: ackPacket, weight: 10 },
    { arbitrary: simplePacket, weight: 8 },
    { arbitrary: serverPacket, weight: 3 },
    { arbitrary: reservedPacket, weight: 3 },
    { arbitrary: connectPacket(deviceIds), weight: 2 },
  )
})
