import { request as httpRequest } from 'node:http'
import WebSocket from 'ws'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, sasFor, startTestGateway, waitFor } from '../helpers/gateway.js'
import { api, TOKEN } from '../helpers/commands.js'
import { OVERRIDES, UNAUTHORIZED, expectServing, fixture, refused, type Fixture } from '../helpers/routing-hostile.js'

/**
 * What the operations console added, under attack: the static files at /ui (paths built to leave
 * the folder), the new API routes without the token or with hostile input (GET /api/streams,
 * POST /api/devices/:id/disconnect, ?prefix=), and the live tail's browser sign-in (the token as
 * a WebSocket protocol: wrong, malformed, oversized) and its ?key= filter. Every refusal has its
 * status and code, nothing outside ui/ is ever served, and the gateway keeps serving.
 */
function raw(base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; text: string }> {
  const { port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: Number(port), method: 'GET', path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Open the tail; resolves the socket, or the HTTP status it was refused with. */
function openTail(base: string, query: string, protocols: string[] | undefined, headers: Record<string, string> = {}): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/streams/telemetry/tail${query}`, protocols, { headers })
    ws.once('open', () => resolve({ ws }))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    ws.once('error', () => resolve({ status: -1 }))
  })
}

const b64url = (text: string): string => Buffer.from(text).toString('base64url')

describe('hostile: the console and the API routes it uses', () => {
  let f: Fixture

  beforeAll(async () => {
    f = await fixture(await startTestGateway(OVERRIDES), 'console-canary')
  })
  afterAll(async () => {
    await f?.canary.endAsync(true).catch(() => undefined)
    await f?.gw.stop()
  })
  afterEach(async () => {
    await expectServing(f)
  })

  it('serves only the console files: no path leaves ui/', async () => {
    const index = await raw(f.gw.httpUrl, '/ui/')
    expect(index.status).toBe(200)
    expect(index.type).toBe('text/html; charset=utf-8')
    const paths = [
      '/ui/../package.json',
      '/ui/%2e%2e/package.json',
      '/ui/%2E%2E%2Fpackage.json',
      '/ui/..%2f..%2fpackage.json',
      '/ui/vendor/../../package.json',
      '/ui/vendor/%2e%2e/%2e%2e/package.json',
      '/ui//etc/passwd',
      '/ui/%2fetc%2fpasswd',
      '/ui/app.js%00.html',
      '/ui/.env',
      '/ui/node_modules/uplot/package.json',
      '/ui/vendor/uPlot.esm.js',
      `/ui/${'a/'.repeat(2000)}x.js`,
      '/ui/%ff%fe',
    ]
    for (const path of paths) {
      const res = await raw(f.gw.httpUrl, path)
      expect([400, 404], `${path} -> ${res.status}`).toContain(res.status)
      expect(res.type, path).toContain('application/json')
      expect(res.text, path).not.toContain('"devDependencies"')
      expect(res.text, path).not.toContain('root:')
      expect(res.text.length, path).toBeLessThan(600)
    }
    // The 404 names the path as JSON text, never as a page that could run it.
    const echoed = await raw(f.gw.httpUrl, '/ui/%3Cscript%3Ealert(1)%3C%2Fscript%3E')
    expect(echoed.status).toBe(404)
    expect(echoed.type).toContain('application/json')
    // Every file carries the policy.
    for (const file of ['/ui/', '/ui/app.js', '/ui/style.css', '/ui/vendor/uPlot.iife.min.js']) {
      const res = await fetch(f.gw.httpUrl + file)
      expect(res.status, file).toBe(200)
      expect(res.headers.get('content-security-policy'), file).toContain("script-src 'self'")
      expect(res.headers.get('x-content-type-options'), file).toBe('nosniff')
      await res.arrayBuffer()
    }
  })

  it('answers 401 without the admin token on the routes the console added', async () => {
    await f.gw.gateway.registry.create({ deviceId: 'kick-target' })
    for (const [method, path] of [
      ['GET', '/api/streams'],
      ['POST', '/api/devices/kick-target/disconnect'],
      ['GET', '/api/devices?prefix=kick'],
    ] as const) {
      for (const token of [null, '', 'wrong', TOKEN.slice(0, -1)]) {
        const res = await api(f.gw.httpUrl, method, path, undefined, { token })
        expect({ method, path, token, status: res.status, body: res.body }).toEqual({ method, path, token, status: 401, body: UNAUTHORIZED })
      }
    }
  })

  it('kicks a connected device, and refuses an unknown or malformed one', async () => {
    const device = await f.gw.gateway.registry.create({ deviceId: 'to-kick' })
    const client = await connectDevice(f.gw.mqttUrl, 'to-kick', sasFor(device), { reconnectPeriod: 0 })
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    const res = await api(f.gw.httpUrl, 'POST', '/api/devices/to-kick/disconnect')
    expect(res).toEqual({ status: 202, body: { deviceId: 'to-kick', disconnecting: true } })
    await closed
    refused(await api(f.gw.httpUrl, 'POST', '/api/devices/nobody/disconnect'), 404, 'E_DEVICE_NOT_FOUND')
    refused(await api(f.gw.httpUrl, 'POST', '/api/devices/has%20space/disconnect'), 404, 'E_DEVICE_NOT_FOUND')
  })

  it('bounds ?prefix= and takes it as plain text', async () => {
    refused(await api(f.gw.httpUrl, 'GET', `/api/devices?prefix=${'p'.repeat(129)}`), 400, 'E_BAD_REQUEST', 'prefix')
    for (const prefix of ["%' OR 1=1 --", '_', '%', '\\', "'; DROP TABLE devices; --"]) {
      const res = await api(f.gw.httpUrl, 'GET', `/api/devices?prefix=${encodeURIComponent(prefix)}`)
      expect(res, prefix).toEqual({ status: 200, body: { devices: [], next: null } })
    }
    expect((await api(f.gw.httpUrl, 'GET', '/api/devices?prefix=a&prefix=b')).status).toBe(400)
    // Still there.
    expect((await api(f.gw.httpUrl, 'GET', '/api/devices?prefix=console-')).body).toMatchObject({ devices: [{ deviceId: 'console-canary' }] })
  })

  it("refuses the tail's browser sign-in with a wrong, malformed or oversized token protocol", async () => {
    // Sent as raw upgrade requests: a WebSocket client would refuse to send the malformed ones.
    const upgrade = (protocol: string | null) =>
      raw(f.gw.httpUrl, '/api/streams/telemetry/tail?from=end', {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': Buffer.from('0123456789abcdef').toString('base64'),
        ...(protocol === null ? {} : { 'sec-websocket-protocol': protocol }),
      })
    const cases: Array<[string, string | null]> = [
      ['wrong token', `streamgate.tail, bearer.${b64url('wrong')}`],
      ['token one character short', `streamgate.tail, bearer.${b64url(TOKEN.slice(0, -1))}`],
      ['token with a suffix', `streamgate.tail, bearer.${b64url(`${TOKEN}x`)}`],
      ['not base64url', 'streamgate.tail, bearer.abc+/='],
      ['empty', 'streamgate.tail, bearer.'],
      ['no token at all', 'streamgate.tail'],
      ['no protocol header', null],
      ['oversized', `streamgate.tail, bearer.${'A'.repeat(5000)}`],
      ['the token in the wrong scheme', `streamgate.tail, basic.${b64url(TOKEN)}`],
    ]
    for (const [label, protocol] of cases) {
      const res = await upgrade(protocol)
      expect(res.status, label).toBe(401)
      expect(JSON.parse(res.text), label).toMatchObject({ error: { code: 'E_UNAUTHORIZED' } })
    }
    // The token given right opens it; the answer names streamgate.tail, never the token.
    const ok = await openTail(f.gw.httpUrl, '?from=end', ['streamgate.tail', `bearer.${b64url(TOKEN)}`])
    expect(ok.ws).toBeDefined()
    expect(ok.ws!.protocol).toBe('streamgate.tail')
    ok.ws!.close()
  })

  it('bounds ?key= of the tail and never sends another key', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` }
    for (const [query, code] of [
      [`?key=${'k'.repeat(1025)}`, 400],
      ['?key=', 400],
      ['?key=a&partition=0', 400],
    ] as const) {
      const res = await openTail(f.gw.httpUrl, query, undefined, auth)
      expect(res.status, query).toBe(code)
      expect(JSON.parse(res.body!)).toMatchObject({ error: { code: 'E_BAD_REQUEST' } })
    }
    const other = await f.gw.gateway.registry.create({ deviceId: 'other-key' })
    const otherClient = await connectDevice(f.gw.mqttUrl, 'other-key', sasFor(other))
    const { ws } = await openTail(f.gw.httpUrl, '?from=beginning&key=console-canary', undefined, auth)
    const keys: string[] = []
    ws!.on('message', (data: Buffer) => keys.push((JSON.parse(data.toString()) as { key: string }).key))
    await otherClient.publishAsync('devices/other-key/messages/events/', 'x', { qos: 1 })
    await f.canary.publishAsync('devices/console-canary/messages/events/', 'y', { qos: 1 })
    await waitFor(() => keys.length > 0, 5000, 'canary records')
    await new Promise((r) => setTimeout(r, 300))
    expect(new Set(keys)).toEqual(new Set(['console-canary']))
    ws!.close()
    await otherClient.endAsync(true)
  })
})
