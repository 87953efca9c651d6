import type { SimReport } from './build.js'
import { lineChart, type Marker } from './svg-chart.js'

/**
 * --html FILE: one self-contained page. The verdict first (delivered, lost, latency), then
 * throughput and latency over time, then the detail tables.
 */

const fmt = (n: number | null, digits = 0): string => (n === null ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }))

function esc(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
}

function card(label: string, value: string, note: string, tone: 'good' | 'bad' | 'plain' = 'plain'): string {
  return `<div class="card ${tone}"><div class="label">${esc(label)}</div><div class="value">${esc(value)}</div><div class="note">${esc(note)}</div></div>`
}

function cards(r: SimReport): string {
  const c = r.counts
  const delivered = c.stored ?? c.acked
  const deliveredPct = c.sent === 0 ? 100 : (delivered / c.sent) * 100
  const puback = r.latencyMs.puback
  const e2e = r.latencyMs.e2e
  return [
    card('connections made', fmt(c.connects), `${fmt(r.devices)} devices · ${fmt(c.disconnects)} dropped · ${fmt(c.connectFailures)} failed attempts`),
    card('messages sent', fmt(c.sent), `${fmt(r.throughput.sentPerS, 1)} msgs/s of ${fmt(r.throughput.targetPerS, 1)} asked`),
    card(c.stored === null ? 'acknowledged' : 'stored in the stream', `${fmt(deliveredPct, 2)} %`, `${fmt(delivered)} of ${fmt(c.sent)}`, deliveredPct >= 100 ? 'good' : 'bad'),
    card('lost', fmt(c.lost), `counted by ${r.lossBasis}; ${fmt(c.duplicated)} duplicated`, c.lost === 0 ? 'good' : 'bad'),
    card('PUBACK p99', puback.count ? `${fmt(puback.p99, 2)} ms` : '–', puback.count ? `p50 ${fmt(puback.p50, 2)} ms · p99.9 ${fmt(puback.p999, 2)} ms` : 'no QoS 1 messages'),
    card('end to end p99', e2e.count ? `${fmt(e2e.p99, 2)} ms` : '–', e2e.count ? `p50 ${fmt(e2e.p50, 2)} ms · publish → readable in the stream` : 'stream not read (--data-dir)'),
  ].join('\n')
}

function markers(r: SimReport): Marker[] {
  return r.events.map((e) =>
    e.type === 'reconnect-storm'
      ? { label: `storm: ${e.percent}% dropped`, from: e.at }
      : { label: `churn ${e.perSecond}/s`, from: e.from, ...(e.to === undefined ? { to: r.durationS } : { to: e.to }) },
  )
}

function charts(r: SimReport): string {
  const t = r.timeline
  const m = markers(r)
  const throughput = lineChart('Throughput over time', 'messages per second', [
    { name: 'sent', color: '#2563eb', points: t.map((p) => [p.second, p.sent]) },
    { name: 'acked (QoS 1)', color: '#16a34a', points: t.map((p) => [p.second, p.acked]), dashed: true },
    { name: 'stored', color: '#f59e0b', points: r.counts.stored === null ? [] : t.map((p) => [p.second, p.stored]) },
  ], m)
  const latency = lineChart('Latency over time', 'milliseconds, per second of the run', [
    { name: 'PUBACK p50', color: '#16a34a', points: t.filter((p) => p.pubackP99 > 0).map((p) => [p.second, p.pubackP50]) },
    { name: 'PUBACK p99', color: '#15803d', points: t.filter((p) => p.pubackP99 > 0).map((p) => [p.second, p.pubackP99]), dashed: true },
    { name: 'end to end p50', color: '#f59e0b', points: t.filter((p) => p.e2eP99 > 0).map((p) => [p.second, p.e2eP50]) },
    { name: 'end to end p99', color: '#b45309', points: t.filter((p) => p.e2eP99 > 0).map((p) => [p.second, p.e2eP99]), dashed: true },
  ], m)
  const connected = lineChart(
    'Connections',
    'devices; connections lost per second',
    [
      { name: 'connected', color: '#7c3aed', points: t.map((p) => [p.second, p.connected]) },
      { name: 'lost per second', color: '#dc2626', points: t.map((p) => [p.second, p.disconnects]) },
    ],
    m,
  )
  return [throughput, latency, connected].join('\n')
}

function tables(r: SimReport): string {
  const rows = Object.entries(r.latencyMs)
    .filter(([, s]) => s.count > 0)
    .map(([name, s]) => `<tr><th>${esc(name)}</th><td>${fmt(s.count)}</td>${[s.p50, s.p90, s.p99, s.p999, s.max].map((v) => `<td>${fmt(v, 2)}</td>`).join('')}</tr>`)
  const errors = Object.entries(r.errors).sort(([, a], [, b]) => b - a)
  const errorRows = errors.length === 0 ? '<tr><td colspan="2">none</td></tr>' : errors.map(([code, n]) => `<tr><th>${esc(code)}</th><td>${fmt(n)}</td></tr>`).join('')
  const counts = Object.entries(r.counts).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${fmt(v)}</td></tr>`).join('')
  return `<section class="tables">
<div><h2>Latency (ms)</h2><table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>${rows.join('')}</table></div>
<div><h2>Counts</h2><table>${counts}</table></div>
<div><h2>Errors by code</h2><table>${errorRows}</table></div>
</section>`
}

const STYLE = `body{font-family:system-ui,sans-serif;margin:24px auto;max-width:920px;color:#111827;background:#f9fafb}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 8px}.sub{color:#6b7280;margin-bottom:20px;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:12px;margin-bottom:20px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px}.card .label{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:26px;font-weight:600;margin:4px 0}.card .note{font-size:12px;color:#6b7280}.card.good .value{color:#15803d}.card.bad .value{color:#b91c1c}
figure{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:0 0 16px;padding:12px}figcaption{font-weight:600;font-size:14px;margin-bottom:4px}.unit{font-weight:400;color:#6b7280}
.tables{display:grid;grid-template-columns:1.6fr 1fr 1fr;gap:12px}table{border-collapse:collapse;background:#fff;font-size:12px;width:100%}
th,td{border:1px solid #e5e7eb;padding:3px 6px;text-align:right}th{text-align:left;font-weight:500}`

export function renderHtml(r: SimReport): string {
  const groups = r.groups.map((g) => `${g.count} × ${g.name} (${g.driver}, ${g.rate}/s, QoS ${g.qos})`).join(', ')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamgate-sim ${esc(r.runId)}</title><style>${STYLE}</style></head>
<body><h1>Fleet simulation against ${esc(r.gateway)}</h1>
<div class="sub">${esc(r.startedAt)} · ${fmt(r.durationS, 1)} s · ${esc(groups)} · ${r.workers} process(es) · run ${esc(r.runId)}</div>
<section class="cards">${cards(r)}</section>
${charts(r)}
${tables(r)}
</body></html>
`
}
