import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { api, errorCode } from '../helpers/commands.js'

/**
 * Ids at the HTTP edge: a path parameter longer than the router takes, a malformed
 * percent-escape, and the ids `.` and `..` all get the `{error:{code,message}}` envelope with a
 * stable code (never Fastify's own 414 or 400 bodies).
 */
describe('device ids in API paths', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startTestGateway()
  })
  afterAll(async () => {
    await gw.stop()
  })

  const long = 'x'.repeat(10_000)

  it.each([
    ['GET', `/api/devices/${long}`],
    ['DELETE', `/api/devices/${long}`],
    ['PATCH', `/api/devices/${long}`],
    ['POST', `/api/devices/${long}/keys/rotate`],
    ['GET', `/api/devices/${long}/messages`],
    ['PATCH', `/api/devices/${long}/twin`],
    ['POST', `/api/devices/${long}/methods/reboot`],
  ])('%s %s… answers 400 E_DEVICE_ID_INVALID in the envelope', async (method, path) => {
    const res = await api(gw.httpUrl, method, path, method === 'GET' || method === 'DELETE' ? undefined : {})
    expect(res.status).toBe(400)
    expect(res.body).toEqual({ error: { code: 'E_DEVICE_ID_INVALID', message: expect.stringContaining('10000 characters') } })
    // The path is never echoed back.
    expect(JSON.stringify(res.body).length).toBeLessThan(400)
  })

  it('answers a long method name with 400 E_BAD_REQUEST, and a malformed escape with 400 E_BAD_REQUEST', async () => {
    await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'ids-1' })
    const method = await api(gw.httpUrl, 'POST', `/api/devices/ids-1/methods/${'m'.repeat(600)}`, {})
    expect([method.status, errorCode(method)]).toEqual([400, 'E_BAD_REQUEST'])
    const bad = await api(gw.httpUrl, 'GET', '/api/devices/%E0%A4%A')
    expect([bad.status, errorCode(bad)]).toEqual([400, 'E_BAD_REQUEST'])
    // Still within the router's bound: the route runs (an unknown id is a 404, as before).
    const unknown = await api(gw.httpUrl, 'GET', `/api/devices/${'y'.repeat(129)}`)
    expect([unknown.status, errorCode(unknown)]).toEqual([404, 'E_DEVICE_NOT_FOUND'])
  })

  it.each(['.', '..'])('refuses to register %j with 400 E_DEVICE_ID_INVALID', async (deviceId) => {
    const res = await api(gw.httpUrl, 'POST', '/api/devices', { deviceId })
    expect([res.status, errorCode(res)]).toEqual([400, 'E_DEVICE_ID_INVALID'])
    expect((res.body as { error: { message: string } }).error.message).toContain('other than "." and ".."')
    expect(await gw.gateway.registry.get(deviceId)).toBeNull()
  })
})
