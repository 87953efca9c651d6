import { GatewayError } from '../errors/catalogue.js'
import { formatPropertyBag, parsePropertyBag, type PropertyBag, type PropertyBagInput } from './property-bag.js'

/**
 * The IoT Hub MQTT topic grammar as values (IoT Hub MQTT support, the topic of each feature). Device ids
 * are matched as literal strings, never spliced into a regular expression: IoT Hub ids may hold
 * `%`, `$`, `'`, `(`, `*`, `?`, ... .
 */

export const DEVICE_PUBLISH_KINDS = ['telemetry', 'twin-get', 'twin-patch-reported', 'method-response'] as const
export type DevicePublishKind = (typeof DEVICE_PUBLISH_KINDS)[number]
const ALL_PUBLISH_KINDS: ReadonlySet<DevicePublishKind> = new Set(DEVICE_PUBLISH_KINDS)

/**
 * The kinds the gateway serves: exactly IoT Hub's device publishes (IoT Hub MQTT support: a device publishes only telemetry, twin requests and method responses): telemetry,
 * twin GET, twin PATCH reported, method responses.
 */
export const ENABLED_PUBLISH_KINDS: ReadonlySet<DevicePublishKind> = ALL_PUBLISH_KINDS

export type DevicePublish =
  | { kind: 'telemetry'; bag: PropertyBag }
  | { kind: 'twin-get'; rid: string }
  | { kind: 'twin-patch-reported'; rid: string }
  | { kind: 'method-response'; status: number; rid: string }

/**
 * `$rid` is opaque and echoed verbatim (section 5), so it is kept as sent, not percent-decoded.
 * This set is the URL-unreserved characters plus sub-delims that cannot end the query pair
 * (no `&`, `=`, `/`, `?`) and `%` for encoded octets; it covers UUIDs (Node SDK) and the
 * decimal ids of the C SDK.
 */
const RID_PATTERN = /^[A-Za-z0-9\-._~%!$'()*,;:@]{1,128}$/
/** Method names are spliced into the request topic; the Node SDK reads them raw as the 4th level. */
const METHOD_NAME_PATTERN = /^[A-Za-z0-9\-._~!$()*,;:@]{1,128}$/
const STATUS_PATTERN = /^-?[0-9]{1,9}$/

function forbidden(reason: string, details?: Record<string, unknown>): GatewayError {
  return new GatewayError('E_TOPIC_FORBIDDEN', `Topic not allowed: ${reason}`, { reason, ...details })
}

/**
 * A device id is usable inside a topic only if it is one non-empty level with no wildcard and no
 * NUL ([MQTT-4.7.1-1], [MQTT-4.7.3-1], [MQTT-4.7.3-2]). IoT Hub's id rules already exclude these;
 * checking again keeps `devices/+/...` from ever being built from a bad id.
 */
/** IoT Hub's own topics (twins, methods) start with this; everything else a device sends is telemetry. */
export function isIotHubTopic(topic: string): boolean {
  return topic.startsWith('$iothub/')
}

export function isTopicSafeDeviceId(deviceId: string): boolean {
  return deviceId.length > 0 && !/[/+#]/.test(deviceId) && !deviceId.includes('\u0000')
}

function splitQuery(topic: string): { path: string; query: Map<string, string> | null } {
  const q = topic.indexOf('?')
  if (q < 0) return { path: topic, query: null }
  const query = new Map<string, string>()
  for (const pair of topic.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=')
    // Unknown or odd extra parameters are tolerated; only `$rid` is read.
    query.set(eq < 0 ? pair : pair.slice(0, eq), eq < 0 ? '' : pair.slice(eq + 1))
  }
  return { path: topic.slice(0, q), query }
}

function requireRid(query: Map<string, string> | null): string {
  const rid = query?.get('$rid')
  if (rid === undefined || !RID_PATTERN.test(rid)) throw forbidden('missing or invalid $rid')
  return rid
}

const EVENTS = '/messages/events'
const BARE_TELEMETRY: DevicePublish = Object.freeze({ kind: 'telemetry', bag: parsePropertyBag('') })

/**
 * `devices/{id}/messages/events` or the same with a `/`: telemetry without a property bag. With a
 * topic-safe id nothing else in it can hold a wildcard or NUL.
 */
function isBareTelemetryTopic(topic: string, deviceId: string): boolean {
  const length = 8 + deviceId.length + EVENTS.length
  if (topic.length !== length && (topic.length !== length + 1 || topic.charCodeAt(length) !== 0x2f)) return false
  return topic.startsWith('devices/') && topic.startsWith(deviceId, 8) && topic.startsWith(EVENTS, 8 + deviceId.length)
}

/** `devices/{id}/messages/events[/{bag}]`; returns the bag text or null when not a telemetry topic. */
function telemetryBag(topic: string, deviceId: string): string | null {
  const prefix = `devices/${deviceId}/messages/events`
  if (topic === prefix) return ''
  if (!topic.startsWith(`${prefix}/`)) return null
  const rest = topic.slice(prefix.length + 1)
  // The C SDK closes module-output bags with a `/`; IoT Hub's tokenizer stops there.
  return rest.endsWith('/') ? rest.slice(0, -1) : rest
}

function parseIotHubTopic(topic: string): DevicePublish {
  const { path, query } = splitQuery(topic)
  // The SDKs put a `/` before `?`; section 6 notes it is optional, so accept both.
  const p = path.endsWith('/') ? path.slice(0, -1) : path
  if (p === '$iothub/twin/GET') return { kind: 'twin-get', rid: requireRid(query) }
  if (p === '$iothub/twin/PATCH/properties/reported') return { kind: 'twin-patch-reported', rid: requireRid(query) }
  const methodPrefix = '$iothub/methods/res/'
  if (p.startsWith(methodPrefix)) {
    const status = p.slice(methodPrefix.length)
    if (!STATUS_PATTERN.test(status)) throw forbidden('method response status is not an integer')
    return { kind: 'method-response', status: Number(status), rid: requireRid(query) }
  }
  throw forbidden('not a device-to-cloud IoT Hub topic')
}

/**
 * Classify a PUBLISH from the authenticated device `deviceId`. Anything else, including another
 * device's telemetry topic, is E_TOPIC_FORBIDDEN (IoT Hub closes the connection, section 3).
 * `allowedKinds` lets the caller refuse kinds it does not serve yet (default: all parse).
 */
export function parseDevicePublishTopic(
  topic: string,
  deviceId: string,
  allowedKinds: ReadonlySet<DevicePublishKind> = ALL_PUBLISH_KINDS,
): DevicePublish {
  // Most telemetry: `devices/{id}/messages/events[/]` with no bag, checked without building a string.
  if (isBareTelemetryTopic(topic, deviceId) && allowedKinds.has('telemetry') && isTopicSafeDeviceId(deviceId)) return BARE_TELEMETRY
  if (!isTopicSafeDeviceId(deviceId)) throw forbidden('device id cannot appear in a topic')
  // [MQTT-3.3.2-2] topic names carry no wildcards; [MQTT-4.7.3-2] no NUL.
  if (/[+#]/.test(topic) || topic.includes('\u0000')) throw forbidden('wildcard or NUL in a topic name')
  const publish = classify(topic, deviceId)
  if (!allowedKinds.has(publish.kind)) throw forbidden('kind not enabled', { kind: publish.kind })
  return publish
}

function classify(topic: string, deviceId: string): DevicePublish {
  const bag = telemetryBag(topic, deviceId)
  if (bag !== null) return { kind: 'telemetry', bag: parsePropertyBag(bag) }
  if (topic.startsWith('$iothub/')) return parseIotHubTopic(topic)
  return unknownTopic(topic, deviceId)
}

function unknownTopic(topic: string, deviceId: string): never {
  const own = topic.startsWith(`devices/${deviceId}/`)
  throw forbidden(own ? 'not a device-to-cloud topic' : 'topic of another device or outside IoT Hub')
}

/**
 * SUBSCRIBE allowlist (section 7). Exactly the filters the SDKs use, plus one narrower form:
 * `devices/{id}/messages/devicebound/+`. Every cloud-to-device bag is percent-encoded into a
 * single topic level (section 4), so `+` receives the same messages as `#` and grants nothing
 * more; refusing it would only break a hand-written client. No other `+` form is allowed: the `$iothub/...` topics carry a `?$rid=` level
 * a `+` filter would silently miss, and a filter that never matches breaks the feature silently
 * (the SDK treats SUBACK 0x80 as success).
 */
export function isAllowedSubscription(filter: string, deviceId: string): boolean {
  if (!isTopicSafeDeviceId(deviceId)) return false
  const c2d = `devices/${deviceId}/messages/devicebound/`
  return (
    filter === `${c2d}#` ||
    filter === `${c2d}+` ||
    filter === '$iothub/twin/res/#' ||
    filter === '$iothub/twin/PATCH/properties/desired/#' ||
    filter === '$iothub/methods/POST/#'
  )
}

/** Cloud-to-device delivery topic: `devices/{id}/messages/devicebound/{bag}` (trailing `/` kept when empty). */
export function formatDeviceboundTopic(deviceId: string, bag: PropertyBagInput): string {
  if (!isTopicSafeDeviceId(deviceId)) {
    throw new GatewayError('E_DEVICE_ID_INVALID', 'The device id cannot appear in a topic', { reason: 'topic-unsafe' })
  }
  return `devices/${deviceId}/messages/devicebound/${formatPropertyBag(bag)}`
}

function checkRid(rid: string): string {
  if (!RID_PATTERN.test(rid)) throw new GatewayError('E_INTERNAL', 'Invalid $rid for a response topic')
  return rid
}

function checkInteger(value: number, min: number, max: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new GatewayError('E_INTERNAL', `Invalid ${what} for a topic`, { [what]: value })
  }
  return value
}

/** Twin response: `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]` (section 5). */
export function formatTwinResponseTopic(status: number, rid: string, version?: number): string {
  const base = `$iothub/twin/res/${checkInteger(status, 100, 599, 'status')}/?$rid=${checkRid(rid)}`
  return version === undefined ? base : `${base}&$version=${checkInteger(version, 0, Number.MAX_SAFE_INTEGER, 'version')}`
}

/** Desired-properties notification: `$iothub/twin/PATCH/properties/desired/?$version={v}`. */
export function formatDesiredPatchTopic(version: number): string {
  return `$iothub/twin/PATCH/properties/desired/?$version=${checkInteger(version, 0, Number.MAX_SAFE_INTEGER, 'version')}`
}

/**
 * Direct method request: `$iothub/methods/POST/{name}/?$rid={rid}` (section 6). The name comes
 * from an API caller, hence E_BAD_REQUEST; it must be one topic level the SDK reads back unchanged
 * (its legacy url.parse escapes quotes, spaces and braces).
 */
export function formatMethodRequestTopic(name: string, rid: string): string {
  if (!METHOD_NAME_PATTERN.test(name)) {
    throw new GatewayError('E_BAD_REQUEST', 'Invalid method name (1 to 128 of A-Z a-z 0-9 - . _ ~ ! $ ( ) * , ; : @)')
  }
  return `$iothub/methods/POST/${name}/?$rid=${checkRid(rid)}`
}
