import BetterSqlite3 from 'better-sqlite3'
import type { ConnectionState, Device, DeviceStatus, Twin, TwinProperties } from './types.js'

/** Rows of registry.db as SQLite returns them (column names as in sqlite-schema.ts), and their mapping. */

export interface DeviceRow {
  device_id: string
  status: DeviceStatus
  auth_method: Device['authMethod']
  primary_key: string
  secondary_key: string
  password_hash: string | null
  created_at: string
  updated_at: string
  last_activity_at: string | null
  connection_state: ConnectionState
  connection_state_updated_at: string | null
  connection_seq: number
  x509_thumbprint: string | null
}

export interface TwinRow {
  device_id: string
  twin_desired: string
  twin_desired_version: number
  twin_reported: string
  twin_reported_version: number
  twin_tags: string
  twin_tags_version: number
}

export const SELECT_DEVICE = 'SELECT * FROM devices WHERE device_id = ?'
export const SELECT_TWIN = 'SELECT device_id, twin_desired, twin_desired_version, twin_reported, twin_reported_version, twin_tags, twin_tags_version FROM devices WHERE device_id = ?'

export function toTwin(row: TwinRow): Twin {
  return {
    deviceId: row.device_id,
    desired: { version: row.twin_desired_version, properties: JSON.parse(row.twin_desired) as TwinProperties },
    reported: { version: row.twin_reported_version, properties: JSON.parse(row.twin_reported) as TwinProperties },
    tags: { version: row.twin_tags_version, properties: JSON.parse(row.twin_tags) as TwinProperties },
  }
}

export function toDevice(row: DeviceRow): Device {
  return {
    deviceId: row.device_id,
    status: row.status,
    authMethod: row.auth_method,
    primaryKey: row.primary_key,
    secondaryKey: row.secondary_key,
    passwordHash: row.password_hash,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastActivityAt: row.last_activity_at,
    connectionState: row.connection_state,
    connectionStateUpdatedAt: row.connection_state_updated_at,
    connectionSeq: row.connection_seq,
    x509Thumbprint: row.x509_thumbprint,
  }
}

/** better-sqlite3 throws SqliteError with a string `code` such as SQLITE_BUSY. */
export function sqliteCode(err: unknown): string | undefined {
  if (err instanceof BetterSqlite3.SqliteError) return err.code
  return undefined
}
