import type { ConnectionState, Device, DeviceStatus, Twin, TwinProperties } from './types.js'

/**
 * Rows of the PostgreSQL registry as pg returns them (columns as in postgres-schema.ts) and their
 * mapping to the port's values, which must equal what the SQLite adapter returns: TIMESTAMPTZ
 * arrives as a Date (written with millisecond precision, so toISOString gives back the string
 * SQLite keeps), BIGINT as a decimal string.
 */

export interface PgDeviceRow {
  device_id: string
  status: DeviceStatus
  auth_method: Device['authMethod']
  primary_key: string
  secondary_key: string
  password_hash: string | null
  created_at: Date
  updated_at: Date
  last_activity_at: Date | null
  connection_state: ConnectionState
  connection_state_updated_at: Date | null
  connection_seq: string
  x509_thumbprint: string | null
}

export interface PgTwinRow {
  device_id: string
  twin_desired: string
  twin_desired_version: number
  twin_reported: string
  twin_reported_version: number
  twin_tags: string
  twin_tags_version: number
}

export const DEVICE_COLUMNS =
  'device_id, status, auth_method, primary_key, secondary_key, password_hash, created_at, updated_at, last_activity_at, connection_state, connection_state_updated_at, connection_seq, x509_thumbprint'
export const TWIN_COLUMNS = 'device_id, twin_desired, twin_desired_version, twin_reported, twin_reported_version, twin_tags, twin_tags_version'

export function toDevice(row: PgDeviceRow): Device {
  return {
    deviceId: row.device_id,
    status: row.status,
    authMethod: row.auth_method,
    primaryKey: row.primary_key,
    secondaryKey: row.secondary_key,
    passwordHash: row.password_hash,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    lastActivityAt: row.last_activity_at?.toISOString() ?? null,
    connectionState: row.connection_state,
    connectionStateUpdatedAt: row.connection_state_updated_at?.toISOString() ?? null,
    connectionSeq: Number(row.connection_seq),
    x509Thumbprint: row.x509_thumbprint,
  }
}

export function toTwin(row: PgTwinRow): Twin {
  return {
    deviceId: row.device_id,
    desired: { version: row.twin_desired_version, properties: JSON.parse(row.twin_desired) as TwinProperties },
    reported: { version: row.twin_reported_version, properties: JSON.parse(row.twin_reported) as TwinProperties },
    tags: { version: row.twin_tags_version, properties: JSON.parse(row.twin_tags) as TwinProperties },
  }
}

/**
 * Whether PostgreSQL can hold `text` as a TEXT value at all: it refuses U+0000 (SQLSTATE 22021),
 * where SQLite stores it. No registered id or name contains one (their rules refuse it), so a
 * lookup by such a string answers "not found" without asking, as SQLite's lookup would.
 */
export function storable(text: string): boolean {
  return !text.includes('\u0000')
}
