import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { devCertPaths, initDevCerts } from '../../src/app/dev-certs.js'
import { GatewayError } from '../../src/errors/catalogue.js'
import { connackCode, connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'

/** The fingerprint of the certificate a TLS listener presents to a new handshake. */
function presented(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? ''
      socket.destroy()
      resolve(fp)
    })
    socket.once('error', reject)
  })
}
const fingerprintOf = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256

describe('TLS certificate reload without a restart', () => {
  let dir: string
  let gw: TestGateway
  let port: number
  let early: MqttClient | null = null
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-tls-reload-'))
    await initDevCerts(dir, ['localhost', '127.0.0.1'])
    gw = await startTestGateway({ 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0' }, dir)
    port = gw.gateway.addresses.mqtts!.port
  })
  afterAll(async () => {
    await early?.endAsync(true)
    await gw?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('new handshakes get the renewed certificate; open connections stay; devices trusting the new CA connect', async () => {
    const paths = devCertPaths(dir)
    const firstCa = readFileSync(paths.caCert, 'utf8')
    expect(await presented(port)).toBe(fingerprintOf(paths.serverCert))
    const d = await gw.gateway.registry.create({ deviceId: 'tls-dev' })
    const device = (ca: string) => ({ ca, servername: 'localhost', clientId: d.deviceId, username: `localhost/${d.deviceId}/?api-version=2021-04-12`, password: sasFor(d), clean: false })
    early = await connectDevice(`mqtts://127.0.0.1:${port}`, 'tls-dev', sasFor(d), { ca: firstCa, servername: 'localhost' })

    // A new CA and server certificate on disk: nothing changes until the reload.
    await initDevCerts(dir, ['localhost', '127.0.0.1'], { force: true })
    const secondCa = readFileSync(paths.caCert, 'utf8')
    expect(secondCa).not.toBe(firstCa)
    const before = await presented(port)
    expect(before).not.toBe(fingerprintOf(paths.serverCert))

    const result = await gw.gateway.reloadTls()
    expect(result).toMatchObject({ subject: 'CN=localhost', listeners: 1 })
    expect(await presented(port)).toBe(fingerprintOf(paths.serverCert))
    // The connection made before the reload keeps working.
    expect(early.connected).toBe(true)
    await early.publishAsync('devices/tls-dev/messages/events/', 'still here', { qos: 1 })
    // New connections: the new CA verifies the gateway, the old one no longer does.
    await early.endAsync()
    early = null
    expect(await connackCode(`mqtts://127.0.0.1:${port}`, device(secondCa))).toBe(0)
    await expect(connackCode(`mqtts://127.0.0.1:${port}`, device(firstCa))).rejects.toThrow(/self-signed certificate in certificate chain/)
  })

  it('a certificate file that cannot be used is refused with E_CONFIG_INVALID and the old one stays', async () => {
    const paths = devCertPaths(dir)
    const serving = await presented(port)
    const good = readFileSync(paths.serverCert)
    writeFileSync(paths.serverCert, 'not a certificate\n')
    try {
      const err = await gw.gateway.reloadTls().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(GatewayError)
      expect((err as GatewayError).code).toBe('E_CONFIG_INVALID')
      expect(await presented(port)).toBe(serving)
    } finally {
      writeFileSync(paths.serverCert, good)
    }
  })
})

describe('streamgate start: SIGHUP reloads the TLS files', () => {
  let dir: string
  let gw: ChildGateway | null = null
  beforeAll(() => ensureBuilt())
  afterAll(async () => {
    await gw?.kill()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('serves the renewed certificate after SIGHUP, survives a broken file and keeps running', async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-sighup-'))
    await initDevCerts(dir, ['localhost'])
    gw = await startChildGateway(dir, { STREAMGATE_MQTT__TLS__ENABLED: 'true', STREAMGATE_MQTT__TLS__PORT: '0' })
    const port = Number(/MQTT over TLS\s+mqtts:\/\/[^:]+:(\d+)/.exec(gw.output())?.[1])
    expect(port).toBeGreaterThan(0)
    const paths = devCertPaths(dir)
    await initDevCerts(dir, ['localhost'], { force: true })
    gw.child.kill('SIGHUP')
    await waitFor(async () => (await presented(port)) === fingerprintOf(paths.serverCert), 10_000, 'the renewed certificate')

    writeFileSync(paths.serverKey, 'not a key\n')
    gw.child.kill('SIGHUP')
    await waitFor(() => gw!.output().includes('TLS reload failed'), 10_000, 'the reload failure in the log')
    expect(gw.output()).toContain('E_CONFIG_INVALID')
    expect(gw.child.exitCode).toBeNull()
    expect(await presented(port)).toBe(fingerprintOf(paths.serverCert))
  })
})
