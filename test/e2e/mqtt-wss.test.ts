import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { MqttWs } from 'azure-iot-device-mqtt'
import { parseScenario } from '../../device-sim/scenario.js'
import { runSimulation } from '../../device-sim/simulate.js'
import { initDevCerts } from '../../src/app/dev-certs.js'
import { readAll, startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { expectCleanCommandRun } from '../helpers/sim.js'
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
    const scenario = parseScenario(
      {
        gateway: 'wss://localhost:443',
        api: gw.httpUrl,
        token: gw.config.adminToken,
        dataDir: gw.dataDir,
        ca: certs.caCert,
        // The run's clock includes the SDK's TLS connects, which a loaded machine makes slow: 6 s
        // leaves the volume asserted below well within reach.
        duration: 6,
        drainS: 3,
        prefix: 'simws-',
        groups: [{ count: 4, driver: 'azure', transport: 'mqttws', rate: 5, qos: 1, behaviour: { c2d: true, methods: { delayMs: 1, status: 200 }, twinReportIntervalS: 1 } }],
        commands: { c2dPerSecond: 4, methodsPerSecond: 2, methodName: 'ping' },
      },
      'test',
    )
    expectCleanCommandRun(await runSimulation(scenario), 4, 30)
    // Every simulated device came in over the WSS listener (the connected events say which).
    const connected = (await readAll(gw.gateway, 'device-events')).map((r) => JSON.parse(r.value.toString()) as { type: string; deviceId: string; transport?: string }).filter((e) => e.type === 'connected')
    expect(new Set(connected.map((e) => e.deviceId)).size).toBe(4)
    expect(connected.every((e) => e.transport === 'wss')).toBe(true)
  }, 60_000)
})
