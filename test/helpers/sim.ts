import { expect } from 'vitest'
import type { SimReport } from '../../device-sim/report/build.js'
import { parseScenario, type Scenario } from '../../device-sim/scenario.js'
import type { TestGateway } from './gateway.js'

/**
 * A small fleet on the azure driver (the unmodified SDK) with every behaviour on: telemetry at
 * QoS 1, C2D completed, methods answered, twin reports; the cloud side sends C2D and methods.
 */
export function azureFleetScenario(gw: TestGateway, o: { gateway: string; ca: string; prefix: string; count: number; transport: 'mqtt' | 'mqttws' }): Scenario {
  return parseScenario(
    {
      gateway: o.gateway,
      api: gw.httpUrl,
      token: gw.config.adminToken,
      dataDir: gw.dataDir,
      ca: o.ca,
      // The run's clock includes the SDK's TLS connects, which a loaded machine makes slow: 6 s
      // leaves the volumes the tests assert well within reach.
      duration: 6,
      drainS: 3,
      prefix: o.prefix,
      groups: [{ count: o.count, driver: 'azure', transport: o.transport, rate: 5, qos: 1, behaviour: { c2d: true, methods: { delayMs: 1, status: 200 }, twinReportIntervalS: 1 } }],
      commands: { c2dPerSecond: 4, methodsPerSecond: 2, methodName: 'ping' },
    },
    'test',
  )
}

/**
 * What a clean simulator run with commands must show: every device connected once, no error,
 * every QoS 1 message acknowledged and stored (none lost), C2D and methods all answered, twin
 * reports made, and latency percentiles in order.
 */
export function expectCleanCommandRun(report: SimReport, devices: number, minSent: number): void {
  const c = report.counts
  expect(report.errors).toEqual({})
  expect(c.connects).toBe(devices)
  expect(c.sent).toBeGreaterThan(minSent)
  expect(c.acked).toBe(c.sent)
  expect(c.stored).toBe(c.sent)
  expect(c.lost).toBe(0)
  expect(c.c2dSent).toBeGreaterThan(0)
  expect(c.c2dReceived).toBe(c.c2dSent)
  expect(c.methodsInvoked).toBeGreaterThan(0)
  expect(c.methodsReturned).toBe(c.methodsInvoked)
  expect(c.twinReported).toBeGreaterThan(0)
  expect(report.latencyMs.e2e.p50).toBeLessThanOrEqual(report.latencyMs.e2e.p99)
}
