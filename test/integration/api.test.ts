import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { adminTokenPath, resolveAdminToken } from '../../src/api/admin-token.js'
import { createApiServer, type ApiDeps, type DeviceChange } from '../../src/api/server.js'
import { configSchema } from '../../src/config/schema.js'
import { createLogger } from '../../src/observability/logger.js'
import { GatewayMetrics } from '../../src/observability/metrics.js'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import type { DeviceRegistry } from '../../src/registry/types.js'

const TOKEN = 'api-test-admin-token-4f1c9a7e2b'
const WRONG_TOKEN = 'wrong-token-7d3e8b1f6a0c5e29'
const HOST = 'gw.example.test'

let dir: string
let registry: SqliteDeviceRegistry
let app: FastifyInstance
let baseUrl: string
let ready = true
const logs: string[] = []
const changes: Array<[string, DeviceChange]> = []

function deps(overrides: Partial<ApiDeps> = {}): ApiDeps {
  return {
    registry,
    metrics: new GatewayMetrics({ defaultMetrics: false }),
    logger: createLogger('trace', { write: (line: string) => void logs.push(line) }),
    adminToken: TOKEN,
    hostname: HOST,
    readiness: () => ({ ready, checks: { stream: { ok: ready, ...(ready ? {} : { detail: 'not connected' }) } } }),
    onDeviceChanged: (id, change) => void changes.push([id, change]),
    deviceConnection: (id) => (id === 'live-one' ? { connectedAt: '2030-01-01T00:00:00.000Z', transport: 'tcp' } : null),
    ...overrides,
  }
}

interface Reply {
  status: number
  headers: Headers
  body: Record<string, unknown> & { error?: { code: string; message: string } }
}

/** One request over the real loopback socket. `token: null` sends no Authorization header. */
async function call(method: string, path: string, options: { body?: unknown; raw?: string; token?: string | null } = {}): Promise<Reply> {
  const headers: Record<string, string> = {}
  const token = options.token === undefined ? TOKEN : options.token
  if (token !== null) headers.authorization = `Bearer ${token}`
  let payload: string | undefined = options.raw
  if (options.body !== undefined) payload = JSON.stringify(options.body)
  if (payload !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(baseUrl + path, { method, headers, body: payload })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Reply['body']) : {} }
}

const devicePath = (id: string): string => `/api/devices/${encodeURIComponent(id)}`

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'streamgate-api-'))
  registry = new SqliteDeviceRegistry({ file: join(dir, 'registry.db') })
  await registry.start()
  app = await createApiServer(deps())
  await app.listen({ host: '127.0.0.1', port: 0 })
  baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
})

afterAll(async () => {
  await app?.close()
  await registry?.stop()
  await rm(dir, { recursive: true, force: true })
})

beforeEach(async () => {
  changes.length = 0
  ready = true
  for (const device of await registry.list({ limit: 1000 })) await registry.remove(device.deviceId)
})

describe('health, readiness and metrics (no auth)', () => {
  it('GET /healthz answers ok', async () => {
    expect(await call('GET', '/healthz', { token: null })).toMatchObject({ status: 200, body: { status: 'ok' } })
  })

  it('GET /readyz is 200 when ready and 503 with the failing check when not', async () => {
    expect(await call('GET', '/readyz', { token: null })).toMatchObject({
      status: 200,
      body: { status: 'ready', checks: { stream: { ok: true } } },
    })
    ready = false
    expect(await call('GET', '/readyz', { token: null })).toMatchObject({
      status: 503,
      body: { status: 'not-ready', checks: { stream: { ok: false, detail: 'not connected' } } },
    })
  })

  it('GET /metrics serves Prometheus text including the request counter', async () => {
    await call('GET', '/healthz', { token: null })
    const res = await fetch(`${baseUrl}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await res.text()
    expect(text).toContain('# TYPE streamgate_mqtt_connections gauge')
    expect(text).toMatch(/streamgate_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/)
  })
})

describe('authorization', () => {
  it.each([
    ['no Authorization header', null],
    ['a wrong token', WRONG_TOKEN],
    ['a token that is a prefix of the right one', TOKEN.slice(0, -1)],
  ])('answers 401 E_UNAUTHORIZED with %s', async (_label, token) => {
    for (const [method, path] of [['GET', '/api/devices'], ['GET', '/api/devices/unknown'], ['POST', '/api/devices']] as const) {
      const res = await call(method, path, { token, body: method === 'POST' ? { bogus: 1 } : undefined })
      expect(res.status).toBe(401)
      expect(res.body.error?.code).toBe('E_UNAUTHORIZED')
      expect(res.headers.get('www-authenticate')).toBe('Bearer')
    }
  })

  it('refuses another scheme carrying the right token', async () => {
    const res = await fetch(`${baseUrl}/api/devices`, { headers: { authorization: `Basic ${TOKEN}` } })
    expect(res.status).toBe(401)
  })

  it('accepts a lower-case scheme (RFC 6750 schemes are case-insensitive)', async () => {
    const res = await fetch(`${baseUrl}/api/devices`, { headers: { authorization: `bearer ${TOKEN}` } })
    expect(res.status).toBe(200)
  })
})

describe('devices', () => {
  it('POST creates a SAS device with its connection string', async () => {
    const res = await call('POST', '/api/devices', { body: { deviceId: 'dev-1' } })
    expect(res.status).toBe(201)
    expect(res.headers.get('location')).toBe('/api/devices/dev-1')
    const key = res.body.primaryKey as string
    expect(res.body).toMatchObject({ deviceId: 'dev-1', status: 'enabled', authMethod: 'sas', hasPassword: false, connectionSeq: 0 })
    expect(res.body.connectionString).toBe(`HostName=${HOST};DeviceId=dev-1;SharedAccessKey=${key}`)
    expect(res.body).not.toHaveProperty('passwordHash')
    expect((await registry.get('dev-1'))?.primaryKey).toBe(key)
  })

  it('POST creates a password device without a connection string or hash in the reply', async () => {
    const res = await call('POST', '/api/devices', { body: { deviceId: 'pw', authMethod: 'password', password: 's3cret!', status: 'disabled' } })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ authMethod: 'password', hasPassword: true, status: 'disabled', connectionString: null })
    expect(JSON.stringify(res.body)).not.toMatch(/scrypt|s3cret/)
  })

  it.each([
    ['an unknown key', { deviceId: 'x', colour: 'red' }, 'E_BAD_REQUEST', /colour/],
    ['a bad status', { deviceId: 'x', status: 'paused' }, 'E_BAD_REQUEST', /status/],
    ['a missing id', {}, 'E_BAD_REQUEST', /deviceId/],
    ['a bad id', { deviceId: 'has space' }, 'E_DEVICE_ID_INVALID', /device id/],
    ['a short key', { deviceId: 'x', primaryKey: 'AAAA' }, 'E_BAD_REQUEST', /primaryKey/],
    ['a password device without password', { deviceId: 'x', authMethod: 'password' }, 'E_BAD_REQUEST', /password/],
  ])('POST with %s is 400', async (_label, body, code, message) => {
    const res = await call('POST', '/api/devices', { body })
    expect(res.status).toBe(400)
    expect(res.body.error?.code).toBe(code)
    expect(res.body.error?.message).toMatch(message)
    expect(await registry.get('x')).toBeNull()
  })

  it('POST with broken JSON is 400 and an oversized body is 413', async () => {
    expect((await call('POST', '/api/devices', { raw: '{"deviceId":' })).body.error?.code).toBe('E_BAD_REQUEST')
    const big = await call('POST', '/api/devices', { body: { deviceId: 'x', password: 'p'.repeat(70_000) } })
    expect(big.status).toBe(413)
    expect(big.body.error?.code).toBe('E_PAYLOAD_TOO_LARGE')
  })

  it('POST without a JSON content type says what the API takes and what it got', async () => {
    for (const [headers, got] of [
      [{ 'content-type': 'text/plain' }, 'Content-Type "text/plain"'],
      [{}, 'Content-Type "text/plain;charset=UTF-8"'],
      [{ 'content-type': 'application/x-www-form-urlencoded' }, 'Content-Type "application/x-www-form-urlencoded"'],
    ] as const) {
      const res = await fetch(baseUrl + '/api/devices', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, ...headers }, body: '{"deviceId":"typed"}' })
      const body = (await res.json()) as { error: { code: string; message: string } }
      expect(res.status).toBe(400)
      expect(body.error).toEqual({ code: 'E_BAD_REQUEST', message: `the body must be JSON sent with "Content-Type: application/json" (the request had ${got})` })
    }
    expect(await registry.get('typed')).toBeNull()
  })

  it('POST of an existing id is 409 E_DEVICE_EXISTS', async () => {
    await call('POST', '/api/devices', { body: { deviceId: 'twice' } })
    const res = await call('POST', '/api/devices', { body: { deviceId: 'twice' } })
    expect(res.status).toBe(409)
    expect(res.body.error?.code).toBe('E_DEVICE_EXISTS')
  })

  it('GET lists in id order with paging', async () => {
    for (const id of ['c', 'a', 'b']) await registry.create({ deviceId: id })
    const all = await call('GET', '/api/devices')
    expect((all.body.devices as Array<{ deviceId: string }>).map((d) => d.deviceId)).toEqual(['a', 'b', 'c'])
    expect(all.body.next).toBeNull()
    const page1 = await call('GET', '/api/devices?limit=2')
    expect((page1.body.devices as Array<{ deviceId: string }>).map((d) => d.deviceId)).toEqual(['a', 'b'])
    expect(page1.body.next).toBe('b')
    const page2 = await call('GET', '/api/devices?limit=2&after=b')
    expect((page2.body.devices as Array<{ deviceId: string }>).map((d) => d.deviceId)).toEqual(['c'])
    expect(page2.body.next).toBeNull()
    expect(JSON.stringify(all.body)).not.toContain('passwordHash')
  })

  it.each(['limit=0', 'limit=abc', 'limit=1001', 'sort=id'])('GET /api/devices?%s is 400', async (query) => {
    const res = await call('GET', `/api/devices?${query}`)
    expect(res.status).toBe(400)
    expect(res.body.error?.code).toBe('E_BAD_REQUEST')
  })

  it('GET one device shows its view, also for ids with every allowed punctuation mark', async () => {
    const id = "a-.%_*?!(),:=@$'z"
    await registry.create({ deviceId: id })
    await registry.recordConnection(id, 'connected', new Date('2030-01-01T00:00:00.000Z'))
    const res = await call('GET', devicePath(id))
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({
      deviceId: id,
      connectionState: 'connected',
      connectionStateUpdatedAt: '2030-01-01T00:00:00.000Z',
      lastActivityAt: '2030-01-01T00:00:00.000Z',
      connectionSeq: 1,
      hasPassword: false,
      live: null,
    })
    expect(res.body).not.toHaveProperty('passwordHash')
    const longest = '%'.repeat(128)
    await registry.create({ deviceId: longest })
    expect((await call('GET', devicePath(longest))).body.deviceId).toBe(longest)
    await registry.create({ deviceId: 'live-one' })
    expect((await call('GET', devicePath('live-one'))).body.live).toEqual({ connectedAt: '2030-01-01T00:00:00.000Z', transport: 'tcp' })
  })

  it('GET, PATCH, DELETE and rotate of an unknown device are 404 E_DEVICE_NOT_FOUND', async () => {
    for (const [method, path, body] of [
      ['GET', devicePath('ghost'), undefined],
      ['PATCH', devicePath('ghost'), { status: 'disabled' }],
      ['DELETE', devicePath('ghost'), undefined],
      ['POST', `${devicePath('ghost')}/keys/rotate`, undefined],
    ] as const) {
      const res = await call(method, path, { body })
      expect(res.status, `${method} ${path}`).toBe(404)
      expect(res.body.error?.code).toBe('E_DEVICE_NOT_FOUND')
    }
    expect(changes).toEqual([])
  })

  it('PATCH disables, enables and sets or clears the password, telling the gateway', async () => {
    await registry.create({ deviceId: 'p' })
    expect((await call('PATCH', devicePath('p'), { body: { status: 'disabled' } })).body.status).toBe('disabled')
    expect((await call('PATCH', devicePath('p'), { body: { status: 'enabled' } })).body.status).toBe('enabled')
    expect((await call('PATCH', devicePath('p'), { body: { password: 'new-pass' } })).body.hasPassword).toBe(true)
    expect((await call('PATCH', devicePath('p'), { body: { password: null, status: 'disabled' } })).body).toMatchObject({
      hasPassword: false,
      status: 'disabled',
    })
    expect(changes).toEqual([
      ['p', 'disabled'],
      ['p', 'password-changed'],
      ['p', 'password-changed'],
      ['p', 'disabled'],
    ])
  })

  it.each([
    ['an empty body', {}],
    ['an unknown key', { status: 'enabled', name: 'x' }],
    ['a bad status', { status: 'off' }],
  ])('PATCH with %s is 400', async (_label, body) => {
    await registry.create({ deviceId: 'q' })
    const res = await call('PATCH', devicePath('q'), { body })
    expect(res.status).toBe(400)
    expect(res.body.error?.code).toBe('E_BAD_REQUEST')
    expect((await registry.get('q'))?.status).toBe('enabled')
  })

  it('rotates the primary key by default, or the one named, returning the new connection string', async () => {
    const before = await registry.create({ deviceId: 'r' })
    const primary = await call('POST', `${devicePath('r')}/keys/rotate`)
    expect(primary.status).toBe(200)
    expect(primary.body.primaryKey).not.toBe(before.primaryKey)
    expect(primary.body.secondaryKey).toBe(before.secondaryKey)
    expect(primary.body.connectionString).toBe(`HostName=${HOST};DeviceId=r;SharedAccessKey=${String(primary.body.primaryKey)}`)
    const secondary = await call('POST', `${devicePath('r')}/keys/rotate`, { body: { key: 'secondary' } })
    expect(secondary.body.primaryKey).toBe(primary.body.primaryKey)
    expect(secondary.body.secondaryKey).not.toBe(before.secondaryKey)
    const both = await call('POST', `${devicePath('r')}/keys/rotate`, { body: { key: 'both' } })
    expect(both.body.primaryKey).not.toBe(secondary.body.primaryKey)
    expect(both.body.secondaryKey).not.toBe(secondary.body.secondaryKey)
    expect((await call('POST', `${devicePath('r')}/keys/rotate`, { body: { key: 'tertiary' } })).status).toBe(400)
    expect(changes).toEqual([['r', 'keys-rotated'], ['r', 'keys-rotated'], ['r', 'keys-rotated']])
  })

  it('DELETE removes a device (204) and tells the gateway', async () => {
    await registry.create({ deviceId: 'd' })
    const res = await fetch(baseUrl + devicePath('d'), { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } })
    expect(res.status).toBe(204)
    expect(await registry.get('d')).toBeNull()
    expect(changes).toEqual([['d', 'removed']])
  })

  it('answers an unknown route with 404 E_NOT_FOUND', async () => {
    const res = await call('GET', '/nope', { token: null })
    expect(res).toMatchObject({ status: 404, body: { error: { code: 'E_NOT_FOUND' } } })
  })
})

describe('server failures', () => {
  it('hides internals in 5xx bodies and logs them', async () => {
    const broken = new Proxy(registry, {
      get: (target, prop) => (prop === 'get' ? () => Promise.reject(new Error('disk /secret/path exploded')) : Reflect.get(target, prop)),
    }) as DeviceRegistry
    const other = await createApiServer(deps({ registry: broken }))
    try {
      const res = await other.inject({ method: 'GET', url: '/api/devices/x', headers: { authorization: `Bearer ${TOKEN}` } })
      expect(res.statusCode).toBe(500)
      expect(res.json()).toEqual({ error: { code: 'E_INTERNAL', message: expect.any(String) } })
      expect(res.body).not.toContain('secret')
      expect(logs.join('')).toContain('disk /secret/path exploded')
    } finally {
      await other.close()
    }
  })

  it('answers 503 E_REGISTRY_UNAVAILABLE when the registry is closed', async () => {
    const closed = new SqliteDeviceRegistry({ file: join(dir, 'closed.db') })
    const other = await createApiServer(deps({ registry: closed }))
    try {
      const res = await other.inject({ method: 'GET', url: '/api/devices', headers: { authorization: `Bearer ${TOKEN}` } })
      expect(res.statusCode).toBe(503)
      expect(res.json().error.code).toBe('E_REGISTRY_UNAVAILABLE')
    } finally {
      await other.close()
    }
  })

  it('leaves upgrade requests to the server’s upgrade listener (MQTT over WebSocket)', async () => {
    const seen: string[] = []
    const onUpgrade = (req: { url?: string }, socket: NodeJS.WritableStream & { destroy(): void }): void => {
      seen.push(req.url ?? '')
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    }
    app.server.on('upgrade', onUpgrade)
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${baseUrl}/$iothub/websocket`, { headers: { connection: 'Upgrade', upgrade: 'websocket' } })
        req.on('upgrade', (res, socket) => {
          socket.destroy()
          resolve(res.statusCode ?? 0)
        })
        req.on('response', (res) => resolve(res.statusCode ?? 0))
        req.on('error', reject)
        req.end()
      })
      expect(status).toBe(101)
      expect(seen).toEqual(['/$iothub/websocket'])
    } finally {
      app.server.off('upgrade', onUpgrade)
    }
  })
})

describe('admin token', () => {
  it('generates a 0600 token file once, then reads it; config wins', async () => {
    const dataDir = join(dir, 'fresh', 'data')
    const config = configSchema.parse({ dataDir })
    const generated = resolveAdminToken(config)
    expect(generated.source).toBe('generated')
    expect(Buffer.from(generated.token, 'base64url')).toHaveLength(32)
    const info = await stat(adminTokenPath(dataDir))
    expect(info.mode & 0o777).toBe(0o600)
    expect((await readFile(adminTokenPath(dataDir), 'utf8')).trim()).toBe(generated.token)
    expect(resolveAdminToken(config)).toEqual({ token: generated.token, source: 'file' })
    const configured = configSchema.parse({ dataDir, adminToken: 'configured-token-123456' })
    expect(resolveAdminToken(configured)).toEqual({ token: 'configured-token-123456', source: 'config' })
  })
})

// Last on purpose: by now every test above has sent the token, wrong tokens and failing requests.
describe('logging', () => {
  it('logs requests at debug and never the admin token or a presented one', () => {
    const output = logs.join('')
    expect(output).toContain('"msg":"request"')
    expect(output).toContain('"level":20')
    expect(output).not.toContain(TOKEN)
    expect(output).not.toContain(WRONG_TOKEN)
    expect(output).not.toContain(TOKEN.slice(0, -1))
  })
})
