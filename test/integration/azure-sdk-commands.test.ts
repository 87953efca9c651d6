import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client, Message, type Twin } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, feedbackRecords } from '../helpers/commands.js'

/**
 * The command channel with the unmodified Azure IoT device SDK (azure-iot-device 1.18, MQTT
 * transport over TLS): C2D messages, direct methods and twins, and all of them still working after
 * the SDK's token-renewal reconnect, after which it subscribes to nothing again (IoT Hub MQTT support, "Using the MQTT protocol directly (as a device)").
 */
describe('Azure IoT device SDK: C2D, methods, twins across token renewal', () => {
  let gw: TestGateway
  let dir: string
  let client: Client
  /** SUBSCRIBE filters seen by the broker, in order. */
  const subscribed: string[] = []
  const received: string[] = []
  const desired: Array<Record<string, unknown>> = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-sdk-commands-'))
    const certs = await initDevCerts(dir, ['localhost'])
    gw = await startTestGateway({ 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0' }, dir)
    const tlsPort = gw.gateway.addresses.mqtts!.port
    gw.gateway.broker.aedes.on('subscribe', (subs) => subscribed.push(...subs.map((sub) => sub.topic)))
    const d = await gw.gateway.registry.create({ deviceId: 'sdk-dev' })
    client = Client.fromConnectionString(`HostName=localhost;DeviceId=${d.deviceId};SharedAccessKey=${d.primaryKey};GatewayHostName=localhost:${tlsPort}`, Mqtt)
    // A new token (and so a DISCONNECT and a new CONNECT without re-subscribing) every 4 s.
    client.setOptions({ ca: readFileSync(certs.caCert, 'utf8'), tokenRenewal: { tokenValidTimeInSeconds: 8, tokenRenewalMarginInSeconds: 4 } })
    client.on('message', (msg: Message) => {
      received.push(msg.getData().toString())
      client.complete(msg, () => undefined)
    })
    client.onDeviceMethod('echo', (request, response) => {
      response.send(200, { echoed: request.payload as unknown }, () => undefined)
    })
    await client.open()
    const twin: Twin = await client.getTwin()
    twin.on('properties.desired', (patch: Record<string, unknown>) => desired.push(patch))
    // The SDK subscribes C2D, methods and desired properties asynchronously after open/getTwin.
    const probes = ['$iothub/methods/POST/x/?$rid=1', 'devices/sdk-dev/messages/devicebound/x', '$iothub/twin/PATCH/properties/desired/?$version=1']
    await waitFor(() => probes.every((topic) => gw.gateway.broker.isSubscribed(d.deviceId, topic)), 10_000, 'SDK subscriptions')
  })
  afterAll(async () => {
    await client?.close().catch(() => undefined)
    await gw?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('works before and after a token-renewal reconnect', { timeout: 90_000 }, async () => {
    const roundTrip = async (tag: string): Promise<void> => {
      const sent = await api(gw.httpUrl, 'POST', '/api/devices/sdk-dev/messages', { payload: `c2d-${tag}` })
      expect(sent.status).toBe(202)
      await waitFor(() => received.includes(`c2d-${tag}`), 10_000, `C2D ${tag}`)

      const method = await api(gw.httpUrl, 'POST', '/api/devices/sdk-dev/methods/echo', { payload: { tag }, responseTimeoutSeconds: 10, connectTimeoutSeconds: 10 })
      expect(method.body).toEqual({ status: 200, payload: { echoed: { tag } } })

      const patch = await api(gw.httpUrl, 'PATCH', '/api/devices/sdk-dev/twin', { desired: { tag } })
      expect(patch.status).toBe(200)
      await waitFor(() => desired.some((p) => p.tag === tag), 10_000, `desired ${tag}`)
    }
    await roundTrip('before')
    expect([...subscribed].sort()).toEqual(['$iothub/methods/POST/#', '$iothub/twin/PATCH/properties/desired/#', '$iothub/twin/res/#', 'devices/sdk-dev/messages/devicebound/#'])
    const connectsBefore = await connectionCount(gw)
    const subscriptionsBefore = subscribed.length
    // The SDK renews its token about every 4 s, later on a loaded machine (its next timer starts
    // after its reconnect): wait for a renewal, a disconnected and a connected event.
    await waitFor(async () => (await connectionCount(gw)) >= connectsBefore + 2, 30_000, 'a token renewal')
    await waitFor(() => gw.gateway.broker.connectionOf('sdk-dev'), 10_000, 'the SDK connected again')
    // The SDK renewed its token: a new connection, and no SUBSCRIBE on it.
    expect(subscribed.slice(subscriptionsBefore)).toEqual([])
    await roundTrip('after')
    const fb = await feedbackRecords(gw.gateway)
    expect(fb.map((f) => f.status)).toEqual(['completed', 'completed'])
  })
})

/** The device's connection sequence (connected and disconnected each count one). */
async function connectionCount(gw: TestGateway): Promise<number> {
  const device = await gw.gateway.registry.get('sdk-dev')
  return device?.connectionSeq ?? 0
}
