import { api, session } from './api.js'
import { h, fill, status, errorText } from './dom.js'
import { overview } from './overview.js'
import { devices } from './devices.js'
import { device } from './device.js'
import { processing } from './processing.js'
import { streams } from './streams.js'

/**
 * The console's shell: sign-in, the navigation, and a hash router. Each view is a function
 * (root, ...params) that fills `root` and returns { stop() } to end its timers and live tails
 * when the user goes elsewhere.
 */
const VIEWS = [
  [/^#\/overview$/, overview],
  [/^#\/devices$/, devices],
  [/^#\/devices\/(.+)$/, device],
  [/^#\/processing$/, processing],
  [/^#\/streams$/, streams],
]

const main = document.getElementById('main')
const nav = document.getElementById('nav')
let current = null

function render() {
  current?.stop?.()
  current = null
  fill(main)
  nav.hidden = !session.token
  if (!session.token) return signIn()
  const hash = location.hash || '#/overview'
  for (const [pattern, view] of VIEWS) {
    const match = pattern.exec(hash)
    if (match) {
      for (const link of nav.querySelectorAll('a')) link.classList.toggle('active', hash.startsWith(link.getAttribute('href')))
      current = view(main, ...match.slice(1).map(decodeURIComponent))
      return
    }
  }
  location.hash = '#/overview'
}

function signIn() {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'admin token', required: true, size: 48 })
  const line = h('p', { class: 'status' })
  const form = h(
    'form',
    {
      class: 'card sign-in',
      onsubmit: async (event) => {
        event.preventDefault()
        session.signIn(input.value.trim())
        try {
          await api('GET', '/api/devices?limit=1')
          render()
        } catch (err) {
          session.signOut()
          status(line, 'error', err.status === 401 ? 'That token is not the admin token (E_UNAUTHORIZED).' : errorText(err))
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'The admin token is in the data directory (data/admin-token) or the gateway configuration. It is kept for this tab only.'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    line,
  )
  fill(main, form)
  input.focus()
}

document.getElementById('sign-out').addEventListener('click', () => {
  session.signOut()
  render()
})
window.addEventListener('hashchange', render)
render()
