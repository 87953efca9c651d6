import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { collect, sleep } from '../helpers/commands.js'

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve()
    client.once('close', () => resolve())
  })
}

/**
 * The device publish ACL is exactly IoT Hub's set (IoT Hub MQTT support: a device publishes only telemetry, twin requests and method responses): telemetry, twin GET, twin
 * PATCH reported, method responses. `$iothub/...` answers go to the asking connection only.
 */
describe('IoT Hub device publish ACL and per-connection $iothub traffic', () => {
  let gw: TestGateway
  let a: Device
  let b: Device
  const clients: MqttClient[] = []

  beforeAll(async () => {
    gw = await startTestGateway()
    a = await gw.gateway.registry.create({ deviceId: 'iot-acl-a' })
    b = await gw.gateway.registry.create({ deviceId: 'iot-acl-b' })
  })
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined)
    await gw.stop()
  })

  const connect = async (d: Device): Promise<MqttClient> => {
    const c = await connectDevice(gw.mqttUrl, d.deviceId, sasFor(d))
    c.on('error', () => undefined)
    clients.push(c)
    return c
  }

  it('accepts twin GET, twin PATCH reported and method responses; only the asker gets the answer', async () => {
    const ca = await connect(a)
    const cb = await connect(b)
    const gotA = collect(ca)
    const gotB = collect(cb)
    await ca.subscribeAsync('$iothub/twin/res/#', { qos: 0 })
    await cb.subscribeAsync('$iothub/twin/res/#', { qos: 0 })
    ca.publish('$iothub/twin/GET/?$rid=r1', ' ', { qos: 0 })
    ca.publish('$iothub/twin/PATCH/properties/reported/?$rid=r2', '{"a":1}', { qos: 0 })
    await ca.publishAsync('$iothub/methods/res/200/?$rid=unknown', '{}', { qos: 1 })
    await waitFor(() => gotA.length === 2, 15_000, 'two twin answers')
    await sleep(100)
    // Answers are matched by $rid, not by order (as with IoT Hub).
    expect(gotA.map((m) => m.topic).sort()).toEqual(['$iothub/twin/res/200/?$rid=r1', '$iothub/twin/res/204/?$rid=r2&$version=2'])
    expect(gotB).toEqual([])
    expect(ca.connected).toBe(true)
  })

  for (const topic of ['$iothub/twin/DELETE/?$rid=1', '$iothub/methods/POST/x/?$rid=1', '$iothub/twin/GET/', '$iothub/twin/PATCH/properties/desired/?$rid=1', '$iothub/methods/res/abc/?$rid=1']) {
    it(`closes the connection on ${topic}`, async () => {
      const c = await connect(a)
      const gone = closed(c)
      c.publish(topic, '{}', { qos: 0 })
      await gone
    })
  }
})
