import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { connackCode, sasFor, startTestGateway, type TestGateway } from '../helpers/gateway.js'

/** The MQTT/TLS and secure WebSocket listeners: TLS floor, paths, SAS devices without a certificate. */
describe('TLS listeners (mqtt.tls, http.wss)', () => {
  let dir: string
  let gw: TestGateway
  let ca: string
  let tlsPort: number
  let wssPort: number

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-tls-'))
    ca = readFileSync((await initDevCerts(dir, ['localhost', '127.0.0.1'])).caCert, 'utf8')
    gw = await startTestGateway({ 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0', 'http.wss.enabled': 'true', 'http.wss.port': '0' }, dir)
    tlsPort = gw.gateway.addresses.mqtts!.port
    wssPort = gw.gateway.addresses.wss!.port
  })
  afterAll(async () => {
    await gw?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('refuses TLS 1.1 and accepts TLS 1.2', async () => {
    const handshake = (maxVersion: 'TLSv1.1' | 'TLSv1.2'): Promise<string> =>
      new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: tlsPort, ca, servername: 'localhost', minVersion: 'TLSv1', maxVersion }, () => {
          resolve(socket.getProtocol() ?? 'none')
          socket.destroy()
        })
        socket.on('error', () => resolve('refused'))
      })
    expect(await handshake('TLSv1.1')).toBe('refused')
    expect(await handshake('TLSv1.2')).toBe('TLSv1.2')
  })

  it('lets a SAS device without a client certificate connect over mqtts and wss (/mqtt and /$iothub/websocket)', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'sas-tls' })
    const opts = { clientId: d.deviceId, username: `localhost/${d.deviceId}/?api-version=2021-04-12`, password: sasFor(d), ca }
    expect(await connackCode(`mqtts://localhost:${tlsPort}`, opts)).toBe(0)
    expect(await connackCode(`wss://localhost:${wssPort}/mqtt`, opts)).toBe(0)
    expect(await connackCode(`wss://localhost:${wssPort}/$iothub/websocket`, opts)).toBe(0)
    expect(await connackCode(`mqtts://localhost:${tlsPort}`, { ...opts, password: 'SharedAccessSignature sr=x&sig=y&se=1' })).toBe(5)
  })

  it('answers a plain HTTPS request on the wss port with 404', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port: wssPort, path: '/api/devices', ca, servername: 'localhost' }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
        .on('error', reject)
        .end()
    })
    expect(status).toBe(404)
  })

  it('fails the start-up with E_CONFIG_INVALID when TLS is enabled and the certificate is missing', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'streamgate-tls-none-'))
    try {
      await expect(startTestGateway({ 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0' }, empty)).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' })
    } finally {
      rmSync(empty, { recursive: true, force: true })
    }
  })
})
