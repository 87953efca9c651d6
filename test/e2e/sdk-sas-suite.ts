import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client, Message, type Twin } from 'azure-iot-device'
import type { Mqtt, MqttWs } from 'azure-iot-device-mqtt'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { readAll, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, feedbackRecords, sleep } from '../helpers/commands.js'

/**
 * The unmodified Azure IoT device SDK against the gateway's own TLS listeners: `Mqtt` (mqtts on
 * 8883) and `MqttWs` (wss on 443, the port the SDK hard-codes, protocol note §2). The device keeps
 * a real-looking hub name in HostName and reaches the gateway through GatewayHostName, trusting
 * the `certs init` development CA. The SDK renews its token every 4 s throughout (protocol note
 * §1), and the gateway restarts near the end. One test file per transport (fixed ports 8883 and 443, so each
 * file enables only its own listener); each file runs in its own process.
 */
export const HUB = 'contoso-prod.azure-devices.net'

export function sasSuite(name: string, transport: typeof Mqtt | typeof MqttWs, expected: 'tls' | 'wss'): void {
  describe(`Azure IoT device SDK over ${name} with SAS`, () => {
    let dataDir: string
    let gw: TestGateway
    let client: Client
    let ca: string
    const c2d: Message[] = []
    const desired: Array<Record<string, unknown>> = []
    const overrides = { hostname: HUB, ...(expected === 'tls' ? { 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '8883' } : { 'http.wss.enabled': 'true', 'http.wss.port': '443' }) }

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'streamgate-e2e-'))
      // `certs init` into the data dir; with certFile/keyFile unset the gateway uses these files.
      const certs = await initDevCerts(dataDir, ['localhost', '127.0.0.1'])
      ca = readFileSync(certs.caCert, 'utf8')
      gw = await startTestGateway(overrides, dataDir)
      const d = await gw.gateway.registry.create({ deviceId: 'sdk-e2e' })
      client = Client.fromConnectionString(`HostName=${HUB};DeviceId=${d.deviceId};SharedAccessKey=${d.primaryKey};GatewayHostName=localhost`, transport)
      // A new token (a DISCONNECT and a new CONNECT that subscribes to nothing) every 4 s, all along.
      client.setOptions({ ca, tokenRenewal: { tokenValidTimeInSeconds: 8, tokenRenewalMarginInSeconds: 4 } })
      client.on('message', (msg: Message) => {
        c2d.push(msg)
        client.complete(msg, () => undefined)
      })
      client.onDeviceMethod('echo', (request, response) => {
        response.send(200, { echoed: request.payload as unknown }, () => undefined)
      })
      await client.open()
    })
    afterAll(async () => {
      await client?.close().catch(() => undefined)
      await gw?.stop()
      rmSync(dataDir, { recursive: true, force: true })
    })

    it(`connects over ${expected}`, () => {
      expect(gw.gateway.broker.connectionOf('sdk-e2e')?.transport).toBe(expected)
    })

    it('sendEvent: message id, correlation id, content type/encoding and app properties become headers', async () => {
      const msg = new Message(JSON.stringify({ t: 21.5 }))
      msg.messageId = `m-${expected}`
      msg.correlationId = 'corr-1'
      msg.contentType = 'application/json'
      msg.contentEncoding = 'utf-8'
      msg.properties.add('alert', 'high')
      msg.properties.add('site', 'plant 1/line#2')
      await client.sendEvent(msg)
      const records = await waitFor(async () => {
        const all = (await readAll(gw.gateway, 'telemetry')).filter((r) => r.headers['message-id'] === `m-${expected}`)
        return all.length > 0 ? all : undefined
      }, 10_000, 'telemetry record')
      const r = records[0]!
      expect(r.key).toBe('sdk-e2e')
      expect(r.value.toString()).toBe('{"t":21.5}')
      expect(r.headers).toMatchObject({ 'correlation-id': 'corr-1', 'content-type': 'application/json', 'content-encoding': 'utf-8', alert: 'high', site: 'plant 1/line#2', 'device-id': 'sdk-e2e' })
    })

    it('C2D arrives with its properties and is completed', async () => {
      const sent = await api(gw.httpUrl, 'POST', '/api/devices/sdk-e2e/messages', { payload: 'hello', messageId: 'c2d-1', properties: { colour: 'blue' }, contentType: 'text/plain' })
      expect(sent.status).toBe(202)
      const msg = await waitFor(() => c2d.find((m) => m.getData().toString() === 'hello'), 10_000, 'C2D message')
      expect(msg.messageId).toBe('c2d-1')
      expect(msg.properties.getValue('colour')).toBe('blue')
      expect(msg.contentType).toBe('text/plain')
      await waitFor(async () => (await feedbackRecords(gw.gateway)).some((f) => f.status === 'completed'), 10_000, 'completed feedback')
    })

    it('twin: get, reported update, desired notification', async () => {
      const twin: Twin = await client.getTwin()
      twin.on('properties.desired', (patch: Record<string, unknown>) => desired.push(patch))
      await new Promise<void>((resolve, reject) => twin.properties.reported.update({ firmware: '1.2.3' }, (err?: Error) => (err ? reject(err) : resolve())))
      const shown = await api(gw.httpUrl, 'GET', '/api/devices/sdk-e2e/twin')
      expect(JSON.stringify(shown.body)).toContain('1.2.3')
      await waitFor(() => gw.gateway.broker.isSubscribed('sdk-e2e', '$iothub/twin/PATCH/properties/desired/?$version=1'), 10_000, 'desired subscription')
      const patch = await api(gw.httpUrl, 'PATCH', '/api/devices/sdk-e2e/twin', { desired: { interval: 30 } })
      expect(patch.status).toBe(200)
      await waitFor(() => desired.some((p) => p.interval === 30), 10_000, 'desired notification')
    })

    it('direct method round trip', async () => {
      await waitFor(() => gw.gateway.broker.isSubscribed('sdk-e2e', '$iothub/methods/POST/echo/?$rid=1'), 10_000, 'methods subscription')
      const res = await api(gw.httpUrl, 'POST', '/api/devices/sdk-e2e/methods/echo', { payload: { n: 1 }, responseTimeoutSeconds: 10, connectTimeoutSeconds: 10 })
      expect(res.body).toEqual({ status: 200, payload: { echoed: { n: 1 } } })
    })

    const roundTrip = async (tag: string): Promise<void> => {
      expect((await api(gw.httpUrl, 'POST', '/api/devices/sdk-e2e/messages', { payload: `c2d-${tag}` })).status).toBe(202)
      await waitFor(() => c2d.some((m) => m.getData().toString() === `c2d-${tag}`), 15_000, `C2D ${tag}`)
      const method = await api(gw.httpUrl, 'POST', '/api/devices/sdk-e2e/methods/echo', { payload: { tag }, responseTimeoutSeconds: 10, connectTimeoutSeconds: 10 })
      expect(method.body).toEqual({ status: 200, payload: { echoed: { tag } } })
      expect((await api(gw.httpUrl, 'PATCH', '/api/devices/sdk-e2e/twin', { desired: { tag } })).status).toBe(200)
      await waitFor(() => desired.some((p) => p.tag === tag), 15_000, `desired ${tag}`)
    }
    const connectionSeq = async (): Promise<number> => (await gw.gateway.registry.get('sdk-e2e'))?.connectionSeq ?? 0

    it('C2D, methods and desired notifications keep working across forced token renewals', async () => {
      const before = await connectionSeq()
      await sleep(9000)
      // At least two renewals: each is a disconnected and a connected event.
      expect(await connectionSeq()).toBeGreaterThanOrEqual(before + 4)
      await roundTrip('after-renewal')
    }, 60_000)

    it('the SDK reconnects on its own after a gateway restart, and everything still works', async () => {
      await gw.stop()
      gw = await startTestGateway(overrides, dataDir)
      await waitFor(() => gw.gateway.broker.connectionOf('sdk-e2e'), 30_000, 'SDK reconnect')
      await roundTrip('after-restart')
      const completed = (await feedbackRecords(gw.gateway)).filter((f) => f.status === 'completed')
      expect(completed).toHaveLength(3)
    }, 90_000)

    it('TTL expiry: a message that expires while the device is offline ends as expired and is never delivered', async () => {
      await client.close()
      await waitFor(async () => gw.gateway.broker.connectionOf('sdk-e2e') === null, 10_000, 'device offline')
      const res = await api(gw.httpUrl, 'POST', '/api/devices/sdk-e2e/messages', { payload: 'c2d-late', ttlSeconds: 60 })
      const messageId = (res.body as { messageId: string }).messageId
      // The API never takes a TTL under 60 s (as IoT Hub); move the stored expiry into the past instead.
      const [queued] = await gw.gateway.commandStore.list('sdk-e2e')
      gw.gateway.commandStore.setExpiry(queued!.seq, Date.now() - 1)
      const fb = await waitFor(async () => (await feedbackRecords(gw.gateway)).find((f) => f.messageId === messageId), 10_000, 'expired feedback')
      expect(fb.status).toBe('expired')
      await client.open()
      expect((await api(gw.httpUrl, 'POST', '/api/devices/sdk-e2e/messages', { payload: 'c2d-fresh' })).status).toBe(202)
      await waitFor(() => c2d.some((m) => m.getData().toString() === 'c2d-fresh'), 15_000, 'fresh C2D')
      expect(c2d.some((m) => m.getData().toString() === 'c2d-late')).toBe(false)
    }, 60_000)
  })
}
