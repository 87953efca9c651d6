import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, readAll, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

interface Event {
  type: string
  deviceId: string
  sequence?: number
  reason?: string
  transport?: string
}

/**
 * The connection events of a device. Its `created` event comes first (the registry writes one
 * for every device it creates, here through the registry itself) and is left out.
 */
async function eventsOf(gw: TestGateway, deviceId: string): Promise<Event[]> {
  const all = (await readAll(gw.gateway, 'device-events'))
    .filter((r) => r.key === deviceId)
    .map((r) => {
      expect(r.headers['event-type']).toBe((JSON.parse(r.value.toString()) as Event).type)
      return JSON.parse(r.value.toString()) as Event
    })
  if (all.length > 0) expect(all[0]!.type).toBe('created')
  return all.slice(1)
}

async function apiDevice(gw: TestGateway, id: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${gw.httpUrl}/api/devices/${encodeURIComponent(id)}`, { headers: { authorization: `Bearer ${gw.config.adminToken}` } })
  expect(res.status).toBe(200)
  return (await res.json()) as Record<string, unknown>
}

describe('connection lifecycle', () => {
  let gw: TestGateway
  let dev: Device

  beforeAll(async () => {
    gw = await startTestGateway()
    dev = await gw.gateway.registry.create({ deviceId: 'life-1' })
  })
  afterAll(async () => {
    await gw.stop()
  })

  it('writes connected and disconnected events with a per-device sequence and the reason', async () => {
    const c1 = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    await waitFor(async () => (await apiDevice(gw, dev.deviceId)).connectionState === 'connected', 15_000, 'connected state')
    await c1.endAsync() // sends DISCONNECT
    await waitFor(async () => (await eventsOf(gw, dev.deviceId)).length === 2, 15_000, 'two events')

    const c2 = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    await waitFor(async () => (await eventsOf(gw, dev.deviceId)).length === 3)
    c2.stream.destroy() // socket drops without DISCONNECT
    c2.end(true)
    const events = await waitFor(async () => {
      const e = await eventsOf(gw, dev.deviceId)
      return e.length === 4 ? e : null
    })
    expect(events.map((e) => e.type)).toEqual(['connected', 'disconnected', 'connected', 'disconnected'])
    expect(events.map((e) => e.sequence)).toEqual([1, 2, 3, 4])
    expect(events[1]!.reason).toBe('client-disconnect')
    expect(events[3]!.reason).toBe('socket-closed')
    expect(events[0]!.transport).toBe('tcp')
    const view = await apiDevice(gw, dev.deviceId)
    expect(view.connectionState).toBe('disconnected')
    expect(view.connectionSeq).toBe(4)
  })

  it('reports a device replaced by a new connection with the same id', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'life-2' })
    const first = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
    first.on('error', () => undefined)
    const second = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
    const events = await waitFor(async () => {
      const e = await eventsOf(gw, d.deviceId)
      return e.length === 3 ? e : null
    })
    expect(events.map((e) => [e.type, e.reason])).toEqual([['connected', undefined], ['disconnected', 'replaced'], ['connected', undefined]])
    first.end(true)
    await second.endAsync()
  })

  it('disconnects a live device when it is disabled through the API', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'life-3' })
    const client = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
    const closed = new Promise<void>((r) => client.once('close', () => r()))
    const res = await fetch(`${gw.httpUrl}/api/devices/${d.deviceId}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${gw.config.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'disabled' }),
    })
    expect(res.status).toBe(200)
    await closed
    const events = await waitFor(async () => {
      const e = await eventsOf(gw, d.deviceId)
      return e.length === 2 ? e : null
    })
    expect(events[1]).toMatchObject({ type: 'disconnected', reason: 'kicked' })
    client.end(true)
  })
})
