import type { RouteTestResult } from '../routing/route-test.js'
import { formatTable } from './devices-output.js'
import type { EndpointRow, RouteRow } from './routes-admin.js'

/**
 * Human output of `streamgate routes` and `streamgate endpoints`. Counter columns appear only
 * when the rows carry them (a running gateway answered); a webhook shows whether it has an
 * auth header, never the header.
 */

export function formatRouteList(routes: RouteRow[]): string {
  if (routes.length === 0) return 'no routes\n'
  const live = routes.some((r) => r.matched !== undefined)
  return formatTable(
    ['ROUTE', 'SOURCE', 'ENABLED', 'ENDPOINTS', ...(live ? ['MATCHED', 'UNDEFINED'] : []), 'CONDITION'],
    routes.map((r) => [
      r.name,
      r.source,
      r.enabled ? 'yes' : 'no',
      r.endpoints.join(','),
      ...(live ? [perEndpoint(r.endpoints, r.matched), perEndpoint(r.endpoints, r.undefinedCondition)] : []),
      r.condition,
    ]),
  )
}

/** `hot=2,cold=0`: the router counts a route's matches per endpoint it feeds. */
function perEndpoint(endpoints: string[], counts: Record<string, number> | undefined): string {
  return endpoints.map((e) => `${e}=${counts?.[e] ?? 0}`).join(',')
}

export function formatEndpointList(endpoints: EndpointRow[]): string {
  if (endpoints.length === 0) return 'no endpoints\n'
  const live = endpoints.some((e) => e.health !== undefined)
  return formatTable(
    ['ENDPOINT', 'TYPE', 'AUTH', 'ENRICHMENTS', ...(live ? ['HEALTH', 'DELIVERED', 'FAILED', 'DEAD-LETTERED', 'LAG'] : []), 'TARGET'],
    endpoints.map((e) => [
      e.name,
      e.type,
      e.type === 'webhook' ? (e.hasAuthHeader ? 'set' : 'none') : '-',
      e.enrichments.length === 0 ? '-' : e.enrichments.map((x) => x.key).join(','),
      ...(live ? [e.health ?? '-', String(e.delivered ?? 0), String(e.failedAttempts ?? 0), String(e.deadLettered ?? 0), lag(e.lag)] : []),
      e.type === 'stream' ? `topic ${e.topic}${e.partitions === undefined ? '' : ` (${e.partitions} partitions)`}` : e.url,
    ]),
  )
}

/** Per source topic; -1 is the router's "could not read the lag". */
function lag(byTopic: Record<string, number> | undefined): string {
  const entries = Object.entries(byTopic ?? {})
  if (entries.length === 0) return '-'
  return entries.map(([topic, n]) => `${topic}=${n < 0 ? '?' : n}`).join(',')
}

export function formatTestResult(result: RouteTestResult): string {
  const lines = [`matched: ${result.matched ? 'yes' : 'no'}`, `value:   ${JSON.stringify(result.value)}`, `reason:  ${result.reason}`]
  lines.push(result.steps.length === 0 ? 'steps:   none (the condition is constant)' : 'steps:')
  for (const step of result.steps) lines.push(`  ${step.text}  =>  ${JSON.stringify(step.value)}`)
  const stamped = Object.entries(result.enrichments)
  if (stamped.length > 0) lines.push('enrichments:')
  for (const [endpoint, headers] of stamped) {
    const pairs = Object.entries(headers).map(([k, v]) => `${k}=${v}`)
    lines.push(`  ${endpoint}: ${pairs.length === 0 ? '(none)' : pairs.join(' ')}`)
  }
  return lines.join('\n') + '\n'
}
