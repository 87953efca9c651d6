import { performance } from 'node:perf_hooks'
import { errorCode } from './errors.js'
import type { DeviceGroup } from './scenario.js'
import type { Stats } from './stats.js'
import { compileProperties, type PayloadTemplate } from './template.js'
import type { DeviceDriver } from './drivers/types.js'

/**
 * One simulated device: connects (timing it), produces telemetry at its group's rate with a
 * sequence number and send time in every message, reconnects with exponential back-off and full
 * jitter after a lost connection, and reports twin properties on a timer. Protocol details live
 * in the driver.
 */

export interface Backoff {
  minMs: number
  maxMs: number
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across local processes. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now()
}

export class SimDevice {
  private seq = 0
  private sendTimer: NodeJS.Timeout | null = null
  private twinTimer: NodeJS.Timeout | null = null
  private reconnectTimer: NodeJS.Timeout | null = null
  private attempts = 0
  private stopped = false
  private connectedNow = false
  private everConnected = false
  private readonly render: (ctx: { deviceId: string; seq: number }) => Buffer
  private readonly properties: ReturnType<typeof compileProperties>

  constructor(
    readonly deviceId: string,
    private readonly group: DeviceGroup,
    private readonly driver: DeviceDriver,
    template: PayloadTemplate,
    private readonly stats: Stats,
    private readonly runId: string,
    private readonly backoff: Backoff,
  ) {
    this.render = template.instantiate()
    this.properties = compileProperties(group.properties)
    driver.onConnectionLost = () => this.lost()
  }

  get connected(): boolean {
    return this.connectedNow
  }

  /** First connection; a failure schedules retries like a lost connection does. */
  async start(): Promise<void> {
    await this.connect()
    if (this.group.rate > 0) {
      const period = 1000 / this.group.rate
      // A random phase so a fleet started at once does not publish in lock step.
      this.sendTimer = setTimeout(() => {
        this.send()
        this.sendTimer = setInterval(() => this.send(), period)
      }, Math.random() * period)
    }
    const twinS = this.group.behaviour.twinReportIntervalS
    if (twinS > 0) this.twinTimer = setInterval(() => void this.reportTwin(), twinS * 1000)
  }

  /** Stop producing telemetry (the run is over); the connection stays for outstanding PUBACKs. */
  stopSending(): void {
    if (this.sendTimer) clearInterval(this.sendTimer)
    if (this.twinTimer) clearInterval(this.twinTimer)
    this.sendTimer = this.twinTimer = null
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.stopSending()
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    this.markDisconnected()
    await this.driver.close().catch(() => {})
  }

  /** Scenario events: cut the connection as a network failure would; the device reconnects. */
  drop(): void {
    if (this.connectedNow) this.driver.drop()
  }

  private async connect(): Promise<void> {
    const t0 = preciseNow()
    if (this.stats.firstConnectAttemptAt === 0) this.stats.firstConnectAttemptAt = Date.now()
    try {
      await this.driver.connect()
    } catch (err) {
      this.stats.count('connectFailures')
      this.stats.error(errorCode(err))
      this.scheduleReconnect()
      return
    }
    if (this.stopped) return
    this.stats.record('connect', (preciseNow() - t0) * 1000)
    this.stats.count('connects')
    if (!this.everConnected) {
      this.everConnected = true
      this.stats.count('initialConnects')
      this.stats.lastInitialConnectAt = Math.max(this.stats.lastInitialConnectAt, Date.now())
    }
    this.attempts = 0
    this.connectedNow = true
    this.stats.connected++
  }

  private lost(): void {
    this.stats.count('disconnects')
    this.markDisconnected()
    if (!this.stopped) this.scheduleReconnect()
  }

  private markDisconnected(): void {
    if (!this.connectedNow) return
    this.connectedNow = false
    this.stats.connected--
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return
    const cap = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** this.attempts++)
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      void this.connect()
    }, Math.random() * cap)
  }

  private send(): void {
    const seq = ++this.seq
    const { qos } = this.group
    this.stats.count('sent')
    this.stats.count(qos === 1 ? 'sentQos1' : 'sentQos0')
    this.stats.deviceSent(this.deviceId, seq)
    if (!this.connectedNow && qos === 0) {
      // Never reaches the wire: counted so the report's loss matches what the stream lacks.
      this.stats.count('droppedOffline')
      this.stats.error('E_SIM_OFFLINE_QOS0')
      return
    }
    const t0 = preciseNow()
    const properties = { ...this.properties({ deviceId: this.deviceId, seq }), 'sim-run': this.runId, 'sim-seq': String(seq), 'sim-ts': t0.toFixed(3) }
    const message = { payload: this.render({ deviceId: this.deviceId, seq }), properties, qos }
    this.driver.publish(message).then(
      () => {
        if (qos === 1) {
          this.stats.count('acked')
          this.stats.record('puback', (preciseNow() - t0) * 1000)
        }
      },
      (err: unknown) => this.stats.error(errorCode(err)),
    )
  }

  private async reportTwin(): Promise<void> {
    if (!this.connectedNow) return
    try {
      await this.driver.reportTwin({ simSeq: this.seq, reportedAt: new Date().toISOString() })
      this.stats.count('twinReported')
    } catch (err) {
      this.stats.error(errorCode(err))
    }
  }
}
