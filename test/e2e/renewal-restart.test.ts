import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client, Message, type Twin } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api, feedbackRecords, sleep } from '../helpers/commands.js'

/**
 * The unmodified SDK over the gateway's TLS listener through a forced token renewal every 4 s
 * (a DISCONNECT and a new CONNECT that subscribes to nothing, protocol note §1) and a gateway
 * restart on the same port and data dir: the SDK reconnects on its own (it retries once it has
 * been connected) and C2D, methods and desired notifications keep working on the persisted
 * subscriptions.
 */
const HUB = 'northwind-hub.azure-devices.net'

describe('Azure IoT device SDK: token renewal and a gateway restart (Mqtt over TLS)', () => {
  let dataDir: string
  let gw: TestGateway
  let client: Client
  let tlsPort: number
  const received: string[] = []
  const desired: Array<Record<string, unknown>> = []
  const overrides = (port: number): Record<string, string> => ({ hostname: HUB, 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': String(port) })

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'streamgate-e2e-restart-'))
    const certs = await initDevCerts(dataDir, ['localhost'])
    gw = await startTestGateway(overrides(0), dataDir)
    tlsPort = gw.gateway.addresses.mqtts!.port
    const d = await gw.gateway.registry.create({ deviceId: 'renew-dev' })
    client = Client.fromConnectionString(`HostName=${HUB};DeviceId=${d.deviceId};SharedAccessKey=${d.primaryKey};GatewayHostName=localhost:${tlsPort}`, Mqtt)
    client.setOptions({ ca: readFileSync(certs.caCert, 'utf8'), tokenRenewal: { tokenValidTimeInSeconds: 8, tokenRenewalMarginInSeconds: 4 } })
    client.on('message', (msg: Message) => {
      received.push(msg.getData().toString())
      client.complete(msg, () => undefined)
    })
    client.onDeviceMethod('echo', (request, response) => response.send(200, { echoed: request.payload as unknown }, () => undefined))
    await client.open()
    const twin: Twin = await client.getTwin()
    twin.on('properties.desired', (patch: Record<string, unknown>) => desired.push(patch))
    const probes = ['$iothub/methods/POST/x/?$rid=1', 'devices/renew-dev/messages/devicebound/x', '$iothub/twin/PATCH/properties/desired/?$version=1']
    await waitFor(() => probes.every((topic) => gw.gateway.broker.isSubscribed('renew-dev', topic)), 10_000, 'SDK subscriptions')
  })
  afterAll(async () => {
    await client?.close().catch(() => undefined)
    await gw?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  const roundTrip = async (tag: string): Promise<void> => {
    expect((await api(gw.httpUrl, 'POST', '/api/devices/renew-dev/messages', { payload: `c2d-${tag}` })).status).toBe(202)
    await waitFor(() => received.includes(`c2d-${tag}`), 15_000, `C2D ${tag}`)
    const method = await api(gw.httpUrl, 'POST', '/api/devices/renew-dev/methods/echo', { payload: { tag }, responseTimeoutSeconds: 10, connectTimeoutSeconds: 10 })
    expect(method.body).toEqual({ status: 200, payload: { echoed: { tag } } })
    expect((await api(gw.httpUrl, 'PATCH', '/api/devices/renew-dev/twin', { desired: { tag } })).status).toBe(200)
    await waitFor(() => desired.some((p) => p.tag === tag), 15_000, `desired ${tag}`)
  }
  const connectionSeq = async (): Promise<number> => (await gw.gateway.registry.get('renew-dev'))?.connectionSeq ?? 0

  it('works before and after forced token renewals', async () => {
    await roundTrip('before')
    const before = await connectionSeq()
    await sleep(9000)
    // At least two renewals: each is a disconnected and a connected event.
    expect(await connectionSeq()).toBeGreaterThanOrEqual(before + 4)
    await roundTrip('after-renewal')
  }, 60_000)

  it('works after a gateway restart: the SDK reconnects on its own', async () => {
    await gw.stop()
    gw = await startTestGateway(overrides(tlsPort), dataDir)
    await waitFor(() => gw.gateway.broker.connectionOf('renew-dev'), 30_000, 'SDK reconnect')
    await roundTrip('after-restart')
    const statuses = (await feedbackRecords(gw.gateway)).map((f) => f.status)
    expect(statuses.filter((s) => s === 'completed')).toHaveLength(3)
  }, 90_000)
})
