import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client, Message } from 'azure-iot-device'
import type { Mqtt, MqttWs } from 'azure-iot-device-mqtt'
import { initDevCerts, issueDeviceCert, selfSignedDeviceCert } from '../../src/app/dev-certs.js'
import { addTrustedCa } from '../../src/auth/ca-store.js'
import { readAll, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { api } from '../helpers/commands.js'

/**
 * X.509 devices with the unmodified SDK, given a transport. In X.509 mode the SDK ignores
 * GatewayHostName (device_client.js builds the X509 provider from HostName and DeviceId only), so
 * HostName names the gateway: `localhost:<port>` for Mqtt, `localhost` (443) for MqttWs.
 */
export function x509Suite(name: string, transport: typeof Mqtt | typeof MqttWs, expected: 'tls' | 'wss'): void {
  describe(`Azure IoT device SDK over ${name} with X.509 certificates`, () => {
    let dataDir: string
    let gw: TestGateway
    let ca: string
    let host: string
    const clients: Client[] = []

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'streamgate-e2e-x509-'))
      ca = readFileSync((await initDevCerts(dataDir, ['localhost'])).caCert, 'utf8')
      gw = await startTestGateway({ hostname: 'localhost', ...(expected === 'tls' ? { 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0' } : { 'http.wss.enabled': 'true', 'http.wss.port': '443' }) }, dataDir)
      host = expected === 'tls' ? `localhost:${gw.gateway.addresses.mqtts!.port}` : 'localhost'
    })
    afterAll(async () => {
      for (const c of clients) await c.close().catch(() => undefined)
      await gw?.stop()
      rmSync(dataDir, { recursive: true, force: true })
    })

    const openAndSend = async (deviceId: string, cert: { cert: string; key: string }): Promise<void> => {
      const client = Client.fromConnectionString(`HostName=${host};DeviceId=${deviceId};x509=true`, transport)
      clients.push(client)
      await client.setOptions({ ca, cert: readFileSync(cert.cert, 'utf8'), key: readFileSync(cert.key, 'utf8') })
      await client.open()
      expect(gw.gateway.broker.connectionOf(deviceId)?.transport).toBe(expected)
      const msg = new Message('x509 hello')
      msg.messageId = `x509-${deviceId}`
      await client.sendEvent(msg)
      const found = await waitFor(async () => (await readAll(gw.gateway, 'telemetry')).find((r) => r.headers['message-id'] === msg.messageId), 10_000, 'record')
      expect(found.key).toBe(deviceId)
    }

    it('x509-thumbprint: a self-signed certificate registered by its SHA-256 thumbprint', async () => {
      const cert = await selfSignedDeviceCert('thumb-dev', join(dataDir, 'dev-certs'))
      expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'thumb-dev', authMethod: 'x509-thumbprint', thumbprint: cert.thumbprint })).status).toBe(201)
      await openAndSend('thumb-dev', cert)
    })

    it('x509-ca: a `certs device` certificate once the CA is registered; refused before', async () => {
      const cert = await issueDeviceCert(dataDir, 'ca-dev', join(dataDir, 'dev-certs'))
      expect((await api(gw.httpUrl, 'POST', '/api/devices', { deviceId: 'ca-dev', authMethod: 'x509-ca' })).status).toBe(201)
      await expect(openAndSend('ca-dev', cert)).rejects.toThrow(/Not authorized|not authorized/i)
      addTrustedCa(dataDir, ca)
      await openAndSend('ca-dev', cert)
    })
  })
}
