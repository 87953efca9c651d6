import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway, metric } from '../helpers/hostile.js'
import { deviceConnect, RawPeer } from '../helpers/raw-mqtt.js'

/**
 * Issue item 4: a device with a 62 KB twin that sends 20,000 `$iothub/twin/GET` at QoS 0 in one
 * write and never reads grew the gateway by 1.26 GB in 6 s. Now its requests are answered one at a
 * time, what waits in its send buffer is bounded (limits.maxOutboundBytes): past it the device is
 * not read, and when the buffer does not drain within limits.outboundDrainSeconds (3 s here) it is
 * disconnected with E_SLOW_CONSUMER.
 */
describe('hostile: a device that asks and never reads', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  let dev: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway({ env: { STREAMGATE_COMMANDS__MAX_TWIN_SECTION_BYTES: String(64 * 1024), STREAMGATE_LIMITS__OUTBOUND_DRAIN_SECONDS: '3' } })
    canary = await gw.addSasDevice('canary-outbound')
    dev = await gw.addSasDevice('greedy-dev')
    // A desired section of 62 KB: every twin GET answer carries it.
    const res = await gw.api('PATCH', `/api/devices/${dev.deviceId}/twin`, { desired: { blob: 'x'.repeat(62 * 1024) } })
    expect(res.status, await res.text()).toBe(200)
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('stops reading it, then disconnects it, with memory bounded', async () => {
    const reason = 'streamgate_mqtt_disconnects_total{reason="error:E_SLOW_CONSUMER"}'
    const before = await metric(gw, reason)
    const outcome = await underAttack(gw, canary, async () => {
      const peer = await RawPeer.tcp(gw.mqttPort)
      peer.write(deviceConnect(dev.deviceId, dev.token))
      expect((await peer.next('connack'))?.returnCode).toBe(0)
      peer.write({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] })
      expect((await peer.next('suback'))?.granted).toEqual([0])
      // From here on the device reads nothing.
      peer.stream.pause()
      const gets = Array.from({ length: 20_000 }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic: `$iothub/twin/GET/?$rid=${i}`, payload: Buffer.alloc(0), qos: 0, dup: false, retain: false }))
      peer.write(Buffer.concat(gets))
      const t0 = Date.now()
      while ((await metric(gw, reason)) === before && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 100))
      const disconnected = (await metric(gw, reason)) - before
      const seconds = (Date.now() - t0) / 1000
      peer.destroy()
      return { disconnected, seconds }
    })
    expect(outcome.result.disconnected).toBe(1)
    // Not at once (it was first only not read), and not much later than the drain deadline.
    expect(outcome.result.seconds).toBeGreaterThanOrEqual(2.5)
    expect(outcome.result.seconds).toBeLessThan(15)
    await expectSurvived(gw, '20,000 twin GETs of a 62 KB twin, never read', outcome, { rssGrowthBytes: 64 * MiB })
  }, 60_000)
})
