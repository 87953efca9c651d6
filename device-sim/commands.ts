import { preciseNow } from './device.js'
import { errorCode } from './errors.js'
import { apiError, apiRequest, type ApiTarget } from './provision.js'
import type { Stats } from './stats.js'

/**
 * The cloud side of a run: cloud-to-device messages and direct method calls through the
 * gateway's HTTP API, at fixed rates, to random devices of the groups that handle them.
 * C2D latency is measured on the device (send time travels as the `sim-ts` property); the
 * method round trip here, from the request to the device's answer relayed by the gateway.
 */

export interface CommandPlan {
  c2dPerSecond: number
  methodsPerSecond: number
  methodName: string
  /** Seconds a call waits for a device that is not connected (or not subscribed) yet. */
  methodConnectTimeoutS: number
  c2dTargets: readonly string[]
  methodTargets: readonly string[]
}

const pick = (ids: readonly string[]): string | undefined => ids[Math.floor(Math.random() * ids.length)]

export class CommandDriver {
  private timers: NodeJS.Timeout[] = []
  private readonly inFlight = new Set<Promise<void>>()

  constructor(
    private readonly target: ApiTarget,
    private readonly plan: CommandPlan,
    private readonly stats: Stats,
  ) {}

  start(): void {
    const { c2dPerSecond, methodsPerSecond, c2dTargets, methodTargets } = this.plan
    if (c2dPerSecond > 0 && c2dTargets.length > 0) this.every(1000 / c2dPerSecond, () => this.sendC2d(pick(c2dTargets)!))
    if (methodsPerSecond > 0 && methodTargets.length > 0) this.every(1000 / methodsPerSecond, () => this.invoke(pick(methodTargets)!))
  }

  /** Stop sending; wait for the calls in flight (method calls end by their timeout at worst). */
  async stop(): Promise<void> {
    this.timers.forEach((t) => clearInterval(t))
    this.timers = []
    await Promise.all(this.inFlight)
  }

  private every(periodMs: number, task: () => Promise<void>): void {
    this.timers.push(
      setInterval(() => {
        const p = task().catch((err: unknown) => this.stats.error(errorCode(err)))
        this.inFlight.add(p)
        void p.finally(() => this.inFlight.delete(p))
      }, periodMs),
    )
  }

  private async sendC2d(deviceId: string): Promise<void> {
    const sentAt = preciseNow()
    const res = await apiRequest(this.target, 'POST', `/devices/${encodeURIComponent(deviceId)}/messages`, {
      payload: { command: 'sim', sentAt },
      properties: { 'sim-ts': sentAt.toFixed(3) },
      ttlSeconds: 60,
    })
    if (res.status !== 202) throw apiError(`C2D to ${deviceId}`, res.status, res.json)
    this.stats.count('c2dSent')
  }

  private async invoke(deviceId: string): Promise<void> {
    const t0 = preciseNow()
    this.stats.count('methodsInvoked')
    const res = await apiRequest(this.target, 'POST', `/devices/${encodeURIComponent(deviceId)}/methods/${encodeURIComponent(this.plan.methodName)}`, {
      payload: { from: 'streamgate-sim' },
      responseTimeoutSeconds: 10,
      connectTimeoutSeconds: this.plan.methodConnectTimeoutS,
    })
    if (res.status !== 200) throw apiError(`method on ${deviceId}`, res.status, res.json)
    this.stats.record('method', (preciseNow() - t0) * 1000)
    this.stats.count('methodsReturned')
  }
}
