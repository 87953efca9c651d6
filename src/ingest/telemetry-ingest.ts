import { setTimeout as sleep } from 'node:timers/promises'
import type { ConnectionContext, InboundPublish, PublishDone, PublishHandler } from '../broker/ports.js'
import { GatewayError, toGatewayError } from '../errors/catalogue.js'
import type { OutgoingRecord } from '../stream/types.js'
import type { Logger } from '../observability/logger.js'
import type { GatewayMetrics } from '../observability/metrics.js'
import { parseDevicePublishTopic, type DevicePublishKind } from '../protocol/topics.js'
import type { PropertyBag } from '../protocol/property-bag.js'
import type { BatchingAppender } from './batcher.js'
import { buildTelemetryRecord, type MessageProperties } from './envelope.js'
import type { InFlightGate } from './in-flight-gate.js'

export interface TelemetryIngestOptions {
  appender: BatchingAppender
  gate: InFlightGate
  metrics: GatewayMetrics
  logger: Logger
  maxPayloadBytes: number
  now?: () => number
  /** First and longest pause between retries while the stream is unavailable, in ms. */
  retryMinMs?: number
  retryMaxMs?: number
}

/** What flows through the stages for one publish. */
interface PublishJob {
  ctx: ConnectionContext
  packet: InboundPublish
  receivedAt: number
  properties?: MessageProperties
  record?: OutgoingRecord
}

const TELEMETRY_ONLY: ReadonlySet<DevicePublishKind> = new Set<DevicePublishKind>(['telemetry'])

type Stage = (job: PublishJob) => void

/**
 * The telemetry pipeline: an ordered list of small named stages (flows are data), all synchronous,
 * then the durable append. It calls back only when the record is durable in the stream, which is
 * what lets the broker send the QoS 1 PUBACK right after. QoS 0 goes through the same path (best
 * effort for the device, but the wait keeps the ingress bounded).
 *
 * This is the gateway's hot path: per publish it allocates one job, one record and one callback,
 * no promise (the appender settles a whole batch from one); an await per stage cost a quarter of
 * the event loop's time at saturation, the promise chain after it another tenth (bench:compare).
 */
export class TelemetryIngest implements PublishHandler {
  private readonly log: Logger
  private readonly now: () => number
  private stopping = false
  /** Publishes currently held back because the stream refused them, and the last reason. */
  private heldPublishes = 0
  private lastFailure = ''
  private lastBag: PropertyBag | null = null
  private lastProperties: MessageProperties = { system: {}, app: [] }

  /** Run in order before the append; each throws a GatewayError to refuse the publish. */
  readonly stages: ReadonlyArray<readonly [string, Stage]> = [
    ['reject-qos2', (job) => this.rejectQos2(job)],
    ['check-size', (job) => this.checkSize(job)],
    ['parse-topic', (job) => this.parseTopic(job)],
    ['build-envelope', (job) => this.buildEnvelope(job)],
  ]

  constructor(private readonly options: TelemetryIngestOptions) {
    this.log = options.logger.child({ component: 'ingest' })
    this.now = options.now ?? Date.now
  }

  handlePublish(ctx: ConnectionContext, packet: InboundPublish, done: PublishDone): void {
    const job: PublishJob = { ctx, packet, receivedAt: this.now() }
    try {
      for (const [, stage] of this.stages) stage(job)
    } catch (err) {
      done(err)
      return
    }
    this.appendDurably(job, done)
  }

  /** For /readyz: not ready while the stream refuses records. */
  health(): { ok: boolean; detail?: string } {
    return this.heldPublishes > 0 ? { ok: false, detail: `${this.heldPublishes} publish(es) held: ${this.lastFailure}` } : { ok: true }
  }

  /** Stop retrying; pending publishes fail with E_SHUTTING_DOWN (and are not acknowledged). */
  stop(): void {
    this.stopping = true
  }

  private rejectQos2(job: PublishJob): void {
    // IoT Hub closes the connection on QoS 2 (IoT Hub MQTT support, "Sending device-to-cloud messages"); MQTT 3.1.1 has no negative ack.
    if (job.packet.qos === 2) throw new GatewayError('E_QOS_UNSUPPORTED', 'QoS 2 is not supported; publish with QoS 0 or 1')
  }

  private checkSize(job: PublishJob): void {
    const size = job.packet.payload.length
    if (size > this.options.maxPayloadBytes) {
      throw new GatewayError('E_PAYLOAD_TOO_LARGE', `payload of ${size} bytes exceeds the maximum of ${this.options.maxPayloadBytes}`)
    }
  }

  private parseTopic(job: PublishJob): void {
    const parsed = parseDevicePublishTopic(job.packet.topic, job.ctx.deviceId, TELEMETRY_ONLY)
    // `$iothub/...` requests are routed to the command channel before this pipeline.
    if (parsed.kind !== 'telemetry') {
      throw new GatewayError('E_TOPIC_FORBIDDEN', `publishing to ${parsed.kind} topics is not enabled`)
    }
    // One object per distinct bag; most telemetry shares the one empty bag.
    if (parsed.bag !== this.lastBag) {
      this.lastBag = parsed.bag
      this.lastProperties = { system: parsed.bag.system, app: parsed.bag.application }
    }
    job.properties = this.lastProperties
  }

  private buildEnvelope(job: PublishJob): void {
    job.record = buildTelemetryRecord({
      deviceId: job.ctx.deviceId,
      payload: job.packet.payload,
      properties: job.properties!,
      enqueuedAt: job.receivedAt,
      retain: job.packet.retain,
    })
  }

  /**
   * Admit the record within the in-flight bound, then append until it is durable. While the
   * stream is unavailable the publish keeps waiting (unacknowledged, socket not read) and is
   * retried with back-off; it is given up only when its connection is gone (the device will
   * resend, it never got a PUBACK) or the gateway stops.
   */
  private appendDurably(job: PublishJob, done: PublishDone): void {
    const bytes = job.record!.value.length
    const { gate } = this.options
    const ticket = gate.track(job.receivedAt)
    if (gate.tryAcquire(bytes)) this.appendAdmitted(job, bytes, ticket, done)
    else void gate.acquire(bytes).then(() => this.appendAdmitted(job, bytes, ticket, done))
  }

  private appendAdmitted(job: PublishJob, bytes: number, ticket: number, done: PublishDone): void {
    this.options.appender.append(job.record!, (err) => {
      if (err === null) {
        this.settled(job, bytes, ticket, null)
        done(null)
        return
      }
      this.appendWithRetry(job, err).then(
        () => {
          this.settled(job, bytes, ticket, null)
          done(null)
        },
        (final: unknown) => {
          this.settled(job, bytes, ticket, final)
          done(final)
        },
      )
    })
  }

  /** Give the record's room back; count it when it was stored. */
  private settled(job: PublishJob, bytes: number, ticket: number, err: unknown): void {
    const { gate, metrics } = this.options
    gate.release(bytes)
    gate.done(ticket)
    if (err !== null) return
    const tally = metrics.telemetryTally
    if (job.packet.qos === 0) tally.qos0++
    else tally.qos1++
    tally.bytes += bytes
    metrics.ackLatency.observe((this.now() - job.receivedAt) / 1000)
  }

  /**
   * Retry while the stream answers E_STREAM_UNAVAILABLE. The ingest reports not ready exactly
   * while some publish is held this way: once none is (delivered, or its device gone), readiness
   * comes back even if no new traffic arrives.
   */
  private async appendWithRetry(job: PublishJob, firstError: unknown): Promise<void> {
    let delay = this.options.retryMinMs ?? 50
    let held = false
    try {
      for (let failure = firstError; ; ) {
        const gerr = toGatewayError(failure, 'E_STREAM_UNAVAILABLE')
        this.options.metrics.appendErrors.inc({ code: gerr.code })
        if (gerr.code !== 'E_STREAM_UNAVAILABLE' || this.stopping || job.ctx.isClosed()) {
          throw this.stopping ? new GatewayError('E_SHUTTING_DOWN', 'the gateway is shutting down; publish not acknowledged') : gerr
        }
        if (!held) {
          held = true
          this.heldPublishes++
        }
        this.lastFailure = `stream unavailable: ${gerr.message}`
        this.log.warn({ code: gerr.code, deviceId: job.ctx.deviceId, retryInMs: delay }, 'stream unavailable; holding publish unacknowledged')
        await sleep(delay)
        delay = Math.min(delay * 2, this.options.retryMaxMs ?? 2000)
        const err = await new Promise<unknown>((resolve) => this.options.appender.append(job.record!, resolve))
        if (err === null) return
        failure = err
      }
    } finally {
      if (held) this.heldPublishes--
    }
  }
}
