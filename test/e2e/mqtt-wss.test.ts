import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { MqttWs } from 'azure-iot-device-mqtt'
import { runSimulation } from '../../device-sim/simulate.js'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { readAll, startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { azureFleetScenario, expectCleanCommandRun } from '../helpers/sim.js'
import { sdkSuite } from './sdk-suite.js'
import { x509Suite } from './x509-suite.js'

// All bind port 443 (MqttWs hard-codes it): one file, so they run one after the other
// (vitest runs files in parallel and the describes of a file in turn).
sdkSuite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss', 'sas')
sdkSuite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss', 'x509')
x509Suite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss')

describe('device-sim azure driver over MqttWs (secure WebSocket, 443)', () => {
  let dir = ''
  let gw: TestGateway | null = null
  afterAll(async () => {
    await gw?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('telemetry, C2D, methods and twins through the gateway WSS listener: sent = acked = stored, nothing lost', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-azure-ws-'))
    const certs = await initDevCerts(dir, ['localhost'])
    gw = await startTestGateway({ 'http.wss.enabled': 'true', 'http.wss.port': '443' }, dir)
    const scenario = azureFleetScenario(gw, { gateway: 'wss://localhost:443', ca: certs.caCert, prefix: 'simws-', count: 4, transport: 'mqttws' })
    expectCleanCommandRun(await runSimulation(scenario), 4, 30)
    // Every simulated device came in over the WSS listener (the connected events say which).
    const connected = (await readAll(gw.gateway, 'device-events')).map((r) => JSON.parse(r.value.toString()) as { type: string; deviceId: string; transport?: string }).filter((e) => e.type === 'connected')
    expect(new Set(connected.map((e) => e.deviceId)).size).toBe(4)
    expect(connected.every((e) => e.transport === 'wss')).toBe(true)
  }, 60_000)
})
