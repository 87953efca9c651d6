/**
 * The DeviceRegistry port: device identities, credentials, status and connection state.
 * SqliteDeviceRegistry implements it; later PostgreSQL. One contract suite
 * (test/contract/device-registry.contract.ts) runs against every implementation.
 */

import type { Twin, TwinProperties, TwinSectionName } from './twin-document.js'

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
  create(input: CreateDeviceInput): Promise<Device>
  /** null when unknown. */
  get(deviceId: string): Promise<Device | null>
  list(options?: { limit?: number; after?: string }): Promise<Device[]>
  /** Rejects E_DEVICE_NOT_FOUND. */
  remove(deviceId: string): Promise<void>
  setStatus(deviceId: string, status: DeviceStatus): Promise<Device>
  /** Replace a key (or both) with new random ones; the old key stops working at once. */
  rotateKey(deviceId: string, which: KeyName): Promise<Device>
  setPassword(deviceId: string, password: string | null): Promise<Device>
  /**
   * Record a connect or disconnect; returns the device's new connection sequence number
   * (null when the device no longer exists).
   */
  recordConnection(deviceId: string, state: ConnectionState, at: Date): Promise<number | null>
  /** Mark every device disconnected (at gateway start, after a crash). Returns the ids changed. */
  resetConnections(at: Date): Promise<string[]>
  touch(deviceId: string, at: Date): Promise<void>
  /** The device's twin; null when the device is unknown. */
  getTwin(deviceId: string): Promise<Twin | null>
  /**
   * Merge a patch into one twin section (null deletes a key) and bump its version, atomically.
   * Rejects E_DEVICE_NOT_FOUND, E_BAD_REQUEST, E_TWIN_TOO_DEEP (checked first, without recursion),
   * E_TWIN_TOO_LARGE, E_TWIN_VERSION_MISMATCH; a refused patch changes nothing.
   */
  patchTwin(deviceId: string, section: TwinSectionName, patch: TwinProperties, options: TwinPatchOptions): Promise<Twin>
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
