import { afterAll, describe, expect, it } from 'vitest'
import { connectAsync } from 'mqtt'
import { deviceOptions, waitFor } from '../helpers/gateway.js'
import { ADMIN_TOKEN, MiB, expectSurvived, startHostileGateway, underAttack, type HostileGateway } from '../helpers/hostile.js'
import { readTopic } from './gateway-restarts.js'

/**
 * Twin patches nested 5,000 deep (a few KB of JSON, which JSON.parse takes without complaint)
 * from a device over MQTT and from the service over the API. Each is refused with 400
 * E_TWIN_TOO_DEEP before anything recursive runs: no stack overflow, nothing changed, no event,
 * and the device's connection keeps working.
 */
const DEPTH = 5000
const ROUNDS = 20

describe('hostile: twin patches nested 5,000 deep', () => {
  let gw: HostileGateway | null = null
  afterAll(async () => {
    await gw?.stop()
  })

  it('answers 400 E_TWIN_TOO_DEEP to the device and the API, changes nothing, and keeps serving', async () => {
    gw = await startHostileGateway()
    const canary = await gw.addSasDevice('canary')
    const dev = await gw.addSasDevice('twin-dev')
    const deepObjects = '{"a":'.repeat(DEPTH) + '1' + '}'.repeat(DEPTH)
    const deepArrays = '{"a":' + '['.repeat(DEPTH) + ']'.repeat(DEPTH) + '}'
    const client = await connectAsync(gw.mqttUrl, deviceOptions(dev.deviceId, dev.token, { connectTimeout: 10_000 }))
    const responses: Array<{ topic: string; body: string }> = []
    client.on('message', (topic, payload) => responses.push({ topic, body: payload.toString() }))
    await client.subscribeAsync('$iothub/twin/res/#', { qos: 0 })
    const acked: string[] = []

    const outcome = await underAttack(gw, canary, async () => {
      for (let round = 0; round < ROUNDS; round++) {
        const rid = `deep-${round}`
        client.publish(`$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, round % 2 === 0 ? deepObjects : deepArrays, { qos: 0 })
        const res = await waitFor(() => responses.find((r) => r.topic.includes(`$rid=${rid}`)), 10_000, `answer to ${rid}`)
        expect(res.topic).toBe(`$iothub/twin/res/400/?$rid=${rid}`)
        expect(JSON.parse(res.body)).toMatchObject({ errorCode: 400000, code: 'E_TWIN_TOO_DEEP' })
        // The raw text: JSON.stringify of such an object would overflow this process's stack.
        const api = await fetch(`${gw!.httpUrl}/api/devices/${dev.deviceId}/twin`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          // Desired and tags alternate: both sections go through the same depth bound.
          body: `{"${round % 4 < 2 ? 'desired' : 'tags'}":${round % 2 === 0 ? deepObjects : deepArrays}}`,
        })
        expect(api.status).toBe(400)
        expect(await api.json()).toEqual({ error: { code: 'E_TWIN_TOO_DEEP', message: expect.stringContaining('10 levels') } })
      }
      // The same connection still works: telemetry at QoS 1 and a twin GET.
      await client.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=after-deep`, 'still here', { qos: 1 })
      acked.push('after-deep')
      client.publish('$iothub/twin/GET/?$rid=get-1', ' ', { qos: 0 })
      const got = await waitFor(() => responses.find((r) => r.topic.includes('$rid=get-1')), 10_000, 'twin GET answer')
      expect(got.topic).toBe('$iothub/twin/res/200/?$rid=get-1')
      expect(JSON.parse(got.body)).toEqual({ desired: { $version: 1 }, reported: { $version: 1 } })
    })
    await expectSurvived(gw, `${ROUNDS} reported and ${ROUNDS} desired patches ${DEPTH} deep`, outcome, { rssGrowthBytes: 64 * MiB }, acked)

    expect(client.connected, 'device connection still up').toBe(true)
    await client.endAsync()
    const twin = await gw.api('GET', `/api/devices/${dev.deviceId}/twin`)
    expect(await twin.json()).toEqual({ deviceId: dev.deviceId, desired: { $version: 1 }, reported: { $version: 1 }, tags: { $version: 1 } })
    const twinEvents = (await readTopic(gw.dataDir, 'device-events')).filter((r) => r.key === dev.deviceId && r.headers['event-type']!.startsWith('twin-'))
    expect(twinEvents, 'no twin event for a refused patch').toEqual([])
    expect(gw.output()).not.toMatch(/Maximum call stack|RangeError/)
  }, 120_000)
})
