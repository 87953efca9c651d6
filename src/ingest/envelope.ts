import type { Headers, OutgoingRecord } from '../stream/types.js'
import type { SystemProperties, SystemPropertyName } from '../protocol/property-bag.js'

export interface MessageProperties {
  system: SystemProperties
  /** Application properties in the order sent; a bare `key` has the value null. */
  app: Iterable<readonly [string, string | null]>
}

/** Stream header names of the system properties (README, "Stream records"). */
const SYSTEM_HEADERS: Record<SystemPropertyName, string> = {
  messageId: 'message-id',
  correlationId: 'correlation-id',
  userId: 'user-id',
  to: 'to',
  contentType: 'content-type',
  contentEncoding: 'content-encoding',
  expiryTimeUtc: 'expiry-time-utc',
  interfaceId: 'interface-id',
  outputName: 'output-name',
}

const SYSTEM_HEADER_ENTRIES = Object.entries(SYSTEM_HEADERS) as ReadonlyArray<readonly [SystemPropertyName, string]>

/** Header names the gateway sets itself; an application property may not overwrite them. */
export const RESERVED_HEADERS = new Set<string>(['device-id', 'enqueued-time', 'mqtt-retain', ...Object.values(SYSTEM_HEADERS)])

/** Prefix given to an application property whose name collides with a reserved header. */
export const APP_COLLISION_PREFIX = 'app.'

export interface TelemetryInput {
  deviceId: string
  payload: Buffer
  properties: MessageProperties
  enqueuedAt: number
  retain: boolean
}

/**
 * The telemetry record: key = device id, value = the payload bytes as sent, headers = who sent
 * it, when the gateway took it, and every property of the bag. An application property named like
 * a gateway header (say `device-id`) is kept under `app.<name>` so it can neither spoof the
 * header nor be lost. A bare `key` (null value) becomes an empty header value.
 */
export function buildTelemetryRecord(input: TelemetryInput): OutgoingRecord {
  const { app, system } = input.properties
  const noApp = app instanceof Map && app.size === 0
  if (noApp && !input.retain && !hasAny(system)) {
    // Most telemetry: a literal, so every such record shares one object shape.
    return { key: input.deviceId, value: input.payload, headers: { 'device-id': input.deviceId, 'enqueued-time': String(input.enqueuedAt) }, timestamp: input.enqueuedAt }
  }
  const headers: Headers = {}
  // Most telemetry has no properties: skip the walks (this runs once per message).
  if (!noApp) {
    for (const [name, value] of app) {
      const header = RESERVED_HEADERS.has(name) ? APP_COLLISION_PREFIX + name : name
      headers[header] = value ?? ''
    }
  }
  if (hasAny(system)) {
    for (const [field, header] of SYSTEM_HEADER_ENTRIES) {
      const value = system[field]
      if (value !== undefined) headers[header] = value
    }
  }
  headers['device-id'] = input.deviceId
  headers['enqueued-time'] = String(input.enqueuedAt)
  // IoT Hub does not retain; it tags the message instead (IoT Hub MQTT support, "Sending device-to-cloud messages").
  if (input.retain) headers['mqtt-retain'] = 'true'
  return { key: input.deviceId, value: input.payload, headers, timestamp: input.enqueuedAt }
}

function hasAny(object: object): boolean {
  for (const _key in object) return true
  return false
}
