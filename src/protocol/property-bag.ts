import { GatewayError } from '../errors/catalogue.js'

/**
 * IoT Hub message property bags: the last topic level of telemetry
 * (`devices/{id}/messages/events/{bag}`) and cloud-to-device
 * (`devices/{id}/messages/devicebound/{bag}`) topics. See IoT Hub MQTT support, "Sending device-to-cloud messages" and "Receiving cloud-to-device messages".
 *
 * Wire grammar: `k=v` pairs joined by `&`; keys and values percent-encoded; a bare `k` is a
 * null value and `k=` an empty string. `+` is NOT a space (decodeURIComponent, not
 * form-decoding): the Node SDK encodes with encodeURIComponent and querystring, both of which
 * write a space as `%20`.
 */

/** The IoT Hub system properties carried in a bag, by their `$.` wire key. */
export const SYSTEM_PROPERTY_KEYS = {
  '$.mid': 'messageId',
  '$.cid': 'correlationId',
  '$.uid': 'userId',
  '$.to': 'to',
  '$.ct': 'contentType',
  '$.ce': 'contentEncoding',
  '$.exp': 'expiryTimeUtc',
  '$.ifid': 'interfaceId',
  '$.on': 'outputName',
} as const

export type SystemPropertyName = (typeof SYSTEM_PROPERTY_KEYS)[keyof typeof SYSTEM_PROPERTY_KEYS]
export type SystemProperties = Partial<Record<SystemPropertyName, string>>

/** The Node SDK sends the application property `dt-subject` under the system-style key `$.sub`. */
export const SUBJECT_WIRE_KEY = '$.sub'
export const SUBJECT_PROPERTY = 'dt-subject'

export interface PropertyBag {
  readonly system: Readonly<SystemProperties>
  /** Application properties in wire order; null is a bare key (`k`), '' is `k=`. */
  readonly application: ReadonlyMap<string, string | null>
}

/** A bag being parsed. */
interface MutableBag {
  system: SystemProperties
  application: Map<string, string | null>
}

/** The bag of a topic without properties, shared by every such message (read-only by its type). */
const EMPTY_BAG: PropertyBag = Object.freeze({ system: Object.freeze({}), application: new Map() })

export interface PropertyBagInput {
  system?: SystemProperties
  application?: ReadonlyMap<string, string | null> | Readonly<Record<string, string | null>>
}

export interface PropertyBagLimits {
  /** Longest bag accepted, in characters as on the wire (percent-encoded). */
  maxLength: number
  /** Most `k=v` pairs accepted. */
  maxProperties: number
}

/**
 * Our own limits, not IoT Hub's (the hub counts properties inside its 256 KB message limit).
 * They bound the work one PUBLISH can cause while staying far above what SDKs send.
 */
export const DEFAULT_PROPERTY_BAG_LIMITS: Readonly<PropertyBagLimits> = Object.freeze({
  maxLength: 16 * 1024,
  maxProperties: 128,
})

const WIRE_KEY_BY_NAME = new Map<SystemPropertyName, string>(
  Object.entries(SYSTEM_PROPERTY_KEYS).map(([wire, name]) => [name, wire]),
)

function invalid(reason: string, details?: Record<string, unknown>): GatewayError {
  return new GatewayError('E_PROPERTY_BAG_INVALID', `Invalid property bag: ${reason}`, { reason, ...details })
}

function decode(part: string, index: number): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw invalid('malformed percent-encoding', { index })
  }
}

function isSystemKey(key: string): key is keyof typeof SYSTEM_PROPERTY_KEYS {
  return Object.hasOwn(SYSTEM_PROPERTY_KEYS, key)
}

/**
 * Parse one bag (without the topic prefix). Decisions:
 * - A raw `/` is rejected: IoT Hub needs every value percent-encoded (the SDKs read the bag as
 *   one topic level), so a raw `/` means a broken encoder. Callers strip a single trailing `/`
 *   first (the C SDK ends module output bags with `$.on=<name>/`).
 * - Empty keys (`&&`, `=v`, a trailing `&`) are rejected, as IoT Hub's own tokenizer does
 *   (Microsoft.Azure.Devices.Client UrlEncodedDictionarySerializer: "Unexpected character").
 * - A value runs from the first `=` to the next `&`; a further raw `=` stays in the value (the C
 *   SDK does not encode values unless `auto_url_encode_decode` is set, so base64 padding arrives raw).
 * - Duplicate keys: the last one wins, keeping the position of the first. That is what IoT Hub's
 *   tokenizer (`output[key] = value`) and the Node SDK's createDictionary do.
 * - A system property with no value (`$.mid` or `$.mid=`) is dropped: the hub's tokenizer reads
 *   both as null, i.e. the property is absent. `$.sub` maps to the application property
 *   `dt-subject`. Unknown `$.`-keys (e.g. the C SDK's `$.diagid`) stay application properties.
 */
export function parsePropertyBag(bag: string, limits: PropertyBagLimits = DEFAULT_PROPERTY_BAG_LIMITS): PropertyBag {
  // Most telemetry has no bag: one shared, frozen result instead of two new objects per message.
  if (bag === '') return EMPTY_BAG
  const result: MutableBag = { system: {}, application: new Map() }
  if (bag.length > limits.maxLength) throw invalid('too long', { length: bag.length, max: limits.maxLength })
  if (bag.includes('/')) throw invalid('raw "/" (values must be percent-encoded)')
  const pairs = bag.split('&')
  if (pairs.length > limits.maxProperties) {
    throw invalid('too many properties', { count: pairs.length, max: limits.maxProperties })
  }
  pairs.forEach((pair, index) => {
    const eq = pair.indexOf('=')
    const rawKey = eq < 0 ? pair : pair.slice(0, eq)
    if (rawKey === '') throw invalid('empty key', { index })
    const key = decode(rawKey, index)
    const value = eq < 0 ? null : decode(pair.slice(eq + 1), index)
    addProperty(result, key, value)
  })
  return result
}

function addProperty(bag: MutableBag, key: string, value: string | null): void {
  if (isSystemKey(key)) {
    const name = SYSTEM_PROPERTY_KEYS[key]
    if (value === null || value === '') delete bag.system[name]
    else bag.system[name] = value
    return
  }
  bag.application.set(key === SUBJECT_WIRE_KEY ? SUBJECT_PROPERTY : key, value)
}

/**
 * Format a bag for a topic level: system keys first (fixed order), then application properties
 * in their order. Every key and value goes through encodeURIComponent, so `$` becomes `%24`
 * (exactly what IoT Hub itself sends, e.g. `%24.to=%2Fdevices%2F...`; the embedded C SDK
 * compares the raw `%24.mid`, the Node SDK decodes either form) and `/`, `&`, `=` are escaped
 * (the Node SDK takes the bag from the 5th `/`-segment and splits pairs on `=`).
 *
 * `dt-subject` is written as a plain application property, not `$.sub`: the SDKs' cloud-to-device
 * parsers do not map `$.sub` back. A null value is written as a bare key, the IoT Hub form; note
 * that the Node SDK then reports the string "undefined" (it decodes `split('=')[1]`).
 */
export function formatPropertyBag(props: PropertyBagInput): string {
  const parts: string[] = []
  const system = props.system ?? {}
  for (const [name, wireKey] of WIRE_KEY_BY_NAME) {
    const value = system[name]
    if (value !== undefined) parts.push(`${encode(wireKey)}=${encode(value)}`)
  }
  for (const [key, value] of applicationEntries(props.application)) {
    // A key the parser would read back as something else is refused rather than mangled.
    if (key === '' || isSystemKey(key) || key === SUBJECT_WIRE_KEY) throw invalid('reserved or empty application key', { key })
    parts.push(value === null ? encode(key) : `${encode(key)}=${encode(value)}`)
  }
  return parts.join('&')
}

function encode(text: string): string {
  try {
    return encodeURIComponent(text)
  } catch {
    // Only a lone UTF-16 surrogate makes encodeURIComponent throw.
    throw invalid('not well-formed Unicode')
  }
}

function applicationEntries(
  application: PropertyBagInput['application'],
): Iterable<readonly [string, string | null]> {
  if (application === undefined) return []
  if (application instanceof Map) return application.entries()
  return Object.entries(application as Readonly<Record<string, string | null>>)
}
