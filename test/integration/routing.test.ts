import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, readAll, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, errorCode } from '../helpers/commands.js'
import { publishJson, startWebhookReceiver, type WebhookReceiver } from '../helpers/routing.js'

let gw: TestGateway
let hook: WebhookReceiver
const clients: MqttClient[] = []

beforeAll(async () => {
  gw = await startTestGateway({ 'routing.reloadIntervalMs': '200', 'routing.twinCacheMs': '0' })
  hook = await startWebhookReceiver()
})

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined)
  await gw.stop()
  await hook.close()
})

async function device(id: string): Promise<MqttClient> {
  const d = await gw.gateway.registry.create({ deviceId: id })
  const client = await connectDevice(gw.mqttUrl, id, sasFor(d))
  clients.push(client)
  return client
}

async function put(path: string, body: unknown): Promise<void> {
  const res = await api(gw.httpUrl, 'PUT', path, body)
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300)
}

describe('message routing', () => {
  it('routes matching telemetry to another stream topic with enrichments from twin tags, key = device id', async () => {
    await put('/api/endpoints/hot', {
      type: 'stream',
      topic: 'hot-telemetry',
      enrichments: [
        { key: 'site', value: '$twin.tags.deploymentLocation.building' },
        { key: 'floor', value: '$twin.tags.deploymentLocation.floor' },
        { key: 'hub', value: '$hubName' },
        { key: 'dev', value: '$deviceId' },
        { key: 'fixed', value: 'v1' },
        { key: 'missing', value: '$twin.tags.nothing' },
      ],
    })
    await put('/api/routes/hot', { source: 'telemetry', condition: "$body.temp > 30 AND processingPath = 'hot'", endpoints: ['hot'] })
    const client = await device('r-hot')
    await api(gw.httpUrl, 'PATCH', '/api/devices/r-hot/twin', { tags: { deploymentLocation: { building: '43', floor: 1 } } })
    await publishJson(client, 'r-hot', { temp: 35, n: 1 }, { processingPath: 'hot' })
    await publishJson(client, 'r-hot', { temp: 20, n: 2 }, { processingPath: 'hot' })
    await publishJson(client, 'r-hot', { temp: 40, n: 3 }, { processingPath: 'cold' })
    await publishJson(client, 'r-hot', { temp: 50, n: 4 }, { processingPath: 'hot' })
    const routed = await waitFor(async () => {
      const records = await readAll(gw.gateway, 'hot-telemetry').catch(() => [])
      return records.length >= 2 && records
    }, 15_000, 'two routed records')
    expect(routed.map((r) => JSON.parse(r.value.toString()).n)).toEqual([1, 4])
    for (const r of routed) {
      expect(r.key).toBe('r-hot')
      expect(r.headers).toMatchObject({ site: '43', floor: '1', hub: 'localhost', dev: 'r-hot', fixed: 'v1', missing: '$twin.tags.nothing', processingPath: 'hot', 'device-id': 'r-hot', 'content-type': 'application/json' })
    }
    const list = await api(gw.httpUrl, 'GET', '/api/routes')
    const body = list.body as { routes: Array<{ name: string; matched: Record<string, number> }>; endpoints: Array<{ name: string; health: string; delivered: number; lag: Record<string, number> }> }
    expect(body.routes.find((r) => r.name === 'hot')?.matched).toEqual({ hot: 2 })
    const endpoint = body.endpoints.find((e) => e.name === 'hot')!
    expect(endpoint).toMatchObject({ health: 'healthy', delivered: 2 })
    await waitFor(async () => {
      const e = ((await api(gw.httpUrl, 'GET', '/api/endpoints/hot')).body as { lag: Record<string, number> })
      return e.lag.telemetry === 0
    }, 10_000, 'lag 0')
  })

  it('delivers to a webhook in order per device, with the auth header, never showing the header', async () => {
    await put('/api/endpoints/hook', { type: 'webhook', url: hook.url, authHeader: 'Bearer s3cret-hook', maxBatch: 5, backoffMs: 50, maxBackoffMs: 200 })
    await put('/api/routes/all-to-hook', { condition: 'true', endpoints: ['hook'] })
    // A second route to the same endpoint matching the same messages: each still arrives once.
    await put('/api/routes/hook-again', { condition: "STARTSWITH($connectionDeviceId, 'r-w')", endpoints: ['hook'] })
    const a = await device('r-wa')
    const b = await device('r-wb')
    for (let i = 0; i < 20; i++) {
      await publishJson(a, 'r-wa', { i })
      await publishJson(b, 'r-wb', { i })
    }
    await waitFor(() => hook.delivered().filter((m) => m.deviceId.startsWith('r-w')).length >= 40, 15_000, '40 webhook messages')
    for (const id of ['r-wa', 'r-wb']) {
      expect(hook.delivered().filter((m) => m.deviceId === id).map((m) => JSON.parse(m.body).i)).toEqual([...Array(20).keys()])
    }
    const routes = (await api(gw.httpUrl, 'GET', '/api/routes')).body as { routes: Array<{ name: string; matched: Record<string, number> }> }
    expect(routes.routes.find((r) => r.name === 'hook-again')?.matched).toEqual({ hook: 40 })
    expect(hook.posts.every((p) => p.headers.authorization === 'Bearer s3cret-hook')).toBe(true)
    expect(hook.posts.every((p) => p.messages.length <= 5)).toBe(true)
    const shown = await api(gw.httpUrl, 'GET', '/api/endpoints/hook')
    expect(JSON.stringify(shown.body)).not.toContain('s3cret')
    expect(shown.body).toMatchObject({ hasAuthHeader: true, type: 'webhook' })
  })

  it('routes device lifecycle events and twin changes as their own sources', async () => {
    await put('/api/endpoints/events', { type: 'stream', topic: 'routed-events' })
    await put('/api/endpoints/twins', { type: 'stream', topic: 'routed-twins' })
    await put('/api/routes/lifecycle', { source: 'device-events', condition: "$connectionDeviceId = 'r-ev'", endpoints: ['events'] })
    await put('/api/routes/twin-changes', { source: 'twin-changes', condition: "$connectionDeviceId = 'r-ev'", endpoints: ['twins'] })
    const client = await device('r-ev')
    await client.endAsync()
    clients.splice(clients.indexOf(client), 1)
    await api(gw.httpUrl, 'PATCH', '/api/devices/r-ev/twin', { tags: { floor: 3 } })
    await api(gw.httpUrl, 'PATCH', '/api/devices/r-ev/twin', { desired: { interval: 5 } })
    const events = await waitFor(async () => {
      const records = (await readAll(gw.gateway, 'routed-events').catch(() => [])).filter((r) => r.key === 'r-ev')
      return records.length >= 3 && records
    }, 15_000, 'created, connected and disconnected routed')
    expect(events.map((r) => JSON.parse(r.value.toString()).type)).toEqual(['created', 'connected', 'disconnected'])
    const twins = await waitFor(async () => {
      const records = (await readAll(gw.gateway, 'routed-twins').catch(() => [])).filter((r) => r.key === 'r-ev')
      return records.length >= 2 && records
    }, 15_000, 'the twin changes routed')
    // Everything written so far has been looked at before the final read.
    await waitFor(async () => ((await api(gw.httpUrl, 'GET', '/api/endpoints/twins')).body as { lag: Record<string, number> }).lag['device-events'] === 0, 10_000, 'twins endpoint caught up')
    const settled = (await readAll(gw.gateway, 'routed-twins')).filter((r) => r.key === 'r-ev')
    expect(settled).toHaveLength(twins.length)
    // Lifecycle events never reach a twin-changes route, and twin changes never a device-events one.
    expect(settled.map((r) => r.headers['event-type'])).toEqual(['twin-tags', 'twin-desired'])
    await waitFor(async () => ((await api(gw.httpUrl, 'GET', '/api/endpoints/events')).body as { lag: Record<string, number> }).lag['device-events'] === 0, 10_000, 'events endpoint caught up')
    expect((await readAll(gw.gateway, 'routed-events')).filter((r) => r.key === 'r-ev').map((r) => r.headers['event-type'])).toEqual(['created', 'connected', 'disconnected'])
  })

  it('refuses bad definitions with typed errors', async () => {
    const bad = await api(gw.httpUrl, 'PUT', '/api/routes/broken', { condition: '$body.temp > ', endpoints: ['hot'] })
    expect([bad.status, errorCode(bad)]).toEqual([400, 'E_ROUTE_QUERY_INVALID'])
    const missing = await api(gw.httpUrl, 'PUT', '/api/routes/orphan', { endpoints: ['nope'] })
    expect([missing.status, errorCode(missing)]).toEqual([404, 'E_ENDPOINT_NOT_FOUND'])
    const loop = await api(gw.httpUrl, 'PUT', '/api/endpoints/loop', { type: 'stream', topic: 'telemetry' })
    expect([loop.status, errorCode(loop)]).toEqual([400, 'E_BAD_REQUEST'])
    const inUse = await api(gw.httpUrl, 'DELETE', '/api/endpoints/hot')
    expect([inUse.status, errorCode(inUse)]).toEqual([409, 'E_ENDPOINT_IN_USE'])
    expect(errorCode(await api(gw.httpUrl, 'DELETE', '/api/routes/nope'))).toBe('E_ROUTE_NOT_FOUND')
  })

  it('POST /api/routes/test says why a sample matched or not', async () => {
    const res = await api(gw.httpUrl, 'POST', '/api/routes/test', { route: 'hot', message: { deviceId: 'r-hot', body: { temp: 31 }, properties: { processingPath: 'hot' } } })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ matched: true, value: true, enrichments: { hot: { site: '43', dev: 'r-hot', hub: 'localhost' } } })
    const undef = await api(gw.httpUrl, 'POST', '/api/routes/test', { condition: '$body.missing > 3', message: { body: { temp: 1 } } })
    expect(undef.body).toMatchObject({ matched: false, value: null })
    expect((undef.body as { reason: string }).reason).toContain('undefined')
  })
})
