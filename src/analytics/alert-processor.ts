import { RecordMessage } from '../routing/message.js'
import { compileQuery, type CompiledQuery } from '../routing/query/index.js'
import type { StoredRecord } from '../stream/types.js'
import type { AlertRuleDefinition } from './definitions.js'
import type { Processor, ProcessorOutput } from './types.js'

export type AlertEventType = 'alert-raised' | 'alert-cleared'
export type ClearReason = 'condition' | 'clearCondition' | 'timeout'

interface AlertState {
  /** pending: violating, not for long enough yet; open: raised. */
  phase: 'pending' | 'open'
  /** Event time of the first violating record of this episode. */
  since: number
  /** Event time it was raised (open only). */
  raisedAt: number | null
  /** Wall clock of the last violating record (clearAfterMs). */
  lastViolation: number
  value: unknown
}

export interface OpenAlert {
  rule: string
  deviceId: string
  severity: AlertRuleDefinition['severity']
  since: string
  raisedAt: string
  value: unknown
}

/** Per partition since this processor was made. */
export interface AlertCounts {
  evaluated: number
  raised: number
  cleared: number
}

/**
 * One alert rule over one partition: per device, ok → pending (the condition holds) → open
 * (it held for forMs of event time: `alert-raised`) → ok (`alert-cleared`, when the condition no
 * longer holds, or the clearCondition holds, or no violating record came for clearAfterMs of wall
 * clock). A pending episode ends as soon as a record does not violate. At most one open alert per
 * rule and device: the state is per device, and it is checkpointed with the outputs (processor-runner.ts).
 *
 * Event time: the enqueued time of a message, or the window end of an aggregate's output.
 */
export class AlertProcessor implements Processor {
  readonly counts: AlertCounts = { evaluated: 0, raised: 0, cleared: 0 }
  private readonly alerts: Map<string, AlertState>
  private readonly condition: CompiledQuery
  private readonly clearCondition: CompiledQuery | null
  private readonly value: CompiledQuery | null

  constructor(
    private readonly rule: AlertRuleDefinition,
    state: unknown,
  ) {
    this.condition = compileQuery(rule.condition)
    this.clearCondition = rule.clearCondition === undefined ? null : compileQuery(rule.clearCondition)
    this.value = rule.value === undefined ? null : compileQuery(rule.value)
    this.alerts = new Map(Object.entries((state as { alerts?: Record<string, AlertState> } | undefined)?.alerts ?? {}))
  }

  process(records: StoredRecord[], now: number): ProcessorOutput[] {
    const out: ProcessorOutput[] = []
    const aggregate = 'aggregate' in this.rule.source ? this.rule.source.aggregate : null
    for (const record of records) {
      if (aggregate !== null && record.headers.aggregate !== aggregate) continue
      const message = new RecordMessage(record, 'telemetry', undefined)
      const deviceId = message.deviceId
      if (deviceId === undefined) continue
      this.counts.evaluated++
      const time = aggregate !== null ? Number(record.headers['window-end']) : Number(record.headers['enqueued-time'] ?? record.timestamp)
      this.step(deviceId, message, Number.isFinite(time) ? time : record.timestamp, now, out)
    }
    return out
  }

  tick(now: number, caughtUp: boolean): ProcessorOutput[] {
    const out: ProcessorOutput[] = []
    const after = this.rule.clearAfterMs
    if (!caughtUp || after === undefined) return out
    for (const [deviceId, alert] of this.alerts) {
      if (now - alert.lastViolation < after) continue
      this.alerts.delete(deviceId)
      if (alert.phase === 'open') out.push(this.event('alert-cleared', deviceId, alert, now, now, 'timeout'))
    }
    return out
  }

  snapshot(): { alerts: Record<string, AlertState> } {
    return { alerts: Object.fromEntries(this.alerts) }
  }

  open(): OpenAlert[] {
    return openAlertsOf(this.rule, this.snapshot())
  }

  private step(deviceId: string, message: RecordMessage, time: number, now: number, out: ProcessorOutput[]): void {
    let alert = this.alerts.get(deviceId)
    if (this.condition.evaluate(message) === true) {
      if (!alert) this.alerts.set(deviceId, (alert = { phase: 'pending', since: time, raisedAt: null, lastViolation: now, value: null }))
      alert.lastViolation = now
      alert.value = this.valueOf(message)
      if (alert.phase === 'pending' && time - alert.since >= this.rule.forMs) {
        alert.phase = 'open'
        alert.raisedAt = time
        out.push(this.event('alert-raised', deviceId, alert, time, now))
      }
      return
    }
    if (!alert) return
    if (alert.phase === 'pending') {
      this.alerts.delete(deviceId)
      return
    }
    const cleared = this.clearCondition === null ? 'condition' : this.clearCondition.evaluate(message) === true ? 'clearCondition' : null
    if (cleared === null) return
    this.alerts.delete(deviceId)
    out.push(this.event('alert-cleared', deviceId, { ...alert, value: this.valueOf(message) }, time, now, cleared))
  }

  private valueOf(message: RecordMessage): unknown {
    const value = this.value ? this.value.evaluate(message) : message.body()
    return value === undefined ? null : value
  }

  private event(type: AlertEventType, deviceId: string, alert: AlertState, time: number, now: number, reason?: ClearReason): ProcessorOutput {
    if (type === 'alert-raised') this.counts.raised++
    else this.counts.cleared++
    const body: Record<string, unknown> = {
      type,
      rule: this.rule.name,
      deviceId,
      severity: this.rule.severity,
      value: alert.value,
      time: new Date(time).toISOString(),
      since: new Date(alert.since).toISOString(),
    }
    if (alert.raisedAt !== null) body.raisedAt = new Date(alert.raisedAt).toISOString()
    if (reason !== undefined) body.reason = reason
    return {
      // One raise and one clear per episode; an episode is known by its first violating record's time.
      id: `${type}/${deviceId}/${alert.since}`,
      eventTime: time,
      record: {
        key: deviceId,
        value: Buffer.from(JSON.stringify(body)),
        timestamp: now,
        headers: {
          'device-id': deviceId,
          'content-type': 'application/json',
          'content-encoding': 'utf-8',
          // Bare names, so that a route on the alerts source can say `rule = 'hot' AND alertType = 'raised'`.
          rule: this.rule.name,
          alertType: type === 'alert-raised' ? 'raised' : 'cleared',
          severity: this.rule.severity,
        },
      },
    }
  }
}

/** The open alerts in a snapshot (also read from a checkpoint when no gateway runs). */
export function openAlertsOf(rule: AlertRuleDefinition, state: unknown): OpenAlert[] {
  const alerts = (state as { alerts?: Record<string, AlertState> } | undefined)?.alerts ?? {}
  return Object.entries(alerts)
    .filter(([, a]) => a.phase === 'open')
    .map(([deviceId, a]) => ({ rule: rule.name, deviceId, severity: rule.severity, since: new Date(a.since).toISOString(), raisedAt: new Date(a.raisedAt!).toISOString(), value: a.value }))
}
