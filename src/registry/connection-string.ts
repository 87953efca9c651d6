import type { Device } from './types.js'

/**
 * The IoT Hub device connection string an SDK device is configured with. Only SAS devices get
 * one: a password device connects with its id and password instead (see the CLI's note).
 */
export function deviceConnectionString(hostname: string, device: Pick<Device, 'deviceId' | 'authMethod' | 'primaryKey'>): string | null {
  if (device.authMethod !== 'sas') return null
  return `HostName=${hostname};DeviceId=${device.deviceId};SharedAccessKey=${device.primaryKey}`
}
