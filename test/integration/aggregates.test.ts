import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { readAll, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, errorCode } from '../helpers/commands.js'
import { device, exactWindowsScenario, FAST_ANALYTICS, put } from '../helpers/analytics.js'
import { publishJson, startWebhookReceiver, type WebhookReceiver } from '../helpers/routing.js'

let gw: TestGateway
let hook: WebhookReceiver
const clients: MqttClient[] = []

beforeAll(async () => {
  gw = await startTestGateway({ ...FAST_ANALYTICS, 'routing.reloadIntervalMs': '200' })
  hook = await startWebhookReceiver()
})

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined)
  await gw.stop()
  await hook.close()
})

describe('aggregates on the embedded stream', () => {
  it('emits exact counts and averages per device per window; a late device does not delay another', { timeout: 60_000 }, async () => {
    await exactWindowsScenario(gw, 'emb-', clients, 'aggregates')
  })

  it('groups by an application property and aggregates over hopping windows', { timeout: 60_000 }, async () => {
    await put(gw.httpUrl, '/api/aggregates/hop', {
      window: { type: 'hopping', sizeMs: 2000, hopMs: 1000 },
      timestampBy: '$body.ts',
      groupBy: ['zone'],
      functions: [{ fn: 'sum', path: '$body.v' }],
      output: 'hop-out',
    })
    const client = await device(gw, 'hop-dev', clients)
    const T = Math.floor(Date.now() / 1000) * 1000 - 20_000
    await publishJson(client, 'hop-dev', { ts: T + 500, v: 1 }, { zone: 'a' })
    await publishJson(client, 'hop-dev', { ts: T + 600, v: 2 }, { zone: 'b' })
    await publishJson(client, 'hop-dev', { ts: T + 1500, v: 10 }, { zone: 'a' })
    await publishJson(client, 'hop-dev', { ts: T + 3000, v: 0 }, { zone: 'a' })
    const out = await waitFor(async () => {
      const recs = (await readAll(gw.gateway, 'hop-out').catch(() => [])).map((r) => JSON.parse(r.value.toString()) as { windowStart: string; group: { zone: string }; sum_v: number })
      return recs.length >= 5 && recs
    }, 20_000, 'hopping windows')
    const seen = out.map((w) => `${w.group.zone}@${Date.parse(w.windowStart) - T}=${w.sum_v}`).sort()
    expect(seen).toEqual(['a@-1000=1', 'a@0=11', 'a@1000=10', 'b@-1000=2', 'b@0=2'])
  })

  it('raises an alert over an aggregate, writes it to the alerts topic and calls a webhook through a route on the alerts source', { timeout: 60_000 }, async () => {
    await put(gw.httpUrl, '/api/endpoints/pager', { type: 'webhook', url: hook.url, maxAttempts: 3 })
    await put(gw.httpUrl, '/api/routes/page-critical', { source: 'alerts', condition: "severity = 'critical' AND alertType = 'raised'", endpoints: ['pager'] })
    await put(gw.httpUrl, '/api/aggregates/avg1s', { window: { sizeMs: 1000 }, timestampBy: '$body.ts', functions: [{ fn: 'avg', path: '$body.temp' }], output: 'avg-out' })
    await put(gw.httpUrl, '/api/alert-rules/too-warm', { source: { aggregate: 'avg1s' }, condition: '$body.avg_temp > 50', forMs: 1000, severity: 'critical', value: '$body.avg_temp' })
    const client = await device(gw, 'warm-dev', clients)
    const T = Math.floor(Date.now() / 1000) * 1000 - 20_000
    // Window averages: 60 (T), 70 (T+1s), 80 (T+2s), 10 (T+3s); closed by the record at T+4s.
    for (const [dt, temp] of [[100, 60], [1100, 70], [2100, 80], [3100, 10], [4100, 10]] as const) await publishJson(client, 'warm-dev', { ts: T + dt, temp })
    const alerts = await waitFor(async () => {
      const recs = (await readAll(gw.gateway, 'alerts')).filter((r) => r.headers.rule === 'too-warm').map((r) => JSON.parse(r.value.toString()) as Record<string, unknown>)
      return recs.length >= 2 && recs
    }, 20_000, 'raised and cleared')
    // Raised at the second violating window (1 s after the first window's end), cleared by the fourth.
    expect(alerts.map((a) => [a.type, a.value, a.time])).toEqual([
      ['alert-raised', 70, new Date(T + 2000).toISOString()],
      ['alert-cleared', 10, new Date(T + 4000).toISOString()],
    ])
    const paged = await waitFor(() => hook.delivered().length >= 1 && hook.delivered(), 15_000, 'webhook call')
    expect(paged).toHaveLength(1)
    expect(JSON.parse(paged[0]!.body)).toMatchObject({ type: 'alert-raised', rule: 'too-warm', deviceId: 'warm-dev' })
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/streamgate_alert_events_total\{rule="too-warm",type="alert-raised"\} 1/)
    expect(metrics).toMatch(/streamgate_alerts_open\{rule="too-warm"\} 0/)
  })

  it('lists open alerts, and refuses to remove an aggregate an alert rule reads', { timeout: 60_000 }, async () => {
    await put(gw.httpUrl, '/api/alert-rules/hot-now', { condition: '$body.temp > 80', severity: 'info' })
    const client = await device(gw, 'hot-dev', clients)
    await publishJson(client, 'hot-dev', { temp: 99 })
    const open = await waitFor(async () => {
      const list = (await api(gw.httpUrl, 'GET', '/api/alerts')).body as { alerts: Array<{ rule: string; deviceId: string; value: unknown }> }
      return list.alerts.find((a) => a.rule === 'hot-now')
    }, 15_000, 'open alert')
    expect(open).toMatchObject({ deviceId: 'hot-dev', value: { temp: 99 } })
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/streamgate_alerts_open\{rule="hot-now"\} 1/)
    const refused = await api(gw.httpUrl, 'DELETE', '/api/aggregates/avg1s')
    expect([refused.status, errorCode(refused)]).toEqual([409, 'E_AGGREGATE_IN_USE'])
    expect((await api(gw.httpUrl, 'DELETE', '/api/alert-rules/hot-now')).status).toBe(204)
    const after = (await api(gw.httpUrl, 'GET', '/api/alerts')).body as { alerts: Array<{ rule: string }> }
    expect(after.alerts.filter((a) => a.rule === 'hot-now')).toEqual([])
    const missing = await api(gw.httpUrl, 'GET', '/api/alert-rules/hot-now')
    expect([missing.status, errorCode(missing)]).toEqual([404, 'E_ALERT_RULE_NOT_FOUND'])
  })
})
