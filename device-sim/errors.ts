/**
 * The simulator's own error type. It is a separate product from the gateway, so it keeps its own
 * small catalogue; gateway errors it sees (HTTP bodies, CONNACK codes) are carried in `code` as
 * reported by the gateway, so a run's "errors by code" table reads the same as the gateway's logs.
 */
export type SimErrorCode =
  | 'E_SIM_USAGE'
  | 'E_SIM_SCENARIO'
  | 'E_SIM_CREDENTIALS'
  | 'E_SIM_API'
  | 'E_SIM_DRIVER_UNAVAILABLE'
  | 'E_SIM_STREAM'
  | 'E_SIM_WORKER'

export class SimError extends Error {
  constructor(
    readonly code: SimErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message)
    this.name = 'SimError'
  }
}

/**
 * A short, stable label for the "errors by code" table: CONNACK codes as `CONNACK_5`, Node
 * socket errors by errno (`ECONNREFUSED`), our own codes as they are; anything else `E_OTHER`.
 */
export function errorCode(err: unknown): string {
  if (err instanceof SimError) {
    // An API failure is labelled with the gateway's own code (E_DEVICE_OFFLINE, E_QUEUE_FULL, ...).
    const gatewayCode = err.details.code
    return typeof gatewayCode === 'string' && gatewayCode !== '' ? gatewayCode : err.code
  }
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'number') return `CONNACK_${code}`
    if (typeof code === 'string' && code !== '') return code
    const name = (err as { name?: unknown }).name
    if (typeof name === 'string' && name !== 'Error') return name
    // mqtt.js reports timeouts as plain Errors ('connack timeout', 'Keepalive timeout').
    const message = (err as { message?: unknown }).message
    if (typeof message === 'string' && /^[A-Za-z ]{1,40}$/.test(message)) return `MQTT_${message.trim().toUpperCase().replace(/ +/g, '_')}`
  }
  return 'E_OTHER'
}
