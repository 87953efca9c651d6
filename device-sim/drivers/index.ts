import type { DeviceDriver, DriverOptions } from './types.js'
import { MqttJsDriver } from './mqtt-driver.js'

/**
 * Drivers are chosen here and nowhere else. The Azure SDK is a development dependency of this
 * package and heavy per device, so it is loaded only when a group asks for it.
 */
export type DriverName = 'mqtt' | 'azure'
export type DriverFactory = (options: DriverOptions) => DeviceDriver

export async function driverFactory(name: DriverName): Promise<DriverFactory> {
  if (name === 'mqtt') return (options) => new MqttJsDriver(options)
  const { loadAzureDriver } = await import('./azure-driver.js')
  return await loadAzureDriver()
}
