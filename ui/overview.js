import { api } from './api.js'
import { h, fill, table, errorText, time } from './dom.js'
import { parseMetrics, total, byLabel, quantile } from './metrics.js'

const EVERY_MS = 2000
const KEEP_POINTS = 150 // five minutes at one point every 2 s

/**
 * Overview: devices connected, messages in and out per second, PUBACK latency (the time from a
 * publish reaching the gateway to its record being durable, which is when the PUBACK goes out),
 * refused connects and publishes by code, stream readiness and the instances. Figures come from
 * GET /metrics (this instance), GET /readyz and GET /api/instances every 2 s; the charts keep
 * the last five minutes seen by this tab.
 */
export function overview(root) {
  const cards = h('div', { class: 'cards' })
  const ready = h('div')
  const refused = h('div', { class: 'columns' })
  const instances = h('div')
  const throughputChart = h('div', { class: 'chart', id: 'chart-throughput' })
  const latencyChart = h('div', { class: 'chart', id: 'chart-latency' })
  const problem = h('p', { class: 'status' })
  fill(
    root,
    h('h1', {}, 'Overview'),
    problem,
    cards,
    h('section', { class: 'card' }, h('h2', {}, 'Messages per second'), throughputChart),
    h('section', { class: 'card' }, h('h2', {}, 'PUBACK latency (ms)'), latencyChart),
    h('section', { class: 'card' }, h('h2', {}, 'Stream readiness'), ready),
    h('section', { class: 'card' }, h('h2', {}, 'Refused'), refused),
    h('section', { class: 'card' }, h('h2', {}, 'Instances'), instances),
  )

  const series = { t: [], in: [], out: [], p50: [], p99: [] }
  const width = () => Math.max(320, root.clientWidth - 48)
  const plot = (el, labels, colours) =>
    new uPlot({ width: width(), height: 200, series: [{}, ...labels.map((label, i) => ({ label, stroke: colours[i], width: 2 }))], axes: [{}, { size: 60 }] }, [[], ...labels.map(() => [])], el)
  const throughput = plot(throughputChart, ['in (telemetry)', 'out (C2D completed + methods)'], ['#2a6fdb', '#d9822b'])
  const latency = plot(latencyChart, ['p50', 'p99'], ['#2a9d55', '#c0392b'])

  let previous = null
  let previousAt = 0
  const tick = async () => {
    try {
      const now = Date.now()
      const samples = parseMetrics(await (await fetch('/metrics')).text())
      const inTotal = total(samples, 'streamgate_telemetry_records_total')
      const outTotal = total(samples, 'streamgate_c2d_feedback_total', (l) => l.status === 'completed') + total(samples, 'streamgate_methods_total')
      let rates = { in: 0, out: 0 }
      let p50 = null
      let p99 = null
      if (previous) {
        const s = (now - previousAt) / 1000
        rates = { in: (inTotal - previous.inTotal) / s, out: (outTotal - previous.outTotal) / s }
        p50 = quantile(previous.samples, samples, 'streamgate_ingest_durable_seconds', 0.5)
        p99 = quantile(previous.samples, samples, 'streamgate_ingest_durable_seconds', 0.99)
        series.t.push(now / 1000)
        series.in.push(rates.in)
        series.out.push(rates.out)
        series.p50.push(p50 === null ? null : p50 * 1000)
        series.p99.push(p99 === null ? null : p99 * 1000)
        for (const list of Object.values(series)) if (list.length > KEEP_POINTS) list.shift()
        throughput.setData([series.t, series.in, series.out])
        latency.setData([series.t, series.p50, series.p99])
      }
      previous = { samples, inTotal, outTotal }
      previousAt = now
      const ms = (v) => (v === null ? '–' : `${(v * 1000).toFixed(1)} ms`)
      fill(
        cards,
        card('connected now', total(samples, 'streamgate_mqtt_connections').toLocaleString(), 'connected-now'),
        card('messages in /s', rates.in.toFixed(1), 'rate-in'),
        card('messages out /s', rates.out.toFixed(1), 'rate-out'),
        card('PUBACK p50', ms(p50), 'puback-p50'),
        card('PUBACK p99', ms(p99), 'puback-p99'),
        card('C2D queued', total(samples, 'streamgate_c2d_queued_messages').toLocaleString(), 'c2d-queued'),
      )
      const connects = byLabel(samples, 'streamgate_auth_failures_total', 'code')
      const publishes = [...byLabel(samples, 'streamgate_acl_denials_total', 'code', (l) => l.action === 'publish'), ...byLabel(samples, 'streamgate_protocol_errors_total', 'code')]
      fill(
        refused,
        h('div', {}, h('h3', {}, 'connects, by code'), table(['code', 'since start'], connects.map(([c, n]) => [c, n.toLocaleString()]), 'none refused')),
        h('div', {}, h('h3', {}, 'publishes and protocol errors, by code'), table(['code', 'since start'], publishes.map(([c, n]) => [c, n.toLocaleString()]), 'none refused')),
      )
      const readyz = await fetch('/readyz')
      const report = await readyz.json().catch(() => ({}))
      fill(ready, h('p', { class: readyz.ok ? 'ok' : 'error', id: 'readiness' }, readyz.ok ? 'ready: the stream takes records' : `not ready: ${JSON.stringify(report)}`))
      const list = await api('GET', '/api/instances').then((r) => r.data.instances, () => null)
      fill(
        instances,
        Array.isArray(list)
          ? table(
              ['instance', 'address', 'stream', 'connections', 'heartbeat', 'state'],
              list.map((i) => [i.instanceId + (i.self ? ' (this one)' : ''), i.advertiseUrl, i.streamBackend, i.connections.toLocaleString(), time(Date.parse(i.heartbeatAt)), i.alive ? 'alive' : 'gone']),
              'no instance registered',
            )
          : h('p', { class: 'muted' }, 'instances unavailable'),
      )
      problem.textContent = ''
    } catch (err) {
      problem.className = 'status error'
      problem.textContent = errorText(err)
    }
  }
  void tick()
  const timer = setInterval(tick, EVERY_MS)
  return { stop: () => clearInterval(timer) }
}

function card(label, value, id) {
  return h('div', { class: 'stat' }, h('div', { class: 'value', id }, value), h('div', { class: 'label' }, label))
}
