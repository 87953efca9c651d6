import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readAll, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api } from '../helpers/commands.js'

/**
 * Registry changes made through the API are facts for the backend too: `created` and `deleted`
 * on `device-events`, beside the connection events (README, "Stream records").
 */
describe('created and deleted events on device-events', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startTestGateway()
  })
  afterAll(async () => {
    await gw.stop()
  })

  const eventsOf = async (deviceId: string): Promise<Array<{ type: string; deviceId: string; time: string; header: string | undefined }>> =>
    (await readAll(gw.gateway, 'device-events'))
      .filter((r) => r.key === deviceId)
      .map((r) => ({ ...(JSON.parse(r.value.toString()) as { type: string; deviceId: string; time: string }), header: r.headers['event-type'] }))

  it('POST /api/devices writes created; DELETE writes deleted; a refused create writes nothing', async () => {
    expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'adm-1' })).status).toBe(201)
    const created = await waitFor(async () => {
      const e = await eventsOf('adm-1')
      return e.length === 1 ? e : null
    }, 5000, 'created event')
    expect(created[0]).toMatchObject({ type: 'created', deviceId: 'adm-1', header: 'created' })
    expect(Number.isNaN(Date.parse(created[0]!.time))).toBe(false)

    // Already exists: 409, and no second created event.
    expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'adm-1' })).status).toBe(409)
    expect((await api(gw.httpUrl, 'DELETE', '/api/devices/adm-1')).status).toBe(204)
    const all = await waitFor(async () => {
      const e = await eventsOf('adm-1')
      return e.length === 2 ? e : null
    }, 5000, 'deleted event')
    expect(all.map((e) => [e.type, e.header])).toEqual([['created', 'created'], ['deleted', 'deleted']])
    // Removing an unknown device is a 404 and no event.
    expect((await api(gw.httpUrl, 'DELETE', '/api/devices/adm-1')).status).toBe(404)
    await gw.gateway.events.flush()
    expect(await eventsOf('adm-1')).toHaveLength(2)
  })
})
