import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, readAll, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, collect, errorCode, type Received } from '../helpers/commands.js'
import type { Device } from '../../src/registry/types.js'

let gw: TestGateway
const clients: MqttClient[] = []

async function twinDevice(d: Device): Promise<{ client: MqttClient; got: Received[] }> {
  const client = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
  clients.push(client)
  const got = collect(client)
  await client.subscribeAsync('$iothub/twin/res/#', { qos: 0 })
  await client.subscribeAsync('$iothub/twin/PATCH/properties/desired/#', { qos: 0 })
  return { client, got }
}

/** Publish a twin request and wait for the response with the same $rid. */
async function request(dev: { client: MqttClient; got: Received[] }, topic: string, rid: string, body: string): Promise<Received> {
  dev.client.publish(topic, body, { qos: 0 })
  return waitFor(() => dev.got.find((m) => m.topic.startsWith('$iothub/twin/res/') && m.topic.includes(`$rid=${rid}`)), 15_000, `twin response ${rid}`)
}

beforeAll(async () => {
  gw = await startTestGateway()
})

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined)
  await gw.stop()
})

describe('device twins', () => {
  it('device GET returns both sections with $version', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-get' })
    const dev = await twinDevice(d)
    const res = await request(dev, '$iothub/twin/GET/?$rid=1', '1', ' ')
    expect(res.topic).toBe('$iothub/twin/res/200/?$rid=1')
    expect(JSON.parse(res.payload)).toEqual({ desired: { $version: 1 }, reported: { $version: 1 } })
  })

  it('reported PATCH bumps the version, null deletes, and the change is a device event', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-reported' })
    const dev = await twinDevice(d)
    const r1 = await request(dev, '$iothub/twin/PATCH/properties/reported/?$rid=a', 'a', JSON.stringify({ fw: '1.0', temp: { max: 30 } }))
    expect(r1.topic).toBe('$iothub/twin/res/204/?$rid=a&$version=2')
    expect(r1.payload).toBe('')
    const r2 = await request(dev, '$iothub/twin/PATCH/properties/reported/?$rid=b', 'b', JSON.stringify({ fw: null, temp: { min: 1 } }))
    expect(r2.topic).toBe('$iothub/twin/res/204/?$rid=b&$version=3')
    const twin = await api(gw.httpUrl, 'GET', `/api/devices/${d.deviceId}/twin`)
    expect(twin.body).toEqual({ deviceId: d.deviceId, desired: { $version: 1 }, reported: { temp: { max: 30, min: 1 }, $version: 3 }, tags: { $version: 1 } })
    const events = await waitFor(async () => {
      const all = (await readAll(gw.gateway, gw.gateway.topics.deviceEvents)).map((r) => JSON.parse(r.value.toString()) as { type: string; deviceId: string; details?: { version: number } })
      const mine = all.filter((e) => e.deviceId === d.deviceId && e.type === 'twin-reported')
      return mine.length === 2 ? mine : null
    })
    expect(events.map((e) => e.details?.version)).toEqual([2, 3])
  })

  it('bad JSON and oversize patches get an error body the SDK understands; nothing changes', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-errors' })
    const dev = await twinDevice(d)
    const bad = await request(dev, '$iothub/twin/PATCH/properties/reported/?$rid=x', 'x', '{not json')
    expect(bad.topic).toBe('$iothub/twin/res/400/?$rid=x')
    expect(JSON.parse(bad.payload)).toMatchObject({ errorCode: 400000, code: 'E_BAD_REQUEST' })
    const big = await request(dev, '$iothub/twin/PATCH/properties/reported/?$rid=y', 'y', JSON.stringify({ blob: 'x'.repeat(33 * 1024) }))
    expect(big.topic).toBe('$iothub/twin/res/413/?$rid=y')
    expect(JSON.parse(big.payload)).toMatchObject({ errorCode: 413000, code: 'E_TWIN_TOO_LARGE' })
    expect(dev.client.connected).toBe(true)
    const twin = await api(gw.httpUrl, 'GET', `/api/devices/${d.deviceId}/twin`)
    expect((twin.body as { reported: unknown }).reported).toEqual({ $version: 1 })
    const svc = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, { desired: { blob: 'x'.repeat(33 * 1024) } })
    expect([svc.status, errorCode(svc)]).toEqual([413, 'E_TWIN_TOO_LARGE'])
  })

  it('refuses patches nested deeper than commands.maxTwinDepth from the device (400 body) and the API (400 envelope)', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-deep' })
    const dev = await twinDevice(d)
    const deep = '{"a":'.repeat(5000) + '1' + '}'.repeat(5000)
    const res = await request(dev, '$iothub/twin/PATCH/properties/reported/?$rid=d', 'd', deep)
    expect(res.topic).toBe('$iothub/twin/res/400/?$rid=d')
    expect(JSON.parse(res.payload)).toMatchObject({ errorCode: 400000, code: 'E_TWIN_TOO_DEEP' })
    const svc = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, `{"desired":${deep}}`)
    expect(svc.status).toBe(400)
    expect(svc.body).toEqual({ error: { code: 'E_TWIN_TOO_DEEP', message: expect.stringContaining('10 levels') } })
    // Ten levels below the root are IoT Hub's limit and the default: accepted.
    const ten = '{"a":'.repeat(11) + '1' + '}'.repeat(11)
    expect((await request(dev, '$iothub/twin/PATCH/properties/reported/?$rid=e', 'e', ten)).topic).toBe('$iothub/twin/res/204/?$rid=e&$version=2')
    const twin = await api(gw.httpUrl, 'GET', `/api/devices/${d.deviceId}/twin`)
    expect((twin.body as { desired: unknown }).desired).toEqual({ $version: 1 })
    expect(dev.client.connected).toBe(true)
  })

  it('service desired PATCH notifies the device; If-Match guards the version', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-desired' })
    const dev = await twinDevice(d)
    const res = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, { desired: { interval: 5 } }, { headers: { 'if-match': '1' } })
    expect(res.status).toBe(200)
    expect((res.body as { desired: unknown }).desired).toEqual({ interval: 5, $version: 2 })
    const note = await waitFor(() => dev.got.find((m) => m.topic.startsWith('$iothub/twin/PATCH/properties/desired/')))
    expect(note.topic).toBe('$iothub/twin/PATCH/properties/desired/?$version=2')
    expect(JSON.parse(note.payload)).toEqual({ interval: 5, $version: 2 })

    const stale = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, { desired: { interval: 9 } }, { headers: { 'if-match': '"1"' } })
    expect([stale.status, errorCode(stale)]).toEqual([412, 'E_TWIN_VERSION_MISMATCH'])
    const twin = await api(gw.httpUrl, 'GET', `/api/devices/${d.deviceId}/twin`)
    expect((twin.body as { desired: unknown }).desired).toEqual({ interval: 5, $version: 2 })
  })

  it('service tags PATCH changes the tags only; the device never sees them', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-tags' })
    const dev = await twinDevice(d)
    const res = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, { tags: { deploymentLocation: { floor: 1 } } })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ deviceId: d.deviceId, desired: { $version: 1 }, reported: { $version: 1 }, tags: { deploymentLocation: { floor: 1 }, $version: 2 } })
    const both = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, { tags: { owner: 'ops' }, desired: { interval: 7 } })
    expect((both.body as { tags: unknown }).tags).toEqual({ deploymentLocation: { floor: 1 }, owner: 'ops', $version: 3 })
    const get = await request(dev, '$iothub/twin/GET/?$rid=tg', 'tg', ' ')
    expect(JSON.parse(get.payload)).toEqual({ desired: { interval: 7, $version: 2 }, reported: { $version: 1 } })
    expect(dev.got.filter((m) => m.topic.startsWith('$iothub/twin/PATCH/properties/desired/'))).toHaveLength(1)
    const big = await api(gw.httpUrl, 'PATCH', `/api/devices/${d.deviceId}/twin`, { tags: { blob: 'x'.repeat(40 * 1024) } })
    expect([big.status, errorCode(big)]).toEqual([413, 'E_TWIN_TOO_LARGE'])
  })

  it('answers auth and validation errors on the twin routes', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 't-api' })
    const path = `/api/devices/${d.deviceId}/twin`
    expect(errorCode(await api(gw.httpUrl, 'GET', path, undefined, { token: null }))).toBe('E_UNAUTHORIZED')
    expect(errorCode(await api(gw.httpUrl, 'PATCH', path, { desired: {} }, { token: null }))).toBe('E_UNAUTHORIZED')
    expect((await api(gw.httpUrl, 'GET', '/api/devices/nobody/twin')).status).toBe(404)
    expect((await api(gw.httpUrl, 'PATCH', '/api/devices/nobody/twin', { desired: { a: 1 } })).status).toBe(404)
    const bad = async (body: unknown, headers: Record<string, string> = {}): Promise<string | undefined> => errorCode(await api(gw.httpUrl, 'PATCH', path, body, { headers }))
    expect(await bad({})).toBe('E_BAD_REQUEST')
    expect(await bad({ desired: [] })).toBe('E_BAD_REQUEST')
    expect(await bad({ desired: { $version: 3 } })).toBe('E_BAD_REQUEST')
    expect(await bad({ reported: { a: 1 } })).toBe('E_BAD_REQUEST')
    expect(await bad({ desired: { a: 1 } }, { 'if-match': 'abc' })).toBe('E_BAD_REQUEST')
  })
})
