import { api } from './api.js'
import { h, fill, every, status, errorText, table } from './dom.js'

/**
 * Routes, endpoints, aggregates and alerts: endpoint health, counters and lag (GET /api/routes),
 * a box that tests a condition against a sample message (POST /api/routes/test), the aggregates
 * (GET /api/aggregates) and the open alerts (GET /api/alerts), refreshed every 3 s.
 */
export function processing(root) {
  const endpoints = h('div', { id: 'endpoints' })
  const routes = h('div', { id: 'routes' })
  const aggregates = h('div', { id: 'aggregates' })
  const alerts = h('div', { id: 'alerts' })
  const line = h('p', { class: 'status' })
  fill(
    root,
    h('h1', {}, 'Routes, aggregates and alerts'),
    line,
    h('section', { class: 'card' }, h('h2', {}, 'Endpoints'), endpoints),
    h('section', { class: 'card' }, h('h2', {}, 'Routes'), routes),
    testBox(),
    h('section', { class: 'card' }, h('h2', {}, 'Aggregates'), aggregates),
    h('section', { class: 'card' }, h('h2', {}, 'Open alerts'), alerts),
  )
  return every(3000, line, async () => {
    const { data } = await api('GET', '/api/routes')
    fill(
      endpoints,
      table(
        ['endpoint', 'type', 'health', 'lag', 'delivered', 'failed attempts', 'dead-lettered', 'last error'],
        data.endpoints.map((e) => [e.name, e.type, h('span', { class: `health-${e.health}` }, e.health), Object.entries(e.lag).map(([t, n]) => `${t}: ${n}`).join(', ') || '–', String(e.delivered), String(e.failedAttempts), String(e.deadLettered), e.lastError ? `${e.lastError.code}: ${e.lastError.message}` : '–']),
        'no endpoints',
      ),
    )
    fill(
      routes,
      table(
        ['route', 'source', 'condition', 'endpoints', 'enabled', 'matched', 'undefined condition'],
        data.routes.map((r) => [r.name, r.source, h('code', {}, r.condition), r.endpoints.join(', '), r.enabled ? 'yes' : 'no', sum(r.matched), sum(r.undefinedCondition)]),
        'no routes',
      ),
    )
    const agg = await api('GET', '/api/aggregates')
    fill(aggregates, table(['aggregate', 'definition', 'status'], agg.data.aggregates.map((a) => [a.name, h('code', {}, JSON.stringify({ ...a, name: undefined, status: undefined })), h('code', {}, JSON.stringify(a.status))]), 'no aggregates'))
    const open = await api('GET', '/api/alerts')
    fill(alerts, table(['rule', 'device', 'severity', 'since', 'raised', 'value'], open.data.alerts.map((a) => [a.rule, a.deviceId, a.severity, a.since, a.raisedAt, JSON.stringify(a.value)]), 'no open alerts'))
  })
}

function sum(counts) {
  return String(Object.values(counts ?? {}).reduce((a, b) => a + b, 0))
}

function testBox() {
  const condition = h('input', { id: 'test-condition', size: 60, placeholder: "e.g. $body.temp > 30 AND room = 'kitchen'", value: 'true' })
  const body = h('textarea', { id: 'test-body', rows: 4, cols: 50, spellcheck: 'false' }, '{"temp": 31}')
  const props = h('input', { id: 'test-properties', size: 40, placeholder: 'room=kitchen&level=2' })
  const result = h('pre', { id: 'test-result', class: 'body' })
  const line = h('p', { class: 'status' })
  const run = async (event) => {
    event.preventDefault()
    let parsed
    try {
      parsed = JSON.parse(body.value)
    } catch {
      parsed = body.value
    }
    const properties = Object.fromEntries(new URLSearchParams(props.value))
    try {
      const { data } = await api('POST', '/api/routes/test', { condition: condition.value, message: { body: parsed, properties } })
      status(line, data.matched ? 'ok' : '', data.matched ? 'matched' : 'did not match')
      result.textContent = `${data.reason}\n\n${data.steps.map((s) => `${s.text} → ${JSON.stringify(s.value)}`).join('\n')}`
    } catch (err) {
      status(line, 'error', errorText(err))
      result.textContent = ''
    }
  }
  return h('section', { class: 'card' }, h('h2', {}, 'Test a condition'), h('form', { onsubmit: run }, condition, h('label', {}, 'sample body', body), h('label', {}, 'properties ', props), h('button', { type: 'submit', id: 'run-test' }, 'Test')), line, result)
}
