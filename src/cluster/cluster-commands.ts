import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { GatewayError, toGatewayError, type ErrorCode } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { MethodRequest, MethodResult } from '../commands/method-invoker.js'
import type { TwinProperties } from '../registry/types.js'
import type { Cluster, Signal } from './types.js'

/** What this instance can do to a device connected to it. */
export interface LocalDevices {
  /** True when the device's connection is on this instance. */
  isHere(deviceId: string): boolean
  /** Close the device's connection here (reason kicked); false when it is not here. */
  kick(deviceId: string): boolean
  /** Close the device's connection here if it is older than `epoch` (reason replaced). */
  replaceOlderThan(deviceId: string, epoch: number): void
  /** Try delivering the device's queued cloud-to-device messages. */
  deliver(deviceId: string): void
  /** Push a desired-properties patch to the device (if connected and subscribed here). */
  notifyDesired(deviceId: string, patch: TwinProperties, version: number): Promise<void>
  /** Invoke a direct method on the device here. */
  invoke(deviceId: string, name: string, request: MethodRequest): Promise<MethodResult>
  /** E_DEVICE_NOT_FOUND when the device is not registered. */
  mustExist(deviceId: string): Promise<void>
}

interface PendingCall {
  resolve: (result: MethodResult) => void
  reject: (err: GatewayError) => void
}

const MOVED = Symbol('moved')

/** Slack for the two signal hops of a remote method call on top of the device's own timeouts. */
const REMOTE_SLACK_MS = 3000

/**
 * Commands that reach a device wherever it is connected. Each action is tried here first; when
 * the device is on another live instance (its ownership row says which), that instance is sent a
 * signal and does it locally: deliver (C2D), kick, desired patch, method call. A method's answer
 * comes back as a `method-result` signal to the calling instance.
 *
 * Nothing here is the record of anything: the C2D queue, the twin and the registry are in the
 * shared store already when a signal goes out, so a signal that is lost (the target died) loses no
 * command; the device gets what waits for it when it connects again, wherever that is.
 */
export class ClusterCommands {
  private readonly calls = new Map<string, PendingCall>()
  private readonly log: Logger
  private stopped = false

  constructor(
    private readonly cluster: Cluster,
    private readonly local: LocalDevices,
    logger: Logger,
    private readonly pollMs = 100,
    private readonly watchMs = 1000,
  ) {
    this.log = logger.child({ component: 'cluster-commands' })
    cluster.onSignal('replace', (s) => this.local.replaceOlderThan(deviceOf(s), Number(s.body.epoch)))
    cluster.onSignal('kick', (s) => void this.local.kick(deviceOf(s)))
    cluster.onSignal('deliver', (s) => this.local.deliver(deviceOf(s)))
    cluster.onSignal('twin-desired', (s) => this.local.notifyDesired(deviceOf(s), s.body.patch as TwinProperties, Number(s.body.version)))
    cluster.onSignal('method-call', (s) => this.answerCall(s))
    cluster.onSignal('method-result', (s) => this.takeResult(s))
  }

  /** The device's C2D queue changed: deliver here, or wake the instance that holds it. */
  async deliver(deviceId: string): Promise<void> {
    if (this.local.isHere(deviceId)) return this.local.deliver(deviceId)
    await this.toOwner(deviceId, 'deliver', {})
  }

  /** Close the device's connection wherever it is. Resolves whether a connection was found. */
  async kick(deviceId: string): Promise<boolean> {
    if (this.local.kick(deviceId)) return true
    return this.toOwner(deviceId, 'kick', {})
  }

  async notifyDesired(deviceId: string, patch: TwinProperties, version: number): Promise<void> {
    if (this.local.isHere(deviceId)) return this.local.notifyDesired(deviceId, patch, version)
    await this.toOwner(deviceId, 'twin-desired', { patch, version })
  }

  /**
   * A direct method wherever the device is. Until the connect timeout, a device connected nowhere
   * is looked for here and in the ownership table; then E_DEVICE_OFFLINE, as on one instance.
   */
  async invoke(deviceId: string, name: string, request: MethodRequest): Promise<MethodResult> {
    await this.local.mustExist(deviceId)
    const deadline = Date.now() + request.connectTimeoutSeconds * 1000
    for (;;) {
      const left = Math.max(0, deadline - Date.now())
      const rest = { ...request, connectTimeoutSeconds: left / 1000 }
      if (this.local.isHere(deviceId)) return this.local.invoke(deviceId, name, rest)
      const owner = await this.cluster.ownerOf(deviceId)
      if (owner && owner.instanceId !== this.cluster.instanceId) {
        const result = await this.remoteCall(owner.instanceId, deviceId, name, rest)
        if (result !== MOVED) return result
        // Its instance died (or the device moved) before answering: look again, as for a device offline.
        continue
      }
      // Connected nowhere: the local invoker answers E_DEVICE_OFFLINE (after what is left of the wait).
      if (left === 0 || this.stopped) return this.local.invoke(deviceId, name, { ...rest, connectTimeoutSeconds: 0 })
      await sleep(Math.min(this.pollMs, left))
    }
  }

  /** Answer every call still waiting for another instance (E_SHUTTING_DOWN). */
  stop(): void {
    this.stopped = true
    for (const [id, call] of this.calls) {
      this.calls.delete(id)
      call.reject(new GatewayError('E_SHUTTING_DOWN', 'the gateway is shutting down'))
    }
  }

  /** Signal the device's live owner; false when it is connected nowhere. */
  private async toOwner(deviceId: string, kind: 'deliver' | 'kick' | 'twin-desired', body: Record<string, unknown>): Promise<boolean> {
    const owner = await this.cluster.ownerOf(deviceId)
    if (!owner || owner.instanceId === this.cluster.instanceId) return false
    await this.cluster.signal(owner.instanceId, kind, deviceId, body)
    return true
  }

  /**
   * The call on the instance holding the device. While it waits, the owner is looked at every
   * watchMs: once that instance is dead (heartbeat lapsed) or the device is held elsewhere, the
   * answer will never come and MOVED sends the caller to look for the device again.
   */
  private async remoteCall(instanceId: string, deviceId: string, name: string, request: MethodRequest): Promise<MethodResult | typeof MOVED> {
    const callId = randomUUID()
    const answered = new Promise<MethodResult>((resolve, reject) => this.calls.set(callId, { resolve, reject }))
    const waitMs = (request.connectTimeoutSeconds + request.responseTimeoutSeconds) * 1000 + REMOTE_SLACK_MS
    let timer: NodeJS.Timeout | undefined
    let watch: NodeJS.Timeout | undefined
    try {
      await this.cluster.signal(instanceId, 'method-call', deviceId, { callId, origin: this.cluster.instanceId, name, request })
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new GatewayError('E_METHOD_TIMEOUT', `device "${deviceId}" on instance ${instanceId} did not answer method "${name}" within ${request.responseTimeoutSeconds} s`)), waitMs)
      })
      const moved = new Promise<typeof MOVED>((resolve) => {
        watch = setInterval(() => {
          void this.cluster.ownerOf(deviceId).then(
            (owner) => {
              if (owner?.instanceId !== instanceId) resolve(MOVED)
            },
            () => undefined,
          )
        }, this.watchMs)
      })
      return await Promise.race([answered, timedOut, moved])
    } finally {
      clearTimeout(timer)
      clearInterval(watch)
      this.calls.delete(callId)
    }
  }

  /** Another instance asks for a method call on a device here; the answer (or error) goes back to it. */
  private async answerCall(s: Signal): Promise<void> {
    const { callId, origin, name, request } = s.body as { callId: string; origin: string; name: string; request: MethodRequest }
    const deviceId = deviceOf(s)
    // Not awaited: a 30 s method must not hold up the signals behind it.
    void (async () => {
      let body: Record<string, unknown>
      try {
        const result = await this.local.invoke(deviceId, name, request)
        body = { callId, result }
      } catch (err) {
        const gerr = toGatewayError(err)
        body = { callId, error: { code: gerr.code, message: gerr.message } }
      }
      await this.cluster.signal(origin, 'method-result', deviceId, body).catch((err: unknown) => this.log.warn({ deviceId, origin, err: (err as Error).message }, 'method result not sent back'))
    })()
  }

  private takeResult(s: Signal): void {
    const { callId, result, error } = s.body as { callId: string; result?: MethodResult; error?: { code: ErrorCode; message: string } }
    const call = this.calls.get(callId)
    if (!call) return
    this.calls.delete(callId)
    if (error) call.reject(new GatewayError(error.code, error.message))
    else call.resolve(result!)
  }
}

function deviceOf(s: Signal): string {
  if (!s.deviceId) throw new Error(`a ${s.kind} signal without a device`)
  return s.deviceId
}
