import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initDevCerts, selfSignedDeviceCert } from '../../src/app/dev-certs.js'
import { startHostileGateway, type HostileGateway } from '../helpers/hostile.js'
import { probeConnect, type ProbeOptions } from './connect-probe.js'

/**
 * The CONNACK must not tell which device ids are registered (IoT Hub answers an unknown device
 * like a bad credential). Over MQTT/TLS with a client certificate that belongs to no device, and
 * no password, a SAS device and a password device used to get CONNACK 4 where an unknown device
 * got 5. Password attempts must not tell either, by code or by time: every one costs one scrypt
 * check, real or dummy.
 */
const KINDS = ['unknown', 'sas', 'password', 'x509', 'disabled'] as const
type Kind = (typeof KINDS)[number]
const ID: Record<Kind, string> = { unknown: 'oracle-ghost', sas: 'oracle-sas', password: 'oracle-pwd', x509: 'oracle-cam', disabled: 'oracle-off' }

describe('hostile: no CONNACK or timing oracle for which devices exist', () => {
  let dir: string
  let gw: HostileGateway
  let tlsPort: number
  let tls: (cert?: { cert: string; key: string }) => NonNullable<ProbeOptions['tls']>
  let stranger: { cert: string; key: string }
  let camera: { cert: string; key: string }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-oracle-'))
    const certs = await initDevCerts(dir, ['localhost', '127.0.0.1'])
    const ca = readFileSync(certs.caCert, 'utf8')
    stranger = await selfSignedDeviceCert('stranger', join(dir, 'stranger'))
    const cam = await selfSignedDeviceCert(ID.x509, join(dir, 'camera'))
    camera = cam
    gw = await startHostileGateway({
      env: {
        STREAMGATE_MQTT__TLS__ENABLED: 'true',
        STREAMGATE_MQTT__TLS__PORT: '0',
        STREAMGATE_MQTT__TLS__CERT_FILE: certs.serverCert,
        STREAMGATE_MQTT__TLS__KEY_FILE: certs.serverKey,
      },
    })
    const port = /MQTT over TLS\s+mqtts:\/\/[^:\s]+:(\d+)/.exec(gw.output())
    if (!port) throw new Error(`no TLS listener in the banner:\n${gw.output()}`)
    tlsPort = Number(port[1])
    tls = (cert = stranger) => ({ ca, servername: 'localhost', cert: readFileSync(cert.cert), key: readFileSync(cert.key) })
    await gw.addSasDevice(ID.sas)
    await gw.addPasswordDevice(ID.password, 'oracle password 1234')
    await gw.addSasDevice(ID.disabled)
    const off = await gw.api('PATCH', `/api/devices/${ID.disabled}`, { status: 'disabled' })
    expect(off.status).toBe(200)
    const added = await gw.api('POST', '/api/devices', { deviceId: ID.x509, authMethod: 'x509-thumbprint', thumbprint: cam.thumbprint })
    expect(added.status).toBe(201)
  })
  afterAll(async () => {
    await gw?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('lets the X.509 device in with its own certificate (the client certificate reaches the gateway)', async () => {
    expect((await probeConnect({ port: tlsPort, clientId: ID.x509, tls: tls(camera) })).code).toBe(0)
  })

  it('answers every device presenting a foreign client certificate and no password like an unknown one', async () => {
    const codes: Record<string, unknown> = {}
    for (const kind of KINDS) codes[kind] = (await probeConnect({ port: tlsPort, clientId: ID[kind], tls: tls() })).code
    console.log(`[hostile] certificate, no password, over TLS: ${JSON.stringify(codes)}`)
    expect(codes).toEqual(Object.fromEntries(KINDS.map((k) => [k, 5])))
  })

  it('answers a wrong password for every kind of device, or none, with the same code after the same work', async () => {
    const ROUNDS = 7
    const times: Record<Kind, number[]> = { unknown: [], sas: [], password: [], x509: [], disabled: [] }
    const codes = new Set<unknown>()
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, kind] of KINDS.entries()) {
        // A source address per kind, so no per-pair budget (10) runs out in between.
        const o = await probeConnect({ port: gw.mqttPort, localAddress: `127.0.1.${i + 1}`, clientId: ID[kind], password: `wrong ${round}` })
        codes.add(o.code)
        times[kind].push(o.ms)
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const medians = Object.fromEntries(KINDS.map((k) => [k, Math.round(median(times[k]))])) as Record<Kind, number>
    console.log(`[hostile] wrong password over TCP, median ms by device kind: ${JSON.stringify(medians)}`)
    expect([...codes]).toEqual([5])
    // One scrypt check each (~50 ms or more); a kind answered without one would take a few ms.
    const slowest = Math.max(...Object.values(medians))
    for (const kind of KINDS) expect(medians[kind], `${kind}: median within half of the slowest kind`).toBeGreaterThan(slowest / 2)
  }, 60_000)
})
