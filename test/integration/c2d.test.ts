import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, deviceOptions, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, collect, connectCollecting, errorCode, feedbackRecords, sleep } from '../helpers/commands.js'
import { parsePropertyBag } from '../../src/protocol/property-bag.js'
import type { Device } from '../../src/registry/types.js'

let gw: TestGateway
const clients: MqttClient[] = []

async function device(id: string): Promise<Device> {
  return gw.gateway.registry.create({ deviceId: id })
}

async function connect(d: Device, subscribe = true): Promise<MqttClient> {
  const client = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
  clients.push(client)
  if (subscribe) await client.subscribeAsync(`devices/${d.deviceId}/messages/devicebound/#`, { qos: 1 })
  return client
}

beforeAll(async () => {
  gw = await startTestGateway({}, undefined)
})

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined)
  await gw.stop()
})

describe('cloud-to-device messages', () => {
  it('queues while offline and delivers in order on connect, with completed feedback', async () => {
    const d = await device('c2d-offline')
    // The device subscribed once (clean session 0) and went away; its subscription stays.
    const first = await connect(d)
    await first.endAsync()
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const res = await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: `m${i}`, properties: { 'k/1': 'v&=' }, ack: 'full' })
      expect(res.status).toBe(202)
      ids.push((res.body as { messageId: string }).messageId)
    }
    const listed = await api(gw.httpUrl, 'GET', `/api/devices/${d.deviceId}/messages`)
    expect((listed.body as { messages: Array<{ messageId: string }> }).messages.map((m) => m.messageId)).toEqual(ids)

    const { client, got } = await connectCollecting(gw.mqttUrl, deviceOptions(d.deviceId, sasFor(d)))
    clients.push(client)
    await waitFor(() => got.length === 3, 15_000, 'three messages')
    expect(got.map((m) => m.payload)).toEqual(['m0', 'm1', 'm2'])
    const bag = parsePropertyBag(got[0]!.topic.split('/').slice(4).join('/'))
    expect(bag.system.messageId).toBe(ids[0])
    expect(bag.system.to).toBe(`/devices/${d.deviceId}/messages/devicebound`)
    expect(bag.application.get('k/1')).toBe('v&=')
    expect(bag.application.get('iothub-ack')).toBe('full')

    const fb = await waitFor(async () => {
      const all = (await feedbackRecords(gw.gateway)).filter((f) => f.deviceId === d.deviceId)
      return all.length === 3 ? all : null
    })
    expect(fb.map((f) => [f.messageId, f.status, f.deliveryCount])).toEqual(ids.map((id) => [id, 'completed', 1]))
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(Number(/streamgate_c2d_feedback_total\{status="completed"\} (\d+)/.exec(metrics)?.[1] ?? 0)).toBeGreaterThanOrEqual(3)
    const after = await api(gw.httpUrl, 'GET', `/api/devices/${d.deviceId}/messages`)
    expect((after.body as { messages: unknown[] }).messages).toEqual([])
  })

  it('ends a message past its expiry with expired feedback', async () => {
    const d = await device('c2d-expiry')
    const res = await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: 'late', ttlSeconds: 60 })
    const messageId = (res.body as { messageId: string }).messageId
    // The API never takes a TTL under 60 s; move the stored expiry into the past instead.
    const [queued] = await gw.gateway.commandQueue.list(d.deviceId)
    await gw.gateway.commandQueue.setExpiry(queued!.seq, Date.now() - 1)
    const fb = await waitFor(async () => (await feedbackRecords(gw.gateway)).find((f) => f.messageId === messageId), 15_000, 'expired feedback')
    expect(fb.status).toBe('expired')
    expect(fb.deliveryCount).toBe(0)
  })

  it('refuses the 51st message with 409 E_QUEUE_FULL', async () => {
    const d = await device('c2d-full')
    for (let i = 0; i < 50; i++) {
      expect((await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: `n${i}` })).status).toBe(202)
    }
    const res = await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: 'one too many' })
    expect(res.status).toBe(409)
    expect(errorCode(res)).toBe('E_QUEUE_FULL')
    const purged = await api(gw.httpUrl, 'DELETE', `/api/devices/${d.deviceId}/messages`)
    expect(purged.body).toEqual({ purged: 50 })
    const fb = await waitFor(async () => {
      const all = (await feedbackRecords(gw.gateway)).filter((f) => f.deviceId === d.deviceId)
      return all.length === 50 ? all : null
    })
    expect(new Set(fb.map((f) => f.status))).toEqual(new Set(['purged']))
  })

  it('delivers again after a disconnect without PUBACK, with DUP set', async () => {
    const d = await device('c2d-redeliver')
    const silent = await connect(d)
    const seen: string[] = []
    // Never calling back keeps mqtt.js from sending the PUBACK.
    silent.handleMessage = (packet) => void seen.push(String(packet.cmd))
    await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: 'again' })
    await waitFor(() => seen.length === 1, 15_000, 'first delivery')
    silent.stream.destroy()
    await sleep(100)
    expect(await feedbackRecords(gw.gateway).then((f) => f.filter((x) => x.deviceId === d.deviceId))).toEqual([])

    const { client, got } = await connectCollecting(gw.mqttUrl, deviceOptions(d.deviceId, sasFor(d)))
    clients.push(client)
    await waitFor(() => got.length === 1, 15_000, 'redelivery')
    expect(got[0]!.payload).toBe('again')
    expect(got[0]!.dup).toBe(true)
    const fb = await waitFor(async () => (await feedbackRecords(gw.gateway)).find((f) => f.deviceId === d.deviceId))
    expect([fb.status, fb.deliveryCount]).toEqual(['completed', 2])
  })

  it('a clean-session CONNECT discards the stored subscriptions [MQTT-3.1.2-6]', async () => {
    const d = await device('c2d-clean')
    await (await connect(d)).endAsync()
    const clean = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d), { clean: true })
    clients.push(clean)
    const got = collect(clean)
    await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: 'waits' })
    await sleep(300)
    expect(got).toEqual([])
    await clean.subscribeAsync(`devices/${d.deviceId}/messages/devicebound/#`, { qos: 1 })
    await waitFor(() => got.length === 1, 15_000, 'delivery after subscribing')
  })

  it('purges the queue of a removed device', async () => {
    const d = await device('c2d-removed')
    await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/messages`, { payload: 'orphan', messageId: 'orphan-1' })
    expect((await api(gw.httpUrl, 'DELETE', `/api/devices/${d.deviceId}`)).status).toBe(204)
    const fb = await waitFor(async () => (await feedbackRecords(gw.gateway)).find((f) => f.messageId === 'orphan-1'), 15_000, 'purged feedback')
    expect(fb.status).toBe('purged')
  })

  it('answers validation and auth errors on every message route', async () => {
    const d = await device('c2d-errors')
    const path = `/api/devices/${d.deviceId}/messages`
    for (const [method, body] of [['POST', { payload: 'x' }], ['GET', undefined], ['DELETE', undefined]] as const) {
      const res = await api(gw.httpUrl, method, path, body, { token: null })
      expect(res.status).toBe(401)
      expect(errorCode(res)).toBe('E_UNAUTHORIZED')
      expect((await api(gw.httpUrl, method, '/api/devices/nobody/messages', body)).status).toBe(404)
    }
    const bad = async (body: unknown): Promise<string | undefined> => errorCode(await api(gw.httpUrl, 'POST', path, body))
    expect(await bad({})).toBe('E_BAD_REQUEST')
    expect(await bad({ payload: 'x', ttlSeconds: 59 })).toBe('E_BAD_REQUEST')
    expect(await bad({ payload: 'x', ttlSeconds: 172_801 })).toBe('E_BAD_REQUEST')
    expect(await bad({ payload: 'x', ack: 'sometimes' })).toBe('E_BAD_REQUEST')
    expect(await bad({ payload: 'x', extra: 1 })).toBe('E_BAD_REQUEST')
    expect(await bad({ payload: 'x', properties: { '$.mid': 'no' } })).toBe('E_PROPERTY_BAG_INVALID')
    expect(await bad({ payload: 'x'.repeat(64 * 1024 + 1) })).toBe('E_PAYLOAD_TOO_LARGE')
    expect(await bad('not json')).toBe('E_BAD_REQUEST')
  })
})
