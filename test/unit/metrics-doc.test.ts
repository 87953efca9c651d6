import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { GatewayMetrics } from '../../src/observability/metrics.js'
import { requestCounter } from '../../src/api/http-metrics.js'

describe('docs/metrics.md', () => {
  const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8')
  const documented = new Map([...doc.matchAll(/^\| `(streamgate_\w+)` \| (\w+) \|/gm)].map((m) => [m[1]!, m[2]!]))
  const metrics = new GatewayMetrics({ defaultMetrics: false })
  metrics.watchCommandQueue(async () => ({ messages: 0, feedback: 0 }))
  metrics.watchAdmission(() => ({ pending: 0, mqtt: 0, http: 0, maxConnections: 1 }))
  metrics.watchDeviceEventOutbox(async () => 0)
  metrics.watchRouting(async () => [])
  metrics.watchAnalytics(() => ({ windows: {}, alerts: {} }))
  requestCounter(metrics.registry)
  // The type each metric declares (what the scrape says), so a hand-made one such as FastHistogram counts as what it is.
  const registered = metrics.registry.getMetricsAsArray().map((m) => ({ name: m.name, type: (m as unknown as { type: string }).type }))

  it('lists every metric the gateway registers, with its type', () => {
    for (const m of registered) expect(documented.get(m.name), `${m.name} in docs/metrics.md`).toBe(m.type)
  })

  it('lists no metric that does not exist', () => {
    expect([...documented.keys()].sort()).toEqual(registered.map((m) => m.name).sort())
  })
})
