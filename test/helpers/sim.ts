import { expect } from 'vitest'
import type { SimReport } from '../../device-sim/report/build.js'

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
