import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'vitest'
import { parseScenario } from '../../device-sim/scenario.js'
import { runSimulation } from '../../device-sim/simulate.js'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { expectCleanCommandRun } from '../helpers/sim.js'

/**
 * The azure driver runs the unmodified Azure IoT device SDK, whose MQTT transport always uses
 * TLS: here against the gateway's own MQTT/TLS listener (mqtt.tls, a free port) with the
 * `certs init` development CA as the trusted root.
 */

let gw: TestGateway | null = null
let dir = ''
afterEach(async () => {
  await gw?.stop()
  gw = null
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('device-sim azure driver (Azure IoT device SDK, Mqtt transport over the TLS listener)', () => {
  it('telemetry, C2D, methods and twins: sent = acked = stored, nothing lost', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-azure-'))
    const certs = await initDevCerts(dir, ['localhost'])
    gw = await startTestGateway({ 'mqtt.tls.enabled': 'true', 'mqtt.tls.port': '0' }, dir)
    const port = gw.gateway.addresses.mqtts!.port
    const scenario = parseScenario(
      {
        gateway: `mqtts://localhost:${port}`,
        api: gw.httpUrl,
        token: gw.config.adminToken,
        dataDir: gw.dataDir,
        ca: certs.caCert,
        // The run's clock includes the SDK's TLS connects, which a loaded machine makes slow: 6 s
        // leaves the volume asserted below well within reach.
        duration: 6,
        drainS: 3,
        prefix: 'simaz-',
        groups: [{ count: 5, driver: 'azure', rate: 5, qos: 1, behaviour: { c2d: true, methods: { delayMs: 1, status: 200 }, twinReportIntervalS: 1 } }],
        commands: { c2dPerSecond: 4, methodsPerSecond: 2, methodName: 'ping' },
      },
      'test',
    )
    expectCleanCommandRun(await runSimulation(scenario), 5, 40)
  })
})
