import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, readAll, sasFor, startTestGateway, type TestGateway } from '../helpers/gateway.js'

/** Device ids use IoT Hub's full alphabet (`[A-Za-z0-9-.%_*?!(),:=@$']`, up to 128 characters). */
describe('device ids at the edges of the IoT Hub rules', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startTestGateway()
  })
  afterAll(async () => {
    await gw.stop()
  })

  for (const deviceId of ['d'.repeat(128), "a-b.c%d_e*f?g!h(i)j,k:l=m@n$o'p"]) {
    it(`connects and publishes as ${deviceId.length > 40 ? `a ${deviceId.length}-character id` : deviceId}`, async () => {
      const dev = await gw.gateway.registry.create({ deviceId })
      const client = await connectDevice(gw.mqttUrl, deviceId, sasFor(dev))
      await client.publishAsync(`devices/${deviceId}/messages/events/%24.mid=edge`, 'edge', { qos: 1 })
      await client.endAsync()
      const mine = (await readAll(gw.gateway, 'telemetry')).filter((r) => r.key === deviceId)
      expect(mine.map((r) => r.headers['message-id'])).toEqual(['edge'])
    })
  }
})
