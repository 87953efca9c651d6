import type { Device } from './types.js'

/**
 * The IoT Hub device connection string an SDK device is configured with. SAS devices get one
 * with their key, X.509 devices the SDK's `x509=true` form (certificate and key go to
 * setOptions); a password device connects with its id and password instead (see the CLI's note).
 */
export function deviceConnectionString(hostname: string, device: Pick<Device, 'deviceId' | 'authMethod' | 'primaryKey'>): string | null {
  if (device.authMethod === 'x509-thumbprint' || device.authMethod === 'x509-ca') return `HostName=${hostname};DeviceId=${device.deviceId};x509=true`
  if (device.authMethod !== 'sas') return null
  return `HostName=${hostname};DeviceId=${device.deviceId};SharedAccessKey=${device.primaryKey}`
}
