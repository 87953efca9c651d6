import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'vitest'
import { runSimulation } from '../../device-sim/simulate.js'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { azureFleetScenario, expectCleanCommandRun } from '../helpers/sim.js'

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
    const scenario = azureFleetScenario(gw, { gateway: `mqtts://localhost:${port}`, ca: certs.caCert, prefix: 'simaz-', count: 5, transport: 'mqtt' })
    expectCleanCommandRun(await runSimulation(scenario), 5, 40)
  })
})
