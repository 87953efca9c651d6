/**
 * The records of the `device-events` stream topic, as the registry writes them to its outbox in
 * the transaction of the change they report (a device created or deleted, a connection recorded,
 * a twin section patched). Pure builders, shared by every registry backend, so that each writes
 * the same JSON.
 */

export type DeviceEventType = 'connected' | 'disconnected' | 'created' | 'deleted' | 'twin-reported' | 'twin-desired' | 'twin-tags'

/** The JSON value of a `device-events` record. */
export interface DeviceEvent {
  type: DeviceEventType
  deviceId: string
  /** Per-device sequence of connection events (connected/disconnected). */
  sequence?: number
  time: string
  /** Why a connection ended: a broker DisconnectReason, or `gateway-restart`. */
  reason?: string
  connectionId?: string
  remoteAddress?: string
  transport?: string
  authMethod?: string
  /** Event-specific facts (twin versions, ...). */
  details?: Record<string, unknown>
}

/** What the broker knows of a connection, written with its connected/disconnected event. */
export interface ConnectionFacts {
  connectionId?: string
  remoteAddress?: string
  transport?: string
  authMethod?: string
  /** Why it closed (disconnected only). */
  reason?: string
}

/** An outbox row claimed for writing to the stream. */
export interface PendingDeviceEvent {
  id: number
  event: DeviceEvent
}

/** Why the devices still marked connected at gateway start are disconnected. */
export const GATEWAY_RESTART = 'gateway-restart'

/** A connected or disconnected event; `sequence` is null when the device is no longer registered. */
export function connectionEvent(deviceId: string, type: 'connected' | 'disconnected', at: Date, sequence: number | null, facts: ConnectionFacts): DeviceEvent {
  const event: DeviceEvent = { type, deviceId, time: at.toISOString() }
  if (facts.connectionId !== undefined) event.connectionId = facts.connectionId
  if (facts.remoteAddress !== undefined) event.remoteAddress = facts.remoteAddress
  if (facts.transport !== undefined) event.transport = facts.transport
  if (facts.authMethod !== undefined) event.authMethod = facts.authMethod
  if (sequence !== null) event.sequence = sequence
  if (facts.reason !== undefined && type === 'disconnected') event.reason = facts.reason
  return event
}

export function registryEvent(deviceId: string, type: 'created' | 'deleted', at: Date): DeviceEvent {
  return { type, deviceId, time: at.toISOString() }
}

/** A twin section changed: its new version and the patch that made it. */
export function twinEvent(deviceId: string, section: 'desired' | 'reported' | 'tags', version: number, patch: Record<string, unknown>, at: Date): DeviceEvent {
  return { type: `twin-${section}`, deviceId, details: { version, patch }, time: at.toISOString() }
}
