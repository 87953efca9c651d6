import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ConnectionContext, DeviceChannel } from '../broker/ports.js'
import { GatewayError } from '../errors/catalogue.js'
import { formatMethodRequestTopic } from '../protocol/topics.js'
import type { DeviceRegistry } from '../registry/types.js'

export interface MethodRequest {
  payload?: unknown
  /** 5..300 s, default 30 (IoT Hub MQTT support, "Respond to a direct method"). */
  responseTimeoutSeconds: number
  /** 0..300 s, default 0: how long to wait for the device to come online first. */
  connectTimeoutSeconds: number
}

export interface MethodResult {
  status: number
  payload: unknown
}

interface Pending {
  deviceId: string
  resolve: (result: MethodResult) => void
  reject: (err: GatewayError) => void
}

const METHODS_FILTER_PROBE = '$iothub/methods/POST/probe/?$rid=0'

/**
 * Direct methods (IoT Hub MQTT support, "Respond to a direct method"): `$iothub/methods/POST/{name}/?$rid={rid}` at QoS 0 to the one
 * connection of the device, answered by its `$iothub/methods/res/{status}/?$rid={rid}`.
 * Fails fast with E_DEVICE_OFFLINE when the device is not connected and subscribed (after waiting
 * connectTimeout), E_METHOD_TIMEOUT when no answer comes in time.
 */
export class MethodInvoker {
  private readonly pending = new Map<string, Pending>()
  private stopped = false

  constructor(
    private readonly channel: DeviceChannel,
    private readonly registry: Pick<DeviceRegistry, 'get'>,
    private readonly maxPayloadBytes: number,
    private readonly pollMs = 50,
    /** Told how each call ended: 'answered' (with the round trip in seconds) or the error code. */
    private readonly observe: (result: string, seconds?: number) => void = () => {},
  ) {}

  async invoke(deviceId: string, name: string, request: MethodRequest): Promise<MethodResult> {
    try {
      const started = process.hrtime.bigint()
      const result = await this.call(deviceId, name, request)
      this.observe('answered', Number(process.hrtime.bigint() - started) / 1e9)
      return result
    } catch (err) {
      this.observe(err instanceof GatewayError ? err.code : 'E_INTERNAL')
      throw err
    }
  }

  private async call(deviceId: string, name: string, request: MethodRequest): Promise<MethodResult> {
    const body = Buffer.from(request.payload === undefined ? '' : JSON.stringify(request.payload))
    if (body.length > this.maxPayloadBytes) {
      throw new GatewayError('E_PAYLOAD_TOO_LARGE', `the method payload of ${body.length} bytes exceeds the maximum of ${this.maxPayloadBytes}`)
    }
    const rid = randomUUID()
    const topic = formatMethodRequestTopic(name, rid) // E_BAD_REQUEST for an unusable name
    if (!(await this.registry.get(deviceId))) throw new GatewayError('E_DEVICE_NOT_FOUND', `device "${deviceId}" not found`, { deviceId })
    await this.waitUntilReachable(deviceId, request.connectTimeoutSeconds * 1000)
    const answered = new Promise<MethodResult>((resolve, reject) => this.pending.set(rid, { deviceId, resolve, reject }))
    const timeout = AbortSignal.timeout(request.responseTimeoutSeconds * 1000)
    try {
      const sent = this.channel.send(deviceId, topic, body, 0)
      if (!sent) throw offline(deviceId)
      await sent.written
      const timedOut = new Promise<never>((_, reject) =>
        timeout.addEventListener('abort', () => reject(new GatewayError('E_METHOD_TIMEOUT', `device "${deviceId}" did not answer method "${name}" within ${request.responseTimeoutSeconds} s`)), { once: true }),
      )
      return await Promise.race([answered, timedOut])
    } finally {
      this.pending.delete(rid)
    }
  }

  /** A method response from a device; one for an unknown `$rid` or from another device is ignored. */
  handleResponse(ctx: ConnectionContext, status: number, rid: string, payload: Buffer): void {
    const p = this.pending.get(rid)
    if (!p || p.deviceId !== ctx.deviceId) return
    this.pending.delete(rid)
    if (payload.length > this.maxPayloadBytes) {
      p.reject(new GatewayError('E_PAYLOAD_TOO_LARGE', `the device answered with ${payload.length} bytes, over the method payload maximum of ${this.maxPayloadBytes}`))
      return
    }
    p.resolve({ status, payload: parseBody(payload) })
  }

  /** Fail every call still waiting (the HTTP API closes only once its requests are answered). */
  stop(): void {
    this.stopped = true
    for (const [rid, p] of this.pending) {
      this.pending.delete(rid)
      p.reject(new GatewayError('E_SHUTTING_DOWN', 'the gateway is shutting down'))
    }
  }

  private async waitUntilReachable(deviceId: string, waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs
    for (;;) {
      if (this.channel.isSubscribed(deviceId, METHODS_FILTER_PROBE)) return
      if (this.stopped) throw new GatewayError('E_SHUTTING_DOWN', 'the gateway is shutting down')
      if (Date.now() >= deadline) throw offline(deviceId)
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())))
    }
  }
}

function offline(deviceId: string): GatewayError {
  return new GatewayError('E_DEVICE_OFFLINE', `device "${deviceId}" is not connected or not subscribed to direct methods`, { deviceId })
}

/** Devices answer with JSON; anything else is passed on as text, an empty body as null. */
function parseBody(payload: Buffer): unknown {
  const text = payload.toString('utf8')
  if (text.trim() === '') return null
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}
