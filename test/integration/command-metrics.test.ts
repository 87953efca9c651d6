import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectDevice, sasFor, startTestGateway, waitFor, metricSamples, type TestGateway } from '../helpers/gateway.js'
import { api } from '../helpers/commands.js'

/**
 * The command channel in /metrics: direct method calls by result with their round trip, and the
 * cloud-to-device backlog (queued messages, feedback not yet written), with a real device.
 */
describe('command channel metrics', () => {
  let gw: TestGateway
  let device: MqttClient | null = null
  beforeAll(async () => {
    gw = await startTestGateway()
  })
  afterAll(async () => {
    await device?.endAsync(true)
    await gw.stop()
  })

  const scrape = (): Promise<Map<string, number>> => metricSamples(gw)

  it('counts method results (offline, answered with its duration) and follows the C2D queue depth', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'metrics-dev' })
    const start = await scrape()
    expect(start.get('streamgate_c2d_queued_messages')).toBe(0)

    // Offline: the call fails and is counted by its code; two messages wait in the queue.
    expect((await api(gw.httpUrl, 'POST', '/api/devices/metrics-dev/methods/ping', {})).status).toBe(404)
    for (const payload of ['a', 'b']) expect((await api(gw.httpUrl, 'POST', '/api/devices/metrics-dev/messages', { payload })).status).toBe(202)
    let m = await scrape()
    expect(m.get('streamgate_methods_total{result="E_DEVICE_OFFLINE"}')).toBe(1)
    expect(m.get('streamgate_c2d_queued_messages')).toBe(2)
    expect(m.get('streamgate_method_duration_seconds_count') ?? 0).toBe(0)

    // Online: the device answers the method and takes (PUBACKs) both messages.
    device = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
    const dev = device
    dev.on('message', (topic) => {
      const rid = /^\$iothub\/methods\/POST\/[^/]+\/\?\$rid=(.+)$/.exec(topic)?.[1]
      if (rid) dev.publish(`$iothub/methods/res/200/?$rid=${rid}`, '{"ok":true}', { qos: 0 })
    })
    await dev.subscribeAsync('$iothub/methods/POST/#', { qos: 0 })
    await dev.subscribeAsync('devices/metrics-dev/messages/devicebound/#', { qos: 1 })
    expect((await api(gw.httpUrl, 'POST', '/api/devices/metrics-dev/methods/ping', { responseTimeoutSeconds: 10 })).body).toEqual({ status: 200, payload: { ok: true } })
    m = await waitFor(async () => {
      const s = await scrape()
      return s.get('streamgate_c2d_queued_messages') === 0 && s.get('streamgate_c2d_feedback_pending') === 0 ? s : null
    }, 10_000, 'an empty queue and outbox')
    expect(m.get('streamgate_methods_total{result="answered"}')).toBe(1)
    expect(m.get('streamgate_methods_total{result="E_DEVICE_OFFLINE"}')).toBe(1)
    expect(m.get('streamgate_method_duration_seconds_count')).toBe(1)
    expect(m.get('streamgate_method_duration_seconds_sum')).toBeGreaterThan(0)
    expect(m.get('streamgate_c2d_feedback_total{status="completed"}')).toBe(2)
  })
})
