/**
 * The DeviceRegistry port: device identities, credentials, status and connection state.
 * SqliteDeviceRegistry implements it; later PostgreSQL. One contract suite
 * (test/contract/device-registry.contract.ts) runs against every implementation.
 *
 * It also keeps the outbox of the `device-events` topic: every change that is a device event
 * (create, remove, recordConnection, resetConnections, patchTwin) writes its event in the same
 * transaction as the change, so a change is never without its event and no event is without its
 * change, whether or not the stream is up. A writer (DeviceEventWriter) claims the rows, appends
 * them to the stream and removes them, as the command store's feedback outbox.
 */

import type { ConnectionFacts, PendingDeviceEvent } from './device-event.js'
import type { Twin, TwinProperties, TwinSectionName } from './twin-document.js'

export type { ConnectionFacts, DeviceEvent, DeviceEventType, PendingDeviceEvent } from './device-event.js'
export type { Twin, TwinProperties, TwinSection, TwinSectionName } from './twin-document.js'

export interface TwinPatchOptions {
  /** Largest section after the patch, in bytes of JSON (E_TWIN_TOO_LARGE past it). */
  maxBytes: number
  /** Levels of objects and arrays below the patch's root (E_TWIN_TOO_DEEP past it; commands.maxTwinDepth). */
  maxDepth: number
  /** Optimistic concurrency: the section's current version must equal this (E_TWIN_VERSION_MISMATCH). */
  ifVersion?: number
}

export type DeviceStatus = 'enabled' | 'disabled'
export type AuthMethod = 'sas' | 'password' | 'x509-thumbprint' | 'x509-ca'
export type ConnectionState = 'connected' | 'disconnected'

export interface Device {
  deviceId: string
  status: DeviceStatus
  authMethod: AuthMethod
  /** base64 of 32 random bytes. */
  primaryKey: string
  secondaryKey: string
  /** scrypt hash record (`scrypt$N$r$p$salt$hash`), or null when the device has no password. */
  passwordHash: string | null
  createdAt: string
  updatedAt: string
  lastActivityAt: string | null
  connectionState: ConnectionState
  connectionStateUpdatedAt: string | null
  /** Increases by one for every connected/disconnected event of this device. */
  connectionSeq: number
  /** SHA-256 thumbprint (upper-case hex) of an `x509-thumbprint` device's certificate, else null. */
  x509Thumbprint: string | null
}

/** What the API and CLI show: never the password hash. Keys are shown to the admin only. */
export type DeviceView = Omit<Device, 'passwordHash'> & { hasPassword: boolean }

export interface CreateDeviceInput {
  deviceId: string
  authMethod?: AuthMethod
  status?: DeviceStatus
  /** Optional caller-chosen keys (base64, 16..64 bytes); generated when absent. */
  primaryKey?: string
  secondaryKey?: string
  /** Plain password; stored only as a scrypt hash. Required when authMethod is 'password'. */
  password?: string
  /** SHA-256 thumbprint of the device certificate; required for (and only for) 'x509-thumbprint'. */
  thumbprint?: string
}

export type KeyName = 'primary' | 'secondary' | 'both'

export interface DeviceRegistry {
  start(): Promise<void>
  stop(): Promise<void>
  /** Writes a `created` event. */
  create(input: CreateDeviceInput): Promise<Device>
  /** null when unknown. */
  get(deviceId: string): Promise<Device | null>
  list(options?: { limit?: number; after?: string; prefix?: string }): Promise<Device[]>
  /** Writes a `deleted` event. Rejects E_DEVICE_NOT_FOUND (and writes nothing). */
  remove(deviceId: string): Promise<void>
  setStatus(deviceId: string, status: DeviceStatus): Promise<Device>
  /** Replace a key (or both) with new random ones; the old key stops working at once. */
  rotateKey(deviceId: string, which: KeyName): Promise<Device>
  setPassword(deviceId: string, password: string | null): Promise<Device>
  /**
   * Record a connect or disconnect and its `connected`/`disconnected` event with the new
   * connection sequence number and `facts`; returns that number. A device no longer registered
   * (removed while connected) has no sequence: null, and the event is written without one.
   *
   * A `connected` with `facts.connectionId` makes that connection the device's current one. A
   * `disconnected` of another connection (one that was replaced, on this gateway or on another
   * instance, and whose end is recorded after the new one's start) is written as an event and
   * leaves the state as it is: a late message from the old connection never marks the device
   * offline while its new connection lives.
   */
  recordConnection(deviceId: string, state: ConnectionState, at: Date, facts?: ConnectionFacts): Promise<number | null>
  /**
   * Mark every device disconnected (at gateway start, after a crash), each with a `disconnected`
   * event (reason `gateway-restart`, the new sequence number). Returns the ids changed, in byte
   * order.
   *
   * `onlyDevices` narrows it to those ids (of those, the ones connected; unknown ids are
   * ignored, an empty list changes nothing). Several gateways on one database need it: an
   * instance that restarts resets only the devices it held, not those connected to the others.
   */
  resetConnections(at: Date, onlyDevices?: readonly string[]): Promise<string[]>
  touch(deviceId: string, at: Date): Promise<void>
  /** The device's twin; null when the device is unknown. */
  getTwin(deviceId: string): Promise<Twin | null>
  /**
   * Merge a patch into one twin section (null deletes a key) and bump its version, atomically,
   * with a `twin-desired`/`twin-reported` event (details: the new version and the patch).
   * Rejects E_DEVICE_NOT_FOUND, E_BAD_REQUEST, E_TWIN_TOO_DEEP (checked first, without recursion),
   * E_TWIN_TOO_LARGE, E_TWIN_VERSION_MISMATCH; a refused patch changes nothing.
   */
  patchTwin(deviceId: string, section: TwinSectionName, patch: TwinProperties, options: TwinPatchOptions): Promise<Twin>
  /**
   * Claim up to `limit` unclaimed outbox events, oldest first, for `claimMs` (default 30 s; a
   * claim that lapses makes the rows claimable again). Per-device order holds across writers: an
   * event is not handed out while an older event of its device is claimed by another writer.
   */
  pendingEvents(limit: number, claimMs?: number): Promise<PendingDeviceEvent[]>
  /** Written to the stream: delete. */
  removeEvents(ids: number[]): Promise<void>
  /** Not written (stream down): give the claim back for the next attempt. */
  releaseEvents(ids: number[]): Promise<void>
  /** Events in the outbox, claimed or not. */
  pendingEventCount(): Promise<number>
}

/**
 * IoT Hub's device id characters: up to 128 of [A-Za-z0-9-.%_*?!(),:=@$']. Registration also
 * refuses the ids `.` and `..` (validation.ts: URL clients drop them from a path).
 */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/

export function toDeviceView(device: Device): DeviceView {
  const { passwordHash, ...rest } = device
  return { ...rest, hasPassword: passwordHash !== null }
}
