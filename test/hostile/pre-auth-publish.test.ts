import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { connectDevice } from '../helpers/gateway.js'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway } from '../helpers/hostile.js'
import { deviceConnect, RawPeer } from '../helpers/raw-mqtt.js'

/**
 * Found by the fuzzer: a PUBLISH written right behind a CONNECT, in the next socket read, reached
 * the publish hook while the CONNECT was still being authenticated, and was acknowledged and
 * routed through Aedes' broker-wide pub/sub. With a bad token, 9 of 20 forged publishes to
 * another device's `devicebound` topic reached that device: cloud-to-device injection without
 * credentials. Now such a publish waits for the CONNACK and goes nowhere if the CONNECT is
 * refused, and nothing is ever forwarded broker-wide.
 */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('hostile: publishes behind a CONNECT that is still being authenticated', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  let victim: { deviceId: string; token: string }
  let attacker: { deviceId: string; token: string }

  beforeAll(async () => {
    gw = await startHostileGateway()
    canary = await gw.addSasDevice('canary-preauth')
    victim = await gw.addSasDevice('victim')
    attacker = await gw.addSasDevice('intruder')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('acknowledges and routes nothing for a refused CONNECT, and keeps a pipelining device working', async () => {
    const device = await connectDevice(gw.mqttUrl, victim.deviceId, victim.token)
    await device.subscribeAsync(`devices/${victim.deviceId}/messages/devicebound/#`, { qos: 1 })
    const delivered: string[] = []
    device.on('message', (topic) => delivered.push(topic))
    const outcome = await underAttack(gw, canary, async () => {
      // 20 lanes at once, 15 rounds each: the window is one turn of the gateway's event loop, so
      // the PUBLISHes follow their CONNECT in separate writes after 0 to 3 ms.
      let acks = 0
      await Promise.all(
        Array.from({ length: 20 }, async (_, lane) => {
          for (let round = 0; round < 15; round++) {
            const peer = await RawPeer.tcp(gw.mqttPort, `127.0.5.${lane + 1}`)
            // Refused: a token of another key (checked against the registry), or a CONNECT without
            // credentials (refused at once, before any lookup: CONNACK 4 goes out right away).
            const connect = deviceConnect(attacker.deviceId, `${attacker.token.slice(0, -10)}AAAAAAAAAA`)
            peer.write(round % 2 === 0 ? connect : { ...connect, password: undefined })
            for (let k = 0; k < 4; k++) {
              await new Promise((r) => setTimeout(r, (lane + round + k) % 4))
              const mid = `forged-${lane}-${round}-${k}`
              const topic = k % 2 === 0 ? `devices/${victim.deviceId}/messages/devicebound/%24.mid=${mid}` : `devices/${attacker.deviceId}/messages/events/%24.mid=${mid}`
              if (!peer.isClosed) peer.write({ cmd: 'publish', topic, payload: Buffer.from('forged'), qos: 1, messageId: k + 1, dup: false, retain: false })
            }
            await peer.closedWithin(5000)
            acks += peer.packets.filter((p) => p.cmd === 'puback' || p.cmd === 'pubrec').length
          }
        }),
      )
      // A device that pipelines correctly: CONNECT, then PUBLISH in the next write, before CONNACK.
      const pipelined = await RawPeer.tcp(gw.mqttPort)
      pipelined.write(deviceConnect(attacker.deviceId, attacker.token))
      await tick()
      pipelined.write({ cmd: 'publish', topic: `devices/${attacker.deviceId}/messages/events/%24.mid=pipelined`, payload: Buffer.from('ok'), qos: 1, messageId: 3, dup: false, retain: false })
      await pipelined.next('puback')
      const order = pipelined.packets.map((p) => p.cmd)
      pipelined.write(mqttPacket.generate({ cmd: 'disconnect' }))
      await pipelined.closedWithin(2000)
      await new Promise((r) => setTimeout(r, 300))
      return { acks, order }
    })
    await device.endAsync()
    expect(outcome.result.acks).toBe(0)
    expect(delivered).toEqual([])
    // [MQTT-3.2.0-1]: the CONNACK comes first, the PUBACK after it.
    expect(outcome.result.order).toEqual(['connack', 'puback'])
    const stored = [...(await gw.storedMessageIds())]
    expect(stored.filter((id) => id.startsWith('forged'))).toEqual([])
    await expectSurvived(gw, 'publishes behind refused CONNECTs', outcome, { rssGrowthBytes: 48 * MiB }, ['pipelined'])
  }, 60_000)
})
