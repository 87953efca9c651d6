import { api, devicePath, tail } from './api.js'
import { h, fill, status, errorText, pretty, time, table } from './dom.js'

const KEEP_RECORDS = 200

/**
 * One device: identity and connection, connection history (device-events), the twin editor,
 * a direct method, cloud-to-device messages with their queue and feedback, and a live view of
 * its telemetry from now on. Live parts are tails of the stream filtered by the device's key.
 */
export function device(root, id) {
  const closers = []
  const timers = []
  const path = devicePath(id)
  const identity = h('div', { id: 'identity' })
  fill(
    root,
    h('p', {}, h('a', { href: '#/devices' }, '← devices')),
    h('h1', {}, 'Device ', h('span', { id: 'device-id' }, id)),
    h('section', { class: 'card' }, h('h2', {}, 'Identity and connection'), identity),
    telemetrySection(id, closers),
    h('div', { class: 'columns' }, twinSection(path), methodSection(path)),
    c2dSection(id, path, closers, timers),
    historySection(id, closers),
  )
  const refresh = async () => {
    try {
      const { data } = await api('GET', path)
      fill(
        identity,
        table(
          ['', ''],
          [
            ['status', data.status],
            ['auth method', data.authMethod],
            ['connection', h('span', { id: 'connection-state', class: data.connectionState === 'connected' ? 'ok' : 'muted' }, data.connectionState)],
            ['since', data.connectionStateUpdatedAt ?? '–'],
            ['instance', h('span', { id: 'device-instance' }, data.instanceId ?? '–')],
            ['on this instance', data.live ? `${data.live.transport} from ${data.live.remoteAddress} since ${data.live.connectedAt}` : 'no'],
            ['last activity', data.lastActivityAt ?? '–'],
            ['created', data.createdAt],
          ],
        ),
      )
    } catch (err) {
      fill(identity, h('p', { class: 'status error' }, errorText(err)))
    }
  }
  void refresh()
  timers.push(setInterval(refresh, 2000))
  return {
    stop: () => {
      for (const t of timers) clearInterval(t)
      for (const c of closers) c.close()
    },
  }
}

/** Telemetry of this device from now on: a tail of `telemetry` from the end, by key. */
function telemetrySection(id, closers) {
  const list = h('div', { id: 'live-telemetry', class: 'records' })
  const count = h('span', { class: 'muted', id: 'live-count' }, '0 messages')
  let paused = false
  let seen = 0
  const pause = h(
    'button',
    {
      type: 'button',
      id: 'pause-telemetry',
      onclick: () => {
        paused = !paused
        pause.textContent = paused ? 'resume' : 'pause'
      },
    },
    'pause',
  )
  const state = h('span', { class: 'muted', id: 'telemetry-state' }, ' connecting…')
  const open = () =>
    tail(
      'telemetry',
      { from: 'end', key: id },
      (record) => {
        seen++
        count.textContent = `${seen} messages${paused ? ' (paused)' : ''}`
        if (paused) return
        list.prepend(recordView(record))
        while (list.childElementCount > KEEP_RECORDS) list.lastElementChild.remove()
      },
      (event) => (state.textContent = ` closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`),
      () => (state.textContent = ' live'),
    )
  closers.push(open())
  return h('section', { class: 'card' }, h('h2', {}, 'Live telemetry', state), h('div', { class: 'inline' }, pause, count), list)
}

function recordView(record) {
  const headers = Object.entries(record.headers ?? {})
  const body = record.encoding === 'base64' ? `(binary, base64) ${record.value}` : pretty(record.value)
  return h(
    'div',
    { class: 'record' },
    h('div', { class: 'muted' }, `${time(record.timestamp)} · partition ${record.partition} · offset ${record.offset}`),
    headers.length ? h('dl', { class: 'props' }, headers.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])) : null,
    h('pre', { class: 'body' }, body),
  )
}

/** Desired properties edited as JSON and PATCHed with If-Match: a conflict is shown, not swallowed. */
function twinSection(path) {
  const desired = h('textarea', { id: 'desired-editor', rows: 10, cols: 50, spellcheck: 'false' })
  const reported = h('pre', { id: 'reported', class: 'body' })
  const version = h('span', { id: 'desired-version' })
  const line = h('p', { class: 'status', id: 'twin-status' })
  let loadedVersion = null
  const load = async () => {
    const { data } = await api('GET', `${path}/twin`)
    const { $version, ...rest } = data.desired ?? {}
    loadedVersion = $version
    desired.value = JSON.stringify(rest, null, 2)
    version.textContent = `version ${$version}`
    reported.textContent = JSON.stringify(data.reported ?? {}, null, 2)
  }
  const save = async (event) => {
    event.preventDefault()
    let patch
    try {
      patch = JSON.parse(desired.value)
    } catch (err) {
      return status(line, 'error', `not JSON: ${err.message}`)
    }
    try {
      const { data } = await api('PATCH', `${path}/twin`, { desired: patch }, { 'if-match': String(loadedVersion) })
      status(line, 'ok', `saved: desired is at version ${data.desired?.$version}`)
      await load()
    } catch (err) {
      status(line, 'error', err.code === 'E_TWIN_VERSION_MISMATCH' ? `version conflict: desired changed since version ${loadedVersion} was loaded (${err.message}). Reload to see it.` : errorText(err))
    }
  }
  void load().catch((err) => status(line, 'error', errorText(err)))
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Twin'),
    h('form', { onsubmit: save }, h('h3', {}, 'desired ', version), desired, h('div', {}, h('button', { type: 'submit', id: 'save-desired' }, 'Save desired'), h('button', { type: 'button', id: 'reload-twin', onclick: () => void load().then(() => status(line, '', 'reloaded'), (err) => status(line, 'error', errorText(err))) }, 'Reload'))),
    line,
    h('h3', {}, 'reported (read-only)'),
    reported,
  )
}

function methodSection(path) {
  const name = h('input', { id: 'method-name', placeholder: 'method name', required: true })
  const payload = h('textarea', { id: 'method-payload', rows: 4, cols: 40, spellcheck: 'false' }, '{}')
  const timeout = h('input', { id: 'method-timeout', type: 'number', min: 5, max: 300, value: '30' })
  const connectTimeout = h('input', { id: 'method-connect-timeout', type: 'number', min: 0, max: 300, value: '0' })
  const answer = h('pre', { id: 'method-answer', class: 'body' })
  const line = h('p', { class: 'status' })
  const invoke = async (event) => {
    event.preventDefault()
    let body
    try {
      body = payload.value.trim() === '' ? undefined : JSON.parse(payload.value)
    } catch (err) {
      return status(line, 'error', `payload is not JSON: ${err.message}`)
    }
    status(line, '', 'calling…')
    answer.textContent = ''
    try {
      const { data } = await api('POST', `${path}/methods/${encodeURIComponent(name.value)}`, { payload: body, responseTimeoutSeconds: Number(timeout.value), connectTimeoutSeconds: Number(connectTimeout.value) })
      status(line, 'ok', `answered ${data.status}`)
      answer.textContent = JSON.stringify(data, null, 2)
    } catch (err) {
      status(line, 'error', errorText(err))
    }
  }
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Direct method'),
    h('form', { onsubmit: invoke }, name, h('label', {}, 'payload (JSON)', payload), h('label', {}, 'answer within (s) ', timeout), h('label', {}, 'wait for connection (s) ', connectTimeout), h('button', { type: 'submit', id: 'invoke-method' }, 'Invoke')),
    line,
    answer,
  )
}

/** Send with properties and TTL; the queue (GET messages) and the feedback (a tail of command-feedback). */
function c2dSection(id, path, closers, timers) {
  const payload = h('textarea', { id: 'c2d-payload', rows: 3, cols: 40, spellcheck: 'false' })
  const props = h('textarea', { id: 'c2d-properties', rows: 2, cols: 40, placeholder: 'key=value, one per line', spellcheck: 'false' })
  const ttl = h('input', { id: 'c2d-ttl', type: 'number', min: 60, placeholder: 'TTL seconds (default 3600)' })
  const line = h('p', { class: 'status', id: 'c2d-status' })
  const queue = h('div', { id: 'c2d-queue' })
  const feedback = h('div', { id: 'c2d-feedback' })
  const ended = []
  const send = async (event) => {
    event.preventDefault()
    const properties = {}
    for (const text of props.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const eq = text.indexOf('=')
      if (eq <= 0) return status(line, 'error', `property "${text}" is not key=value`)
      properties[text.slice(0, eq)] = text.slice(eq + 1)
    }
    try {
      const { data } = await api('POST', `${path}/messages`, { payload: payload.value, properties, ...(ttl.value ? { ttlSeconds: Number(ttl.value) } : {}) })
      status(line, 'ok', `queued ${data.messageId} (expires ${data.expiryTime})`)
      await showQueue()
    } catch (err) {
      status(line, 'error', errorText(err))
    }
  }
  const showQueue = async () => {
    try {
      const { data } = await api('GET', `${path}/messages`)
      fill(queue, table(['message id', 'deliveries', 'queued', 'expires'], data.messages.map((m) => [m.messageId, String(m.deliveryCount), m.enqueuedTime, m.expiryTime]), 'queue empty'))
    } catch (err) {
      fill(queue, h('p', { class: 'status error' }, errorText(err)))
    }
  }
  closers.push(
    tail('command-feedback', { from: 'end', key: id }, (record) => {
      let f
      try {
        f = JSON.parse(record.value)
      } catch {
        return
      }
      ended.unshift(f)
      if (ended.length > 50) ended.pop()
      fill(feedback, table(['message id', 'ended as', 'reason', 'at'], ended.map((x) => [x.messageId, h('span', { class: `feedback-${x.status}` }, x.status), x.reason ?? '', x.time ?? x.enqueuedTime ?? '']), ''))
      void showQueue()
    }),
  )
  void showQueue()
  timers.push(setInterval(showQueue, 3000))
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Cloud-to-device messages'),
    h('form', { onsubmit: send }, h('label', {}, 'payload', payload), h('label', {}, 'properties', props), ttl, h('button', { type: 'submit', id: 'send-c2d' }, 'Send')),
    line,
    h('div', { class: 'columns' }, h('div', {}, h('h3', {}, 'queued'), queue), h('div', {}, h('h3', {}, 'feedback since this page opened'), feedback)),
  )
}

/** connected / disconnected / created / twin events of this device, from device-events. */
function historySection(id, closers) {
  const rows = []
  const list = h('div', { id: 'history' }, h('p', { class: 'muted' }, 'no events yet'))
  closers.push(
    tail('device-events', { lines: 1000, key: id }, (record) => {
      let event = {}
      try {
        event = JSON.parse(record.value)
      } catch {
        /* shown as text below */
      }
      rows.unshift([time(record.timestamp), event.type ?? record.headers?.['event-type'] ?? '', record.value.length > 200 ? `${record.value.slice(0, 200)}…` : record.value])
      if (rows.length > 100) rows.pop()
      fill(list, table(['at', 'event', 'record'], rows))
    }),
  )
  return h('section', { class: 'card' }, h('h2', {}, 'Connection history'), list)
}
