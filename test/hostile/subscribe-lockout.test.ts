import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway } from '../helpers/hostile.js'
import { deviceConnect, RawPeer } from '../helpers/raw-mqtt.js'

/**
 * Issue item 5: a SUBSCRIBE with one allowed and one forbidden filter used to store both in
 * Aedes' persistence; every later clean-session-0 CONNECT of the device (what the Azure SDK always
 * sends) re-authorised the stored forbidden filter and was closed before CONNACK, until a restart.
 * Now the SUBSCRIBE is refused as a whole (the connection is closed) and nothing of it is stored.
 */
describe('hostile: a SUBSCRIBE mixing allowed and forbidden filters', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  let dev: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway()
    canary = await gw.addSasDevice('canary-subscribe')
    dev = await gw.addSasDevice('lockout-dev')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('is refused whole, stores nothing, and the device connects again at once', async () => {
    const outcome = await underAttack(gw, canary, async () => {
      const rounds: Array<{ refusedClosed: boolean; reconnectCode: number | undefined; twinAnswered: boolean }> = []
      for (let round = 0; round < 5; round++) {
        const first = await RawPeer.tcp(gw.mqttPort)
        first.write(deviceConnect(dev.deviceId, dev.token))
        expect((await first.next('connack'))?.returnCode).toBe(0)
        first.write({
          cmd: 'subscribe',
          messageId: 1,
          subscriptions: [
            { topic: '$iothub/twin/res/#', qos: 0 },
            { topic: '$iothub/twin/pes/#', qos: 0 },
            { topic: `devices/other-device/messages/devicebound/#`, qos: 1 },
          ],
        })
        const refusedClosed = await first.closedWithin(5000)
        const suback = first.packets.find((p) => p.cmd === 'suback')
        expect(suback, 'no SUBACK for a refused SUBSCRIBE').toBeUndefined()

        // Clean session 0 again, as the Azure SDK reconnects: CONNACK 0, and the allowed filter of
        // the refused packet was not stored (a twin GET gets no answer without a new SUBSCRIBE).
        const again = await RawPeer.tcp(gw.mqttPort)
        again.write(deviceConnect(dev.deviceId, dev.token))
        const connack = await again.next('connack')
        again.write({ cmd: 'publish', topic: `$iothub/twin/GET/?$rid=${round}`, payload: Buffer.alloc(0), qos: 0, dup: false, retain: false })
        await new Promise((r) => setTimeout(r, 300))
        const twinAnswered = again.packets.some((p) => p.cmd === 'publish')
        again.write({ cmd: 'disconnect' })
        await again.closedWithin(2000)
        rounds.push({ refusedClosed, reconnectCode: connack?.returnCode, twinAnswered })
      }
      // The same device subscribing properly afterwards works as before.
      const proper = await RawPeer.tcp(gw.mqttPort)
      proper.write(deviceConnect(dev.deviceId, dev.token))
      await proper.next('connack')
      proper.write({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] })
      const granted = (await proper.next('suback'))?.granted
      proper.write({ cmd: 'publish', topic: '$iothub/twin/GET/?$rid=ok', payload: Buffer.alloc(0), qos: 0, dup: false, retain: false })
      const answer = await proper.next('publish', 5000)
      proper.destroy()
      return { rounds, granted, answerTopic: answer?.topic }
    })
    for (const r of outcome.result.rounds) expect(r).toEqual({ refusedClosed: true, reconnectCode: 0, twinAnswered: false })
    expect(outcome.result.granted).toEqual([0])
    expect(outcome.result.answerTopic).toBe('$iothub/twin/res/200/?$rid=ok')
    await expectSurvived(gw, 'mixed allowed/forbidden SUBSCRIBE x5', outcome, { rssGrowthBytes: 32 * MiB })
  })
})
