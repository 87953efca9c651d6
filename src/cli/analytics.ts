import type { ParseArgsConfig } from 'node:util'
import { AGGREGATE_FUNCTIONS, AGGREGATE_SOURCES, outputField, type AggregateFunction, type AggregateInput, type AlertRuleInput } from '../analytics/definitions.js'
import { COMMON_OPTIONS, UsageError } from './common.js'
import { openAnalyticsAdmin, type AggregateRow, type AlertRuleRow, type AnalyticsAdmin } from './analytics-admin.js'
import { formatTable } from './devices-output.js'
import { integerFlag, oneOf, removedOutput, runSubcommand, type Output, type ParsedValues, type Subcommand } from './subcommands.js'

const SHARED_HELP = `options:
  --json              machine-readable output
  --data-dir DIR, --config FILE, --admin-token T, --set key=value   as for start

When a gateway runs on the data directory the command goes through its HTTP API (it reloads at
once); otherwise it changes the registry file, where a gateway finds it when it starts or next
polls the registry.`

const AGGREGATES_USAGE = `usage: streamgate aggregates <command> [options]

commands:
  list                                   every aggregate (and open windows, lag, counters when a
                                         gateway runs)
  add NAME --window MS --fn FN:PATH [--fn FN:PATH]... [--hop MS] [--filter Q]
      [--group-by PROPERTY]... [--timestamp-by PATH] [--lateness-ms MS] [--late drop|adjust]
      [--output TOPIC] [--source telemetry|device-events] [--disabled]
                                         create or replace an aggregate; FN is one of
                                         ${AGGREGATE_FUNCTIONS.join(' ')}, PATH a $body path
                                         (--fn avg:$body.temp); --hop makes the window hopping
  remove NAME                            delete an aggregate no alert rule reads

${SHARED_HELP}`

const ALERTS_USAGE = `usage: streamgate alerts <command> [options]

commands:
  list                                   the open alerts: rule, device, severity, since, value
  rules                                  every alert rule (and open / raised / cleared counts when
                                         a gateway runs)
  add NAME --condition Q [--aggregate A] [--for-ms MS] [--clear-condition Q]
      [--clear-after-ms MS] [--value EXPR] [--severity info|warning|critical] [--disabled]
                                         create or replace an alert rule over single telemetry
                                         messages, or over aggregate A's output records
  remove NAME                            delete an alert rule (its open alerts go with it)

${SHARED_HELP}`

const OPTIONS = {
  ...COMMON_OPTIONS,
  json: { type: 'boolean' },
  window: { type: 'string' },
  hop: { type: 'string' },
  fn: { type: 'string', multiple: true },
  filter: { type: 'string' },
  'group-by': { type: 'string', multiple: true },
  'timestamp-by': { type: 'string' },
  'lateness-ms': { type: 'string' },
  late: { type: 'string' },
  output: { type: 'string' },
  source: { type: 'string' },
  disabled: { type: 'boolean' },
  condition: { type: 'string' },
  aggregate: { type: 'string' },
  'for-ms': { type: 'string' },
  'clear-condition': { type: 'string' },
  'clear-after-ms': { type: 'string' },
  value: { type: 'string' },
  severity: { type: 'string' },
} as const satisfies ParseArgsConfig['options']

type Values = ParsedValues<typeof OPTIONS>

const AGGREGATE_COMMANDS: Record<string, Subcommand<AnalyticsAdmin, Values>> = {
  list: {
    takesName: false,
    options: [],
    prepare: () => async (admin) => {
      const aggregates = await admin.aggregates()
      return { human: formatAggregates(aggregates), json: aggregates }
    },
  },
  add: { takesName: true, options: ['window', 'hop', 'fn', 'filter', 'group-by', 'timestamp-by', 'lateness-ms', 'late', 'output', 'source', 'disabled'], prepare: prepareAggregateAdd },
  remove: {
    takesName: true,
    options: [],
    prepare: (name) => async (admin) => {
      await admin.removeAggregate(name)
      return removedOutput('aggregate', name)
    },
  },
}

const ALERT_COMMANDS: Record<string, Subcommand<AnalyticsAdmin, Values>> = {
  list: {
    takesName: false,
    options: [],
    prepare: () => async (admin) => {
      const alerts = await admin.openAlerts()
      const human =
        alerts.length === 0
          ? 'no open alerts\n'
          : formatTable(['RULE', 'DEVICE', 'SEVERITY', 'SINCE', 'RAISED', 'VALUE'], alerts.map((a) => [a.rule, a.deviceId, a.severity, a.since, a.raisedAt, JSON.stringify(a.value) ?? 'null']))
      return { human: (admin.mode === 'local' && alerts.length > 0 ? 'as of the last checkpoint (no gateway runs on this data directory)\n' : '') + human, json: alerts }
    },
  },
  rules: {
    takesName: false,
    options: [],
    prepare: () => async (admin) => {
      const rules = await admin.alertRules()
      return { human: formatRules(rules), json: rules }
    },
  },
  add: { takesName: true, options: ['condition', 'aggregate', 'for-ms', 'clear-condition', 'clear-after-ms', 'value', 'severity', 'disabled'], prepare: prepareRuleAdd },
  remove: {
    takesName: true,
    options: [],
    prepare: (name) => async (admin) => {
      await admin.removeAlertRule(name)
      return removedOutput('alert rule', name)
    },
  },
}

/** `streamgate aggregates ...`: returns the exit code (0 ok, 1 failed, 2 usage). */
export function aggregatesCommand(argv: string[]): Promise<number> {
  return runSubcommand({ group: 'aggregates', usage: AGGREGATES_USAGE, options: OPTIONS, table: AGGREGATE_COMMANDS, open: openAnalyticsAdmin }, argv)
}

/** `streamgate alerts ...`: returns the exit code (0 ok, 1 failed, 2 usage). */
export function alertsCommand(argv: string[]): Promise<number> {
  return runSubcommand({ group: 'alerts', usage: ALERTS_USAGE, options: OPTIONS, table: ALERT_COMMANDS, open: openAnalyticsAdmin }, argv)
}

function prepareAggregateAdd(name: string, values: Values): (admin: AnalyticsAdmin) => Promise<Output> {
  if (values.window === undefined) throw new UsageError('aggregates add needs --window MS')
  const fns = values.fn ?? []
  if (fns.length === 0) throw new UsageError('aggregates add needs --fn FN:PATH (repeat it for several functions)')
  const size = integerFlag(values.window, 'window', 'sizeMs').sizeMs!
  const hop = integerFlag(values.hop, 'hop', 'hopMs').hopMs
  const source = oneOf('--source', values.source, AGGREGATE_SOURCES)
  const late = oneOf('--late', values.late, ['drop', 'adjust'] as const)
  const input: AggregateInput = {
    name,
    window: hop === undefined ? { type: 'tumbling', sizeMs: size } : { type: 'hopping', sizeMs: size, hopMs: hop },
    functions: fns.map(functionFlag),
    enabled: values.disabled !== true,
    ...(values.filter === undefined ? {} : { filter: values.filter }),
    ...(values['group-by'] === undefined ? {} : { groupBy: values['group-by'] }),
    ...(values['timestamp-by'] === undefined ? {} : { timestampBy: values['timestamp-by'] }),
    ...integerFlag(values['lateness-ms'], 'lateness-ms', 'allowedLatenessMs'),
    ...(late === undefined ? {} : { latePolicy: late }),
    ...(values.output === undefined ? {} : { output: values.output }),
    ...(source === undefined ? {} : { source }),
  }
  return async (admin) => {
    const { created, aggregate } = await admin.putAggregate(input)
    const fields = aggregate.functions.map(outputField).join(', ')
    return { human: `${created ? 'Created' : 'Replaced'} aggregate ${name} (${aggregate.window.type} ${aggregate.window.sizeMs} ms into ${aggregate.output}: ${fields}).\n`, json: { created, aggregate } }
  }
}

/** `avg:$body.temp` */
function functionFlag(text: string): { fn: AggregateFunction; path: string } {
  const colon = text.indexOf(':')
  const fn = text.slice(0, colon)
  if (colon <= 0 || !(AGGREGATE_FUNCTIONS as readonly string[]).includes(fn)) throw new UsageError(`--fn expects FN:PATH with FN one of ${AGGREGATE_FUNCTIONS.join(', ')}, got "${text}"`)
  return { fn: fn as AggregateFunction, path: text.slice(colon + 1) }
}

function prepareRuleAdd(name: string, values: Values): (admin: AnalyticsAdmin) => Promise<Output> {
  if (values.condition === undefined) throw new UsageError('alerts add needs --condition Q')
  const severity = oneOf('--severity', values.severity, ['info', 'warning', 'critical'] as const)
  const input: AlertRuleInput = {
    name,
    condition: values.condition,
    source: values.aggregate === undefined ? { telemetry: true } : { aggregate: values.aggregate },
    enabled: values.disabled !== true,
    ...integerFlag(values['for-ms'], 'for-ms', 'forMs'),
    ...integerFlag(values['clear-after-ms'], 'clear-after-ms', 'clearAfterMs'),
    ...(values['clear-condition'] === undefined ? {} : { clearCondition: values['clear-condition'] }),
    ...(values.value === undefined ? {} : { value: values.value }),
    ...(severity === undefined ? {} : { severity }),
  }
  return async (admin) => {
    const { created, rule } = await admin.putAlertRule(input)
    const over = 'aggregate' in rule.source ? `aggregate ${rule.source.aggregate}` : 'telemetry'
    return { human: `${created ? 'Created' : 'Replaced'} alert rule ${name} (over ${over}, ${rule.severity}${rule.forMs > 0 ? `, for ${rule.forMs} ms` : ''}).\n`, json: { created, rule } }
  }
}

function formatAggregates(rows: AggregateRow[]): string {
  if (rows.length === 0) return 'no aggregates\n'
  const live = rows.some((r) => r.status)
  return formatTable(
    ['AGGREGATE', 'SOURCE', 'WINDOW', 'ENABLED', 'OUTPUT', ...(live ? ['OPEN', 'IN', 'LATE', 'LAG'] : []), 'FUNCTIONS'],
    rows.map((r) => [
      r.name,
      r.source,
      r.window.type === 'hopping' ? `${r.window.sizeMs}/${r.window.hopMs}ms` : `${r.window.sizeMs}ms`,
      r.enabled ? 'yes' : 'no',
      r.output,
      ...(live ? [String(r.status?.openWindows ?? '-'), String(r.status?.counts.in ?? '-'), String(r.status ? r.status.counts.late + r.status.counts.adjusted : '-'), String(r.status?.lag ?? '-')] : []),
      r.functions.map(outputField).join(','),
    ]),
  )
}

function formatRules(rows: AlertRuleRow[]): string {
  if (rows.length === 0) return 'no alert rules\n'
  const live = rows.some((r) => r.status)
  return formatTable(
    ['RULE', 'SOURCE', 'SEVERITY', 'FOR', 'ENABLED', ...(live ? ['OPEN', 'RAISED', 'CLEARED'] : []), 'CONDITION'],
    rows.map((r) => [
      r.name,
      'aggregate' in r.source ? `aggregate:${r.source.aggregate}` : 'telemetry',
      r.severity,
      `${r.forMs}ms`,
      r.enabled ? 'yes' : 'no',
      ...(live ? [String(r.status?.open ?? '-'), String(r.status?.counts.raised ?? '-'), String(r.status?.counts.cleared ?? '-')] : []),
      r.condition,
    ]),
  )
}
