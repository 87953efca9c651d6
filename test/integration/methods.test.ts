import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, sasFor, startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { api, errorCode, sleep } from '../helpers/commands.js'
import type { Device } from '../../src/registry/types.js'

let gw: TestGateway
const clients: MqttClient[] = []

/** A device that answers every method with 200 and { echo: request, method: name }, after `delayMs`. */
async function methodDevice(d: Device, delayMs = 0): Promise<MqttClient> {
  const client = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
  clients.push(client)
  client.on('message', (topic, payload) => {
    const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic)
    if (!m) return
    const body = JSON.stringify({ echo: payload.length ? JSON.parse(payload.toString()) : null, method: m[1] })
    setTimeout(() => client.publish(`$iothub/methods/res/200/?$rid=${m[2]}`, body, { qos: 0 }), delayMs)
  })
  await client.subscribeAsync('$iothub/methods/POST/#', { qos: 0 })
  return client
}

beforeAll(async () => {
  gw = await startTestGateway()
})

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined)
  await gw.stop()
})

describe('direct methods', () => {
  it('round trip: request to the device, its answer back to the caller', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'm-round' })
    await methodDevice(d)
    const res = await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/methods/reboot`, { payload: { delay: 3 }, responseTimeoutSeconds: 5 })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ status: 200, payload: { echo: { delay: 3 }, method: 'reboot' } })
  })

  it('404 E_DEVICE_OFFLINE for a device that is not connected', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'm-offline' })
    const res = await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/methods/reboot`, {})
    expect(res.status).toBe(404)
    expect(errorCode(res)).toBe('E_DEVICE_OFFLINE')
  })

  it('504 E_METHOD_TIMEOUT when the device does not answer in time', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'm-slow' })
    await methodDevice(d, 7000)
    const started = Date.now()
    const res = await api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/methods/slow`, { responseTimeoutSeconds: 5 })
    expect(res.status).toBe(504)
    expect(errorCode(res)).toBe('E_METHOD_TIMEOUT')
    expect(Date.now() - started).toBeGreaterThanOrEqual(4900)
  })

  it('connectTimeout waits for a device that connects 2 s later', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'm-late' })
    const call = api(gw.httpUrl, 'POST', `/api/devices/${d.deviceId}/methods/hello`, { payload: 'hi', connectTimeoutSeconds: 10, responseTimeoutSeconds: 5 })
    await sleep(2000)
    await methodDevice(d)
    const res = await call
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ status: 200, payload: { echo: 'hi', method: 'hello' } })
  })

  it('answers a pending call with 503 E_SHUTTING_DOWN when the gateway stops', async () => {
    const other = await startTestGateway()
    try {
      const d = await other.gateway.registry.create({ deviceId: 'm-stopping' })
      const mute = await connectDevice(other.mqttUrl, d.deviceId, sasFor(d))
      mute.on('error', () => undefined)
      await mute.subscribeAsync('$iothub/methods/POST/#', { qos: 0 })
      const asked = new Promise<void>((r) => mute.once('message', () => r()))
      const call = api(other.httpUrl, 'POST', `/api/devices/${d.deviceId}/methods/never`, { responseTimeoutSeconds: 60 })
      // The call is pending once the device got the request (a fixed pause could end before the
      // HTTP request even reached a loaded gateway, which then stops with nothing pending).
      await asked
      const started = Date.now()
      await other.stop()
      const res = await call
      expect([res.status, errorCode(res)]).toEqual([503, 'E_SHUTTING_DOWN'])
      expect(Date.now() - started).toBeLessThan(5000)
    } finally {
      await other.stop()
    }
  })

  it('answers auth and validation errors', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'm-errors' })
    const path = `/api/devices/${d.deviceId}/methods/x`
    expect(errorCode(await api(gw.httpUrl, 'POST', path, {}, { token: null }))).toBe('E_UNAUTHORIZED')
    expect(errorCode(await api(gw.httpUrl, 'POST', path, {}, { token: 'wrong-token-0123456789abc' }))).toBe('E_UNAUTHORIZED')
    const bad = async (body: unknown, p = path): Promise<[number, string | undefined]> => {
      const res = await api(gw.httpUrl, 'POST', p, body)
      return [res.status, errorCode(res)]
    }
    expect(await bad({ responseTimeoutSeconds: 4 })).toEqual([400, 'E_BAD_REQUEST'])
    expect(await bad({ responseTimeoutSeconds: 301 })).toEqual([400, 'E_BAD_REQUEST'])
    expect(await bad({ connectTimeoutSeconds: -1 })).toEqual([400, 'E_BAD_REQUEST'])
    expect(await bad({ connectTimeoutSeconds: 301 })).toEqual([400, 'E_BAD_REQUEST'])
    expect(await bad({ other: true })).toEqual([400, 'E_BAD_REQUEST'])
    expect(await bad({}, `/api/devices/${d.deviceId}/methods/${encodeURIComponent('a b')}`)).toEqual([400, 'E_BAD_REQUEST'])
    expect(await bad({ payload: 'x'.repeat(128 * 1024 + 1) })).toEqual([413, 'E_PAYLOAD_TOO_LARGE'])
    expect(await bad({}, '/api/devices/nobody/methods/x')).toEqual([404, 'E_DEVICE_NOT_FOUND'])
  })
})
