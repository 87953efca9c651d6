import fc from 'fast-check'
import { MID, type TopicClass } from './plan.js'

/**
 * Topics and filters, allowed and forbidden, for one device (docs/iothub-mqtt.md sections 3 to 7).
 * Each forbidden form says why a correct gateway refuses it; the oracle prints that reason.
 */

const ALLOWED_SYSTEM_KEYS = ['%24.ct', '%24.ce', '%24.cid', '%24.uid', '%24.to', '%24.exp', '%24.ifid', '%24.on', '%24.sub']
const SYSTEM_WIRE_KEYS = new Set(['$.mid', '$.cid', '$.uid', '$.to', '$.ct', '$.ce', '$.exp', '$.ifid', '$.on', '$.sub'])

/** A well-formed Unicode string (no lone surrogates), so encodeURIComponent never throws. */
const text = (maxLength: number, minLength = 0): fc.Arbitrary<string> =>
  fc.oneof(
    { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength, maxLength }), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme', minLength, maxLength }), weight: 1 },
  )

const appKey = fc.oneof(
  { arbitrary: text(12, 1).filter((k) => !k.startsWith('$.') && !SYSTEM_WIRE_KEYS.has(k)), weight: 8 },
  // Names of headers the gateway sets itself: kept under `app.` (envelope.ts), never spoofed.
  { arbitrary: fc.constantFrom('device-id', 'message-id', 'enqueued-time', 'mqtt-retain', 'content-type'), weight: 1 },
)

const appPair = fc.oneof(
  { arbitrary: fc.tuple(appKey, text(24)).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`), weight: 6 },
  { arbitrary: appKey.map((k) => encodeURIComponent(k)), weight: 1 }, // bare key: null value
  { arbitrary: appKey.map((k) => `${encodeURIComponent(k)}=`), weight: 1 }, // empty value
)

const systemPair = fc.tuple(fc.constantFrom(...ALLOWED_SYSTEM_KEYS), text(16)).map(([k, v]) => `${k}=${encodeURIComponent(v)}`)

/** A well-formed property bag, with the case's `$.mid` at some position when `withMid`. */
function bag(withMid: boolean): fc.Arbitrary<string> {
  return fc
    .tuple(fc.array(fc.oneof({ arbitrary: appPair, weight: 3 }, { arbitrary: systemPair, weight: 1 }), { maxLength: 6 }), fc.nat(6), fc.constantFrom('%24.mid', '$.mid'))
    .map(([pairs, at, key]) => {
      if (withMid) pairs.splice(Math.min(at, pairs.length), 0, `${key}=${MID}`)
      return pairs.join('&')
    })
}

export interface TopicChoice {
  topic: string
  topicClass: TopicClass
}

const forbidden = (why: string) => (topic: string): TopicChoice => ({ topic, topicClass: { kind: 'forbidden', why } })

/** Strings of `chars`, `min` to `max` long (cheaper to generate than fc.stringMatching). */
export function charsOf(chars: string, min: number, max: number): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...chars), { minLength: min, maxLength: max }).map((a) => a.join(''))
}

const rid = charsOf('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-', 1, 16)

/**
 * Arbitraries built for one device are cached: the generators are built once per device, not
 * once per case (building them costs more than drawing from them).
 */
export function memo<A extends Array<string | number>, T>(build: (...args: A) => T): (...args: A) => T {
  const cache = new Map<string, T>()
  return (...args: A): T => {
    const key = args.join('\u0000')
    let v = cache.get(key)
    if (v === undefined) cache.set(key, (v = build(...args)))
    return v
  }
}

export const publishTopic = memo((deviceId: string, otherId: string): fc.Arbitrary<TopicChoice> => {
  const events = `devices/${deviceId}/messages/events`
  const telemetry = (withMid: boolean): fc.Arbitrary<TopicChoice> =>
    fc.tuple(bag(withMid), fc.boolean()).map(([b, slash]) => ({ topic: `${events}/${b}${slash && b !== '' ? '/' : ''}`, topicClass: { kind: 'telemetry' } }))
  const iothub = fc.oneof(
    rid.map((r) => `$iothub/twin/GET/?$rid=${r}`),
    rid.map((r) => `$iothub/twin/PATCH/properties/reported/?$rid=${r}`),
    fc.tuple(fc.constantFrom(200, 204, 400, 404, 500), rid).map(([s, r]) => `$iothub/methods/res/${s}/?$rid=${r}`),
  ).map((topic): TopicChoice => ({ topic, topicClass: { kind: 'iothub' } }))
  const refused = fc.oneof(
    fc.constant(`devices/${otherId}/messages/events/%24.mid=${MID}`).map(forbidden('telemetry topic of another device')),
    fc.constant(`devices/${deviceId}/messages/devicebound/%24.mid=${MID}`).map(forbidden('devicebound topic is not device-to-cloud')),
    fc.constantFrom(`${events}/+`, `${events}/#`, `devices/+/messages/events/%24.mid=${MID}`, `${events}/%24.mid=${MID}&a=+`).map(forbidden('wildcard in a topic name [MQTT-3.3.2-2]')),
    fc.nat(40).map((n) => `${events}/%24.mid=${MID}&k=${'v'.repeat(n)}\u0000x`).map(forbidden('U+0000 in a topic name [MQTT-4.7.3-2]')),
    fc.constantFrom('%zz', '%', '%e0%a4%a', '%c3').map((p) => `${events}/%24.mid=${MID}&k=${p}`).map(forbidden('malformed percent-encoding in the property bag')),
    fc.constant(`${events}/%24.mid=${MID}&a=b/c`).map(forbidden('raw / inside the property bag')),
    fc.constantFrom(`${events}/%24.mid=${MID}&&x=1`, `${events}/=v&%24.mid=${MID}`, `${events}/%24.mid=${MID}&`).map(forbidden('empty key in the property bag')),
    fc.constant(`${events}/%24.mid=${MID}&k=${'x'.repeat(17 * 1024)}`).map(forbidden('property bag over 16 KiB')),
    fc.constant(`${events}/%24.mid=${MID}&${Array.from({ length: 130 }, (_, i) => `p${i}`).join('&')}`).map(forbidden('over 128 properties')),
    text(40).map((t) => `x/${t}`).map(forbidden('topic outside IoT Hub')),
    fc.constantFrom('$SYS/broker/clients', '$iothub/twin/GET/', '$iothub/twin/GET/?$rid=', '$iothub/methods/res/abc/?$rid=1', '$iothub/methods/POST/m/?$rid=1').map(forbidden('not a device-to-cloud IoT Hub request')),
    fc.constant(`Devices/${deviceId}/messages/events/%24.mid=${MID}`).map(forbidden('topics are case-sensitive')),
    fc.constant('').map(forbidden('empty topic name [MQTT-4.7.3-1]')),
  )
  return fc.oneof(
    { arbitrary: telemetry(true), weight: 10 },
    { arbitrary: telemetry(false), weight: 1 },
    { arbitrary: fc.constantFrom(events, `${events}/`).map((topic): TopicChoice => ({ topic, topicClass: { kind: 'telemetry' } })), weight: 1 },
    { arbitrary: iothub, weight: 2 },
    { arbitrary: refused, weight: 5 },
  )
})

export interface FilterChoice {
  topic: string
  /** Why a correct gateway refuses the filter, or null when it is one the device may use. */
  forbidden: string | null
}

export const subscribeFilter = memo((deviceId: string, otherId: string): fc.Arbitrary<FilterChoice> => {
  const allowed = fc
    .constantFrom(`devices/${deviceId}/messages/devicebound/#`, `devices/${deviceId}/messages/devicebound/+`, '$iothub/twin/res/#', '$iothub/twin/PATCH/properties/desired/#', '$iothub/methods/POST/#')
    .map((topic): FilterChoice => ({ topic, forbidden: null }))
  const no = (why: string) => (topic: string): FilterChoice => ({ topic, forbidden: why })
  const refused = fc.oneof(
    fc.constantFrom('#', '+', '+/+', '$SYS/#', '$iothub/#', 'devices/+/messages/devicebound/#', `devices/${deviceId}/messages/events/#`, `devices/${deviceId}/#`).map(no('filter outside the device allowlist')),
    fc.constant(`devices/${otherId}/messages/devicebound/#`).map(no('filter of another device')),
    fc.constantFrom('a/#/b', 'a/b#', `devices/${deviceId}/messages/devicebound/x+`).map(no('invalid wildcard use [MQTT-4.7.1-2]')),
    fc.constant('').map(no('empty topic filter [MQTT-4.7.3-1]')),
    fc.constant(`devices/${deviceId}/messages/devicebound/\u0000#`).map(no('U+0000 in a topic filter [MQTT-4.7.3-2]')),
    text(40).map(no('filter outside the device allowlist')),
  )
  return fc.oneof({ arbitrary: allowed, weight: 3 }, { arbitrary: refused, weight: 2 })
})

/** Payloads: small bytes mostly; JSON of all shapes for twin patches and method responses. */
export const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 20 },
  { arbitrary: fc.uint8Array({ maxLength: 2048 }), weight: 3 },
  { arbitrary: fc.json({ maxDepth: 4 }).map((j) => new Uint8Array(Buffer.from(j))), weight: 4 },
  // Deep nesting: a recursive parser or a depth check that recurses would overflow its stack.
  {
    arbitrary: fc.tuple(fc.integer({ min: 10, max: 30_000 }), fc.boolean()).map(([n, obj]) => new Uint8Array(Buffer.from(obj ? `${'{"a":'.repeat(n)}1${'}'.repeat(n)}` : `${'['.repeat(n)}${']'.repeat(n)}`))),
    weight: 1,
  },
  { arbitrary: fc.constantFrom('{', 'null', '[]', '"x"', '{"a":', ' ').map((s) => new Uint8Array(Buffer.from(s))), weight: 2 },
)

/** `arb` in `percent` of the values, `nil` in the others. */
export function sometimes<T, N extends null | undefined>(arb: fc.Arbitrary<T>, percent: number, nil: N): fc.Arbitrary<T | N> {
  if (percent <= 0) return fc.constant(nil)
  if (percent >= 100) return arb
  return fc.oneof({ arbitrary: fc.constant(nil), weight: 100 - percent }, { arbitrary: arb, weight: percent })
}
