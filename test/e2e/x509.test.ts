import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client, Message } from 'azure-iot-device'
import { Mqtt } from 'azure-iot-device-mqtt'
import { devCertPaths, initDevCerts, issueDeviceCert, selfSignedDeviceCert } from '../../src/app/dev-certs.js'
import { thumbprint } from '../../src/auth/x509.js'
import { addTrustedCa, removeTrustedCa } from '../../src/auth/ca-store.js'
import { connackCode, readAll, startTestGateway, waitFor, metricSamples, type TestGateway } from '../helpers/gateway.js'
import { api } from '../helpers/commands.js'
import { datedDeviceCert } from '../helpers/dated-certs.js'

/**
 * X.509 device authentication over mutual TLS with the unmodified Azure SDK (connection string
 * `x509=true`, certificate and key through setOptions): a self-signed certificate registered by
 * thumbprint, and a certificate issued by a CA registered with `ca add` (CN = device id).
 * In X.509 mode the SDK ignores GatewayHostName (device_client.js builds the X509
 * AuthenticationProvider from HostName and DeviceId only), so HostName must name the gateway
 * itself; the TLS port is a free one, named in HostName (the SAS suites hold 8883).
 */
const HUB = 'localhost'

describe('Azure IoT device SDK with X.509 certificates (Mqtt over TLS)', () => {
  let dataDir: string
  let gw: TestGateway
  let ca: string
  let port: number
  const clients: Client[] = []

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'streamgate-e2e-x509-'))
    const certs = await initDevCerts(dataDir, ['localhost', '127.0.0.1'])
    ca = readFileSync(certs.caCert, 'utf8')
    gw = await startTestGateway({ hostname: HUB, 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0' }, dataDir)
    port = gw.gateway.addresses.mqtts!.port
  })
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined)
    await gw?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  async function openSdk(deviceId: string, cert: { cert: string; key: string }): Promise<Client> {
    const client = Client.fromConnectionString(`HostName=localhost:${port};DeviceId=${deviceId};x509=true`, Mqtt)
    await client.setOptions({ ca, cert: readFileSync(cert.cert, 'utf8'), key: readFileSync(cert.key, 'utf8') })
    clients.push(client)
    await client.open()
    return client
  }

  async function sendAndFind(client: Client, deviceId: string, messageId: string): Promise<void> {
    const msg = new Message('x509 hello')
    msg.messageId = messageId
    await client.sendEvent(msg)
    const found = await waitFor(async () => (await readAll(gw.gateway, 'telemetry')).find((r) => r.headers['message-id'] === messageId), 10_000, 'record')
    expect(found.key).toBe(deviceId)
  }

  it('x509-thumbprint: a self-signed certificate registered by its SHA-256 thumbprint', async () => {
    const cert = await selfSignedDeviceCert('thumb-dev', join(dataDir, 'dev-certs'))
    const created = await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'thumb-dev', authMethod: 'x509-thumbprint', thumbprint: cert.thumbprint })
    expect(created.status).toBe(201)
    expect((created.body as { connectionString: string }).connectionString).toBe(`HostName=${HUB};DeviceId=thumb-dev;x509=true`)
    const client = await openSdk('thumb-dev', cert)
    expect(gw.gateway.broker.connectionOf('thumb-dev')?.transport).toBe('tls')
    await sendAndFind(client, 'thumb-dev', 'x509-thumb-1')
    client.onDeviceMethod('ping', (_req, res) => res.send(200, 'pong', () => undefined))
    await waitFor(() => gw.gateway.broker.isSubscribed('thumb-dev', '$iothub/methods/POST/ping/?$rid=1'), 10_000, 'methods subscription')
    const r = await api(gw.httpUrl, 'POST', '/api/devices/thumb-dev/methods/ping', { payload: null, responseTimeoutSeconds: 10 })
    expect(r.body).toEqual({ status: 200, payload: 'pong' })
  })

  it('x509-ca: a certificate from `certs device` once the CA is registered with `ca add`', async () => {
    const cert = await issueDeviceCert(dataDir, 'ca-dev', join(dataDir, 'dev-certs'))
    expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'ca-dev', authMethod: 'x509-ca' })).status).toBe(201)
    const tls = { ca, cert: readFileSync(cert.cert), key: readFileSync(cert.key), username: `${HUB}/ca-dev/?api-version=2021-04-12`, clientId: 'ca-dev' }
    // Not trusted yet: CONNACK 5 (not authorized), as IoT Hub answers an unknown CA.
    expect(await connackCode(`mqtts://localhost:${port}`, tls)).toBe(5)
    const trusted = addTrustedCa(dataDir, ca)
    const client = await openSdk('ca-dev', cert)
    await sendAndFind(client, 'ca-dev', 'x509-ca-1')
    // `ca remove`: the next CONNECT with a certificate from that CA is refused again.
    removeTrustedCa(dataDir, trusted.thumbprint)
    expect(await connackCode(`mqtts://localhost:${port}`, tls)).toBe(5)
    addTrustedCa(dataDir, ca)
    expect(await connackCode(`mqtts://localhost:${port}`, tls)).toBe(0)
  })

  it('refuses with CONNACK 5: an unknown certificate, a CN that is not the device id, and no certificate', async () => {
    const stranger = await selfSignedDeviceCert('thumb-dev', join(dataDir, 'stranger'))
    const other = await issueDeviceCert(dataDir, 'someone-else', join(dataDir, 'dev-certs'))
    const opts = (deviceId: string, c?: { cert: string; key: string }) => ({
      ca,
      clientId: deviceId,
      username: `${HUB}/${deviceId}/?api-version=2021-04-12`,
      ...(c ? { cert: readFileSync(c.cert), key: readFileSync(c.key) } : {}),
    })
    expect(await connackCode(`mqtts://localhost:${port}`, opts('thumb-dev', stranger))).toBe(5)
    expect(await connackCode(`mqtts://localhost:${port}`, opts('ca-dev', other))).toBe(5)
    expect(await connackCode(`mqtts://localhost:${port}`, { ...opts('ca-dev'), password: 'x' })).toBe(5)
    expect(await connackCode(`mqtts://localhost:${port}`, opts('ca-dev'))).toBe(4)
  })

  it('refuses an expired and a not-yet-valid certificate with CONNACK 5, counted by reason in /metrics', async () => {
    const { caCert, caKey } = devCertPaths(dataDir)
    addTrustedCa(dataDir, ca)
    const out = join(dataDir, 'dated')
    const day = 86_400_000
    const now = Date.now()
    const expiredCa = datedDeviceCert({ deviceId: 'old-dev', outDir: out, ca: { cert: caCert, key: caKey }, notBefore: new Date(now - 60 * day), notAfter: new Date(now - day) })
    const futureCa = datedDeviceCert({ deviceId: 'old-dev', outDir: out, ca: { cert: caCert, key: caKey }, notBefore: new Date(now + day), notAfter: new Date(now + 60 * day) })
    const validCa = await issueDeviceCert(dataDir, 'old-dev', join(dataDir, 'dev-certs'))
    const expiredSelf = datedDeviceCert({ deviceId: 'old-thumb', outDir: out, notBefore: new Date(now - 60 * day), notAfter: new Date(now - day) })
    const selfThumbprint = thumbprint(new X509Certificate(readFileSync(expiredSelf.cert)))
    expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'old-dev', authMethod: 'x509-ca' })).status).toBe(201)
    expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'old-thumb', authMethod: 'x509-thumbprint', thumbprint: selfThumbprint })).status).toBe(201)

    const failures = async (): Promise<Record<string, number>> => {
      const samples = [...(await metricSamples(gw))].map(([key, value]) => [/^streamgate_auth_failures_total\{code="(\w+)"\}$/.exec(key)?.[1], value] as const)
      return Object.fromEntries(samples.filter(([code]) => code !== undefined))
    }
    const before = await failures()
    const tls = (deviceId: string, c: { cert: string; key: string }) => ({
      ca, clientId: deviceId, username: `${HUB}/${deviceId}/?api-version=2021-04-12`, cert: readFileSync(c.cert), key: readFileSync(c.key),
    })
    const url = `mqtts://localhost:${port}`
    expect(await connackCode(url, tls('old-dev', expiredCa))).toBe(5)
    expect(await connackCode(url, tls('old-dev', futureCa))).toBe(5)
    expect(await connackCode(url, tls('old-thumb', expiredSelf))).toBe(5)
    const after = await failures()
    expect((after.E_AUTH_CERT_EXPIRED ?? 0) - (before.E_AUTH_CERT_EXPIRED ?? 0)).toBe(2)
    expect((after.E_AUTH_CERT_NOT_YET_VALID ?? 0) - (before.E_AUTH_CERT_NOT_YET_VALID ?? 0)).toBe(1)
    // The same device with a certificate inside its validity period gets in: the dates were the reason.
    expect(await connackCode(url, tls('old-dev', validCa))).toBe(0)
  })

  it('x509-ca through an intermediate CA: the SDK sends its certificate and the intermediate', async () => {
    const { caCert, caKey } = devCertPaths(dataDir)
    addTrustedCa(dataDir, ca)
    const out = join(dataDir, 'chain')
    const day = 86_400_000
    const dates = { notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + 30 * day) }
    const intermediate = datedDeviceCert({ deviceId: 'plant-7-issuing-ca', outDir: out, ca: { cert: caCert, key: caKey }, isCa: true, ...dates })
    const leaf = datedDeviceCert({ deviceId: 'line-dev', outDir: out, ca: intermediate, ...dates })
    expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'line-dev', authMethod: 'x509-ca' })).status).toBe(201)
    const chainPem = readFileSync(leaf.cert, 'utf8') + readFileSync(intermediate.cert, 'utf8')
    const opts = (cert: string) => ({ ca, clientId: 'line-dev', username: `${HUB}/line-dev/?api-version=2021-04-12`, cert, key: readFileSync(leaf.key) })
    // The device certificate alone does not reach the registered CA: refused.
    expect(await connackCode(`mqtts://localhost:${port}`, opts(readFileSync(leaf.cert, 'utf8')))).toBe(5)
    const client = Client.fromConnectionString(`HostName=localhost:${port};DeviceId=line-dev;x509=true`, Mqtt)
    clients.push(client)
    await client.setOptions({ ca, cert: chainPem, key: readFileSync(leaf.key, 'utf8') })
    await client.open()
    await sendAndFind(client, 'line-dev', 'x509-chain-1')
  })
})
