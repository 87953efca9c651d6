import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client, Message, type Twin } from 'azure-iot-device'
import type { Mqtt, MqttWs } from 'azure-iot-device-mqtt'
import { initDevCerts, issueDeviceCert } from '../../src/app/dev-certs.js'
import { addTrustedCa } from '../../src/auth/ca-store.js'
import { readAll, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, feedbackRecords } from '../helpers/commands.js'

/**
 * The unmodified Azure IoT device SDK against the gateway's own TLS listeners: `Mqtt` (mqtts on
 * 8883) and `MqttWs` (wss on 443, the port the SDK hard-codes), trusting the
 * `certs init` development CA. One run per transport and per authentication:
 * - `sas`: the device keeps a real-looking hub name in HostName and reaches the gateway through
 *   GatewayHostName; the SDK renews its token (valid 8 s) every 4 s throughout, and the gateway,
 *   with 2 s of clock skew allowed, closes a connection whose token expired: the SDK must renew
 *   in time, as it must with IoT Hub.
 * - `x509`: a certificate issued by the dev CA (registered with `ca add`), CN = device id. In
 *   X.509 mode the SDK ignores GatewayHostName (device_client.js builds the X509 provider from
 *   HostName and DeviceId only), so HostName names the gateway, `localhost`, on the default port.
 * Both runs restart the gateway near the end. The fixed ports (8883 and 443) mean one test file per
 * transport, each enabling only its own listener, with its suites run one after the other.
 */
export const HUB = 'contoso-prod.azure-devices.net'

export type SdkAuth = 'sas' | 'x509'

export function sdkSuite(name: string, transport: typeof Mqtt | typeof MqttWs, expected: 'tls' | 'wss', auth: SdkAuth): void {
  describe(`Azure IoT device SDK over ${name} with ${auth === 'sas' ? 'SAS' : 'an X.509 CA certificate'}`, () => {
    const deviceId = `sdk-${auth}`
    let dataDir: string
    let gw: TestGateway
    let client: Client
    let ca: string
    const c2d: Message[] = []
    const desired: Array<Record<string, unknown>> = []
    const listener: Record<string, string> = expected === 'tls' ? { 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '8883' } : { 'http.wss.enabled': 'true', 'http.wss.port': '443' }
    const overrides: Record<string, string> = { hostname: auth === 'sas' ? HUB : 'localhost', 'auth.clockSkewSeconds': '2', ...listener }

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'streamgate-e2e-'))
      // `certs init` into the data dir; with certFile/keyFile unset the gateway uses these files.
      const certs = await initDevCerts(dataDir, ['localhost', '127.0.0.1'])
      ca = readFileSync(certs.caCert, 'utf8')
      gw = await startTestGateway(overrides, dataDir)
      if (auth === 'sas') {
        const d = await gw.gateway.registry.create({ deviceId })
        client = Client.fromConnectionString(`HostName=${HUB};DeviceId=${deviceId};SharedAccessKey=${d.primaryKey};GatewayHostName=localhost`, transport)
        // A new token (a DISCONNECT and a new CONNECT that subscribes to nothing) every 4 s, all along.
        client.setOptions({ ca, tokenRenewal: { tokenValidTimeInSeconds: 8, tokenRenewalMarginInSeconds: 4 } })
      } else {
        addTrustedCa(dataDir, ca)
        expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId, authMethod: 'x509-ca' })).status).toBe(201)
        const cert = await issueDeviceCert(dataDir, deviceId, join(dataDir, 'device-certs'))
        client = Client.fromConnectionString(`HostName=localhost;DeviceId=${deviceId};x509=true`, transport)
        await client.setOptions({ ca, cert: readFileSync(cert.cert, 'utf8'), key: readFileSync(cert.key, 'utf8') })
      }
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
      expect(gw.gateway.broker.connectionOf(deviceId)?.transport).toBe(expected)
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
      expect(r.key).toBe(deviceId)
      expect(r.value.toString()).toBe('{"t":21.5}')
      expect(r.headers).toMatchObject({ 'correlation-id': 'corr-1', 'content-type': 'application/json', 'content-encoding': 'utf-8', alert: 'high', site: 'plant 1/line#2', 'device-id': deviceId })
    })

    it('C2D arrives with its properties and is completed', async () => {
      const sent = await api(gw.httpUrl, 'POST', `/api/devices/${deviceId}/messages`, { payload: 'hello', messageId: 'c2d-1', properties: { colour: 'blue' }, contentType: 'text/plain' })
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
      const shown = await api(gw.httpUrl, 'GET', `/api/devices/${deviceId}/twin`)
      expect(JSON.stringify(shown.body)).toContain('1.2.3')
      await waitFor(() => gw.gateway.broker.isSubscribed(deviceId, '$iothub/twin/PATCH/properties/desired/?$version=1'), 10_000, 'desired subscription')
      const patch = await api(gw.httpUrl, 'PATCH', `/api/devices/${deviceId}/twin`, { desired: { interval: 30 } })
      expect(patch.status).toBe(200)
      await waitFor(() => desired.some((p) => p.interval === 30), 10_000, 'desired notification')
    })

    it('direct method round trip', async () => {
      await waitFor(() => gw.gateway.broker.isSubscribed(deviceId, '$iothub/methods/POST/echo/?$rid=1'), 10_000, 'methods subscription')
      const res = await api(gw.httpUrl, 'POST', `/api/devices/${deviceId}/methods/echo`, { payload: { n: 1 }, responseTimeoutSeconds: 10, connectTimeoutSeconds: 10 })
      expect(res.body).toEqual({ status: 200, payload: { echoed: { n: 1 } } })
    })

    const roundTrip = async (tag: string): Promise<void> => {
      expect((await api(gw.httpUrl, 'POST', `/api/devices/${deviceId}/messages`, { payload: `c2d-${tag}` })).status).toBe(202)
      await waitFor(() => c2d.some((m) => m.getData().toString() === `c2d-${tag}`), 15_000, `C2D ${tag}`)
      const method = await api(gw.httpUrl, 'POST', `/api/devices/${deviceId}/methods/echo`, { payload: { tag }, responseTimeoutSeconds: 10, connectTimeoutSeconds: 10 })
      expect(method.body).toEqual({ status: 200, payload: { echoed: { tag } } })
      expect((await api(gw.httpUrl, 'PATCH', `/api/devices/${deviceId}/twin`, { desired: { tag } })).status).toBe(200)
      await waitFor(() => desired.some((p) => p.tag === tag), 15_000, `desired ${tag}`)
    }
    const connectionSeq = async (): Promise<number> => (await gw.gateway.registry.get(deviceId))?.connectionSeq ?? 0

    // Token renewal is a SAS matter: an X.509 device keeps its TLS session and never renews.
    if (auth === 'sas') {
      it('C2D, methods and desired notifications keep working across forced token renewals', async () => {
        const before = await connectionSeq()
        // Two renewals (each a disconnected and a connected event): about 8 s at one per 4 s, more
        // when the machine is loaded, since the SDK's next timer starts after its reconnect.
        await waitFor(async () => (await connectionSeq()) >= before + 4, 30_000, 'two token renewals')
        await roundTrip('after-renewal')
        // Each renewal was the SDK's own reconnect before its token expired, never a close for expiry.
        const reasons = (await readAll(gw.gateway, 'device-events'))
          .map((r) => JSON.parse(r.value.toString()) as { type: string; deviceId: string; reason?: string })
          .filter((e) => e.deviceId === deviceId && e.type === 'disconnected')
          .map((e) => e.reason)
        expect(reasons.length).toBeGreaterThanOrEqual(2)
        expect(reasons.filter((r) => r !== 'client-disconnect')).toEqual([])
      }, 60_000)
    }

    it('the SDK reconnects on its own after a gateway restart, and everything still works', async () => {
      await gw.stop()
      gw = await startTestGateway(overrides, dataDir)
      await waitFor(() => gw.gateway.broker.connectionOf(deviceId), 30_000, 'SDK reconnect')
      await roundTrip('after-restart')
      // Every message the device took was completed exactly once, none twice across the restart.
      const received = c2d.map((m) => m.messageId)
      expect(new Set(received).size).toBe(received.length)
      await waitFor(async () => (await feedbackRecords(gw.gateway)).filter((f) => f.status === 'completed').length === received.length || undefined, 10_000, 'completed feedback')
      const completed = (await feedbackRecords(gw.gateway)).filter((f) => f.status === 'completed').map((f) => f.messageId)
      expect(completed.sort()).toEqual([...received].sort())
      expect(received).toHaveLength(auth === 'sas' ? 3 : 2)
    }, 90_000)

    it('TTL expiry: a message that expires while the device is offline ends as expired and is never delivered', async () => {
      await client.close()
      await waitFor(async () => gw.gateway.broker.connectionOf(deviceId) === null, 10_000, 'device offline')
      const res = await api(gw.httpUrl, 'POST', `/api/devices/${deviceId}/messages`, { payload: 'c2d-late', ttlSeconds: 60 })
      const messageId = (res.body as { messageId: string }).messageId
      // The API never takes a TTL under 60 s (as IoT Hub); move the stored expiry into the past instead.
      const [queued] = await gw.gateway.commandQueue.list(deviceId)
      await gw.gateway.commandQueue.setExpiry(queued!.seq, Date.now() - 1)
      const fb = await waitFor(async () => (await feedbackRecords(gw.gateway)).find((f) => f.messageId === messageId), 10_000, 'expired feedback')
      expect(fb.status).toBe('expired')
      await client.open()
      expect((await api(gw.httpUrl, 'POST', `/api/devices/${deviceId}/messages`, { payload: 'c2d-fresh' })).status).toBe(202)
      await waitFor(() => c2d.some((m) => m.getData().toString() === 'c2d-fresh'), 15_000, 'fresh C2D')
      expect(c2d.some((m) => m.getData().toString() === 'c2d-late')).toBe(false)
    }, 60_000)
  })
}
