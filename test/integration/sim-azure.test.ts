import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { parseScenario } from '../../device-sim/scenario.js'
import { runSimulation } from '../../device-sim/simulate.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * The azure driver runs the unmodified Azure IoT device SDK, whose MQTT transport always uses
 * TLS. The gateway has no TLS listener yet, so this test puts a TLS-terminating TCP proxy (a
 * throwaway self-signed certificate for `localhost`) in front of its plain MQTT port. What is
 * tested is the driver and the SDK against the gateway's MQTT surface; the gateway's own TLS is
 * not (there is none).
 */

let gw: TestGateway | null = null
let proxy: Server | null = null
let dir = ''
afterEach(async () => {
  await new Promise((r) => (proxy ? proxy.close(r) : r(null)))
  proxy = null
  await gw?.stop()
  gw = null
  if (dir) rmSync(dir, { recursive: true, force: true })
})

function selfSignedLocalhost(into: string): { key: string; cert: string; certFile: string } {
  const keyFile = join(into, 'key.pem')
  const certFile = join(into, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' })
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), certFile }
}

async function tlsProxy(key: string, cert: string, targetPort: number): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createTlsServer({ key, cert }, (tls) => {
    const plain = connect({ host: '127.0.0.1', port: targetPort })
    sockets.add(plain)
    tls.pipe(plain).pipe(tls)
    const end = (): void => {
      tls.destroy()
      plain.destroy()
      sockets.delete(plain)
    }
    tls.on('error', end).on('close', end)
    plain.on('error', end).on('close', end)
  })
  proxy = server
  server.on('close', () => sockets.forEach((s) => s.destroy()))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const address = server.address()
  return typeof address === 'object' && address ? address.port : 0
}

describe('device-sim azure driver (Azure IoT device SDK, Mqtt transport, through a TLS proxy)', () => {
  it('telemetry, C2D, methods and twins: sent = acked = stored, nothing lost', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-azure-'))
    const { key, cert, certFile } = selfSignedLocalhost(dir)
    gw = await startTestGateway()
    const port = await tlsProxy(key, cert, Number(new URL(gw.mqttUrl).port))
    const scenario = parseScenario(
      {
        gateway: `mqtts://localhost:${port}`,
        api: gw.httpUrl,
        token: gw.config.adminToken,
        dataDir: gw.dataDir,
        ca: certFile,
        duration: 4,
        drainS: 3,
        prefix: 'simaz-',
        groups: [{ count: 5, driver: 'azure', rate: 5, qos: 1, behaviour: { c2d: true, methods: { delayMs: 1, status: 200 }, twinReportIntervalS: 1 } }],
        commands: { c2dPerSecond: 4, methodsPerSecond: 2, methodName: 'ping' },
      },
      'test',
    )
    const report = await runSimulation(scenario)
    const c = report.counts
    expect(report.errors).toEqual({})
    expect(c.connects).toBe(5)
    expect(c.sent).toBeGreaterThan(40)
    expect(c.acked).toBe(c.sent)
    expect(c.stored).toBe(c.sent)
    expect(c.lost).toBe(0)
    expect(c.c2dSent).toBeGreaterThan(0)
    expect(c.c2dReceived).toBe(c.c2dSent)
    expect(c.methodsInvoked).toBeGreaterThan(0)
    expect(c.methodsReturned).toBe(c.methodsInvoked)
    expect(c.twinReported).toBeGreaterThan(0)
    expect(report.latencyMs.e2e.p50).toBeLessThanOrEqual(report.latencyMs.e2e.p99)
  })
})
