import { api, devicePath } from './api.js'
import { h, fill, status, errorText, table } from './dom.js'

const PAGE = 100

/**
 * Devices: search by id prefix (GET /api/devices?prefix=), narrowed by status and connection on
 * the page; add a device (its connection string shown once, with a copy button); enable,
 * disable, rotate the primary key, kick and remove.
 */
export function devices(root) {
  const prefix = h('input', { type: 'search', id: 'device-search', placeholder: 'id starts with…', size: 24 })
  const statusFilter = h('select', { id: 'status-filter' }, ['any status', 'enabled', 'disabled'].map((v) => h('option', { value: v }, v)))
  const connFilter = h('select', { id: 'connection-filter' }, ['connected or not', 'connected', 'disconnected'].map((v) => h('option', { value: v }, v)))
  const list = h('div', { id: 'device-list' })
  const more = h('button', { type: 'button', hidden: true }, 'more')
  const line = h('p', { class: 'status' })
  const issued = h('div', { id: 'issued' })
  let after = null
  let shown = []

  const newId = h('input', { name: 'deviceId', id: 'new-device-id', placeholder: 'device id', required: true, maxlength: 128 })
  const auth = h('select', { name: 'authMethod', id: 'new-device-auth' }, h('option', { value: 'sas' }, 'SAS keys'), h('option', { value: 'password' }, 'password'))
  const password = h('input', { name: 'password', type: 'password', id: 'new-device-password', placeholder: 'password (password devices)', autocomplete: 'new-password' })
  const addForm = h(
    'form',
    {
      class: 'inline',
      onsubmit: async (event) => {
        event.preventDefault()
        const body = { deviceId: newId.value.trim(), authMethod: auth.value, ...(auth.value === 'password' ? { password: password.value } : {}) }
        try {
          const { data } = await api('POST', '/api/devices', body)
          status(line, 'ok', `Added ${data.deviceId}.`)
          showIssued(data)
          newId.value = ''
          password.value = ''
          await load(true)
        } catch (err) {
          status(line, 'error', errorText(err))
        }
      },
    },
    newId,
    auth,
    password,
    h('button', { type: 'submit', id: 'add-device' }, 'Add device'),
  )

  function showIssued(device) {
    if (!device.connectionString) return fill(issued)
    const text = h('code', { id: 'connection-string' }, device.connectionString)
    const copied = h('span', { class: 'muted' })
    fill(
      issued,
      h(
        'div',
        { class: 'card notice' },
        h('p', {}, `Connection string of ${device.deviceId} (shown this once):`),
        text,
        h(
          'button',
          {
            type: 'button',
            id: 'copy-connection-string',
            onclick: async () => {
              try {
                await navigator.clipboard.writeText(device.connectionString)
                copied.textContent = ' copied'
              } catch {
                getSelection().selectAllChildren(text)
                copied.textContent = ' selected: press Ctrl-C'
              }
            },
          },
          'Copy',
        ),
        copied,
      ),
    )
  }

  async function act(id, what, call) {
    try {
      const { data } = await call()
      status(line, 'ok', `${what} ${id}.`)
      if (data && data.connectionString) showIssued(data)
      await load(true)
    } catch (err) {
      status(line, 'error', errorText(err))
    }
  }

  function row(d) {
    const connected = d.connectionState === 'connected'
    return [
      h('a', { href: `#/devices/${encodeURIComponent(d.deviceId)}`, class: 'device-link' }, d.deviceId),
      d.status,
      d.authMethod,
      h('span', { class: connected ? 'ok' : 'muted' }, d.connectionState),
      d.lastActivityAt ?? '–',
      h(
        'span',
        { class: 'actions' },
        d.status === 'enabled'
          ? h('button', { type: 'button', onclick: () => act(d.deviceId, 'Disabled', () => api('PATCH', devicePath(d.deviceId), { status: 'disabled' })) }, 'disable')
          : h('button', { type: 'button', onclick: () => act(d.deviceId, 'Enabled', () => api('PATCH', devicePath(d.deviceId), { status: 'enabled' })) }, 'enable'),
        d.authMethod === 'sas' ? h('button', { type: 'button', onclick: () => act(d.deviceId, 'Rotated the primary key of', () => api('POST', `${devicePath(d.deviceId)}/keys/rotate`, { key: 'primary' })) }, 'rotate key') : null,
        h('button', { type: 'button', onclick: () => act(d.deviceId, 'Disconnected', () => api('POST', `${devicePath(d.deviceId)}/disconnect`)) }, 'kick'),
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: () => {
              if (confirm(`Remove ${d.deviceId}? Its queue and session go with it.`)) void act(d.deviceId, 'Removed', () => api('DELETE', devicePath(d.deviceId)))
            },
          },
          'remove',
        ),
      ),
    ]
  }

  function render() {
    const keep = shown.filter((d) => (statusFilter.value === 'any status' || d.status === statusFilter.value) && (connFilter.value === 'connected or not' || d.connectionState === connFilter.value))
    fill(list, table(['device', 'status', 'auth', 'connection', 'last activity', ''], keep.map(row), 'no devices match'))
    more.hidden = after === null
  }

  async function load(fresh) {
    if (fresh) {
      after = null
      shown = []
    }
    const query = new URLSearchParams({ limit: String(PAGE) })
    if (prefix.value) query.set('prefix', prefix.value)
    if (after) query.set('after', after)
    try {
      const { data } = await api('GET', `/api/devices?${query}`)
      shown.push(...data.devices)
      after = data.next
      render()
    } catch (err) {
      status(line, 'error', errorText(err))
    }
  }

  let debounce = null
  prefix.addEventListener('input', () => {
    clearTimeout(debounce)
    debounce = setTimeout(() => void load(true), 250)
  })
  statusFilter.addEventListener('change', render)
  connFilter.addEventListener('change', render)
  more.addEventListener('click', () => void load(false))

  fill(root, h('h1', {}, 'Devices'), h('section', { class: 'card' }, addForm, issued), line, h('div', { class: 'inline' }, prefix, statusFilter, connFilter), list, more)
  void load(true)
  const timer = setInterval(() => void load(true), 5000)
  return { stop: () => clearInterval(timer) }
}
