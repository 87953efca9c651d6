import { openToolStore } from '../app/backends.js'
import { topicNames } from '../config/load.js'
import type { GatewayConfig } from '../config/schema.js'
import { isGatewayError, type ErrorCode } from '../errors/catalogue.js'
import type { OpenAlert } from '../analytics/alert-processor.js'
import { checkAlertRule, type AggregateDefinition, type AggregateInput, type AlertRuleDefinition, type AlertRuleInput } from '../analytics/definitions.js'
import { checkAggregateFor, openAlertsFromCheckpoints, type AggregateStatus, type AlertRuleStatus } from '../analytics/service.js'
import type { AnalyticsStore } from '../analytics/types.js'
import { apiRequest, runningGateway } from './device-admin.js'

/** Status comes only from a running gateway (counters since it started). */
export type AggregateRow = AggregateDefinition & { status?: AggregateStatus | null }
export type AlertRuleRow = AlertRuleDefinition & { status?: AlertRuleStatus | null }

/**
 * What `streamgate aggregates` and `streamgate alerts` need, like RouteAdmin: through a running
 * gateway's HTTP API (it reloads before answering), or on the registry file when none runs.
 */
export interface AnalyticsAdmin {
  readonly mode: 'http' | 'local'
  aggregates(): Promise<AggregateRow[]>
  putAggregate(input: AggregateInput): Promise<{ created: boolean; aggregate: AggregateRow }>
  removeAggregate(name: string): Promise<void>
  alertRules(): Promise<AlertRuleRow[]>
  putAlertRule(input: AlertRuleInput): Promise<{ created: boolean; rule: AlertRuleRow }>
  removeAlertRule(name: string): Promise<void>
  /** Without a gateway: as of the rules' last checkpoints. */
  openAlerts(): Promise<OpenAlert[]>
  close(): Promise<void>
}

export class LocalAnalyticsAdmin implements AnalyticsAdmin {
  readonly mode = 'local'

  constructor(
    private readonly store: AnalyticsStore,
    private readonly config: GatewayConfig,
    private readonly closeStore: () => Promise<void>,
  ) {}

  static async open(config: GatewayConfig): Promise<LocalAnalyticsAdmin> {
    const { store, close } = await openToolStore(config, (stores) => stores.analytics())
    return new LocalAnalyticsAdmin(store, config, close)
  }

  async aggregates(): Promise<AggregateRow[]> {
    return (await this.store.load()).aggregates
  }

  /** The same check the gateway's API makes, with this config's topic prefix and topic names. */
  async putAggregate(input: AggregateInput): Promise<{ created: boolean; aggregate: AggregateRow }> {
    const aggregate = checkAggregateFor(input, this.config.stream.topicPrefix, Object.values(topicNames(this.config)))
    const { created } = await this.store.putAggregate(aggregate)
    return { created, aggregate }
  }

  removeAggregate(name: string): Promise<void> {
    return this.store.removeAggregate(name)
  }

  async alertRules(): Promise<AlertRuleRow[]> {
    return (await this.store.load()).alertRules
  }

  async putAlertRule(input: AlertRuleInput): Promise<{ created: boolean; rule: AlertRuleRow }> {
    const rule = checkAlertRule(input)
    const { created } = await this.store.putAlertRule(rule)
    return { created, rule }
  }

  removeAlertRule(name: string): Promise<void> {
    return this.store.removeAlertRule(name)
  }

  async openAlerts(): Promise<OpenAlert[]> {
    const out: OpenAlert[] = []
    for (const rule of (await this.store.load()).alertRules) out.push(...(await openAlertsFromCheckpoints(this.store, rule)))
    return out.sort((a, b) => a.raisedAt.localeCompare(b.raisedAt))
  }

  close(): Promise<void> {
    return this.closeStore()
  }
}

const REQUEST_TIMEOUT_MS = 15_000

export class HttpAnalyticsAdmin implements AnalyticsAdmin {
  readonly mode = 'http'

  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async aggregates(): Promise<AggregateRow[]> {
    return (await this.request<{ aggregates: AggregateRow[] }>('GET', '/api/aggregates')).aggregates
  }

  async putAggregate(input: AggregateInput): Promise<{ created: boolean; aggregate: AggregateRow }> {
    const path = `/api/aggregates/${encodeURIComponent(input.name)}`
    const created = !(await this.exists(path, 'E_AGGREGATE_NOT_FOUND'))
    return { created, aggregate: await this.request<AggregateRow>('PUT', path, input) }
  }

  async removeAggregate(name: string): Promise<void> {
    await this.request<unknown>('DELETE', `/api/aggregates/${encodeURIComponent(name)}`)
  }

  async alertRules(): Promise<AlertRuleRow[]> {
    return (await this.request<{ alertRules: AlertRuleRow[] }>('GET', '/api/alert-rules')).alertRules
  }

  async putAlertRule(input: AlertRuleInput): Promise<{ created: boolean; rule: AlertRuleRow }> {
    const path = `/api/alert-rules/${encodeURIComponent(input.name)}`
    const created = !(await this.exists(path, 'E_ALERT_RULE_NOT_FOUND'))
    return { created, rule: await this.request<AlertRuleRow>('PUT', path, input) }
  }

  async removeAlertRule(name: string): Promise<void> {
    await this.request<unknown>('DELETE', `/api/alert-rules/${encodeURIComponent(name)}`)
  }

  async openAlerts(): Promise<OpenAlert[]> {
    return (await this.request<{ alerts: OpenAlert[] }>('GET', '/api/alerts')).alerts
  }

  async close(): Promise<void> {}

  /** As HttpRouteAdmin: "created" is asked first; a concurrent writer can only make the word wrong. */
  private async exists(path: string, notFound: ErrorCode): Promise<boolean> {
    try {
      await this.request<unknown>('GET', path)
      return true
    } catch (err) {
      if (isGatewayError(err) && err.code === notFound) return false
      throw err
    }
  }

  private request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return apiRequest<T>(this.baseUrl, this.token, method, path, body, REQUEST_TIMEOUT_MS)
  }
}

export async function openAnalyticsAdmin(config: GatewayConfig, warn: (message: string) => void): Promise<AnalyticsAdmin> {
  const running = await runningGateway(config, warn, 'the gateway reloads its aggregates and alert rules when it next polls the registry')
  return running ? new HttpAnalyticsAdmin(running.httpUrl, running.token) : LocalAnalyticsAdmin.open(config)
}
