import type { DeviceView } from '../registry/types.js'
import type { IssuedDevice } from './device-admin.js'

/** Human output of `streamgate devices`: aligned columns and `key: value` blocks. */

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

export function formatDeviceList(devices: DeviceView[], source: string): string {
  if (devices.length === 0) return `no devices in ${source}\n`
  return formatTable(
    ['DEVICE ID', 'STATUS', 'AUTH', 'CONNECTION', 'LAST ACTIVITY'],
    devices.map((d) => [d.deviceId, d.status, d.authMethod, d.connectionState, d.lastActivityAt ?? '-']),
  )
}

export function formatDevice(d: DeviceView): string {
  const fields: Array<[string, string]> = [
    ['device id', d.deviceId],
    ['status', d.status],
    ['auth method', d.authMethod],
    ['password', d.hasPassword ? 'set' : 'none'],
    ...(d.x509Thumbprint ? [['thumbprint', d.x509Thumbprint] as [string, string]] : []),
    ['primary key', d.primaryKey],
    ['secondary key', d.secondaryKey],
    ['connection', `${d.connectionState}${d.connectionStateUpdatedAt ? ` since ${d.connectionStateUpdatedAt}` : ''}`],
    ['connection seq', String(d.connectionSeq)],
    ['last activity', d.lastActivityAt ?? '-'],
    ['created', d.createdAt],
    ['updated', d.updatedAt],
  ]
  const width = Math.max(...fields.map(([k]) => k.length)) + 1
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n') + '\n'
}

/** After add or rotate-key: the connection string on a line of its own, easy to copy. */
export function formatIssued(verb: string, issued: IssuedDevice, hostname: string): string {
  const d = issued.device
  const head = `${verb} device ${d.deviceId} (${d.authMethod}, ${d.status}).`
  if (issued.connectionString && d.authMethod.startsWith('x509')) {
    return `${head} Connection string (certificate and key go to the SDK's setOptions({ cert, key })):\n${issued.connectionString}\n`
  }
  if (issued.connectionString) return `${head} Connection string:\n${issued.connectionString}\n`
  return (
    `${head}\nIt has no connection string: it connects with MQTT client id "${d.deviceId}", ` +
    `user name "${hostname}/${d.deviceId}/?api-version=2021-04-12" (or just "${d.deviceId}") and its password.\n`
  )
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n'
}
