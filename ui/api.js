/**
 * The public HTTP API, the only thing the console talks to. The admin token lives in this tab's
 * sessionStorage: it is gone when the tab closes and is never written anywhere else.
 */
const KEY = 'streamgate.adminToken'

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(KEY)
  },
  signIn(token) {
    sessionStorage.setItem(KEY, token)
  },
  signOut() {
    sessionStorage.removeItem(KEY)
  },
}

/** Resolves { data, headers }; rejects ApiError with the API's code and message. */
export async function api(method, path, body, headers = {}) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${session.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = text
  }
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? `HTTP_${res.status}`, data?.error?.message ?? res.statusText)
  return { data, headers: res.headers }
}

export const devicePath = (id) => `/api/devices/${encodeURIComponent(id)}`

function base64url(text) {
  let binary = ''
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte)
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
}

/**
 * The live tail (GET /api/streams/:topic/tail as a WebSocket). A browser cannot send the
 * Authorization header on a WebSocket, so the token goes as the protocol bearer.<base64url>.
 * Returns a handle with close().
 */
export function tail(topic, query, onRecord, onClosed = () => {}, onOpen = () => {}) {
  const url = new URL(`/api/streams/${encodeURIComponent(topic)}/tail`, location.href)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v))
  const ws = new WebSocket(url, ['streamgate.tail', `bearer.${base64url(session.token)}`])
  ws.onopen = () => onOpen()
  ws.onmessage = (event) => onRecord(JSON.parse(event.data))
  ws.onclose = (event) => onClosed(event)
  return { close: () => ws.close() }
}
