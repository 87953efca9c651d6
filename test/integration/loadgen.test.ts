import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildLoadgen, canBuildLoadgen, holdConnections, runLoadgen, type LoadgenConnection } from '../../bench/lib/loadgen.js'
import type { Device } from '../../src/registry/types.js'
import { metricSamples, readAll, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

/**
 * The C load generator behind `npm run bench:compare` (bench/loadgen/loadgen.c), against a real
 * gateway: what it reports as acknowledged is what the stream holds, its latency and CPU figures
 * are filled in, refused credentials are counted as refused, and held connections stay up. No
 * speed is asserted here: the figures belong to the benchmark.
 */
const needsCompiler = !canBuildLoadgen()
if (needsCompiler && process.env.CI) throw new Error('the load generator needs a C compiler (cc); install gcc')

describe.skipIf(needsCompiler)('C load generator against the gateway', () => {
  let gw: TestGateway
  let devices: Device[]
  let connections: LoadgenConnection[]
  let port: number

  beforeAll(async () => {
    buildLoadgen()
    gw = await startTestGateway()
    port = Number(new URL(gw.mqttUrl).port)
    devices = await Promise.all(Array.from({ length: 20 }, (_, i) => gw.gateway.registry.create({ deviceId: `loadgen-${i}` })))
    connections = devices.map((d) => ({
      clientId: d.deviceId,
      username: `localhost/${d.deviceId}/?api-version=2021-04-12`,
      password: sasFor(d),
      topic: `devices/${d.deviceId}/messages/events/`,
    }))
  }, 60_000)

  afterAll(async () => {
    await gw?.stop()
  })

  it('saturate: every publish it counts as acknowledged is in the stream, with the send time in its payload', async () => {
    const before = (await readAll(gw.gateway, 'telemetry')).length
    const r = await runLoadgen({ port, connections, mode: 'saturate', window: 5, payloadBytes: 200, seconds: 1, warmupSeconds: 0.2 })
    expect(r.connected).toBe(20)
    expect(r.refused + r.failed).toBe(0)
    expect(r.acked).toBe(r.sent)
    expect(r.windowAcked).toBeGreaterThan(0)
    expect(r.windowAcked).toBeLessThanOrEqual(r.acked)
    expect(Math.abs(r.rate - r.windowAcked / r.seconds) / r.rate).toBeLessThan(0.01)
    expect(r.p50Ms).toBeGreaterThan(0)
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms)
    expect(r.maxMs).toBeGreaterThanOrEqual(r.p99Ms * 0.97)
    expect(r.cpuShare).toBeGreaterThan(0)
    expect(typeof r.clientBound).toBe('boolean')
    const records = (await readAll(gw.gateway, 'telemetry')).slice(before)
    expect(records.length).toBe(r.acked)
    const sentAt = Number(/^t=(\d{16});/.exec(records[0]!.value.toString())?.[1])
    expect(Math.abs(sentAt / 1000 - Date.now())).toBeLessThan(60_000)
    expect(records[0]!.value.length).toBe(200)
    // A device's records stay in its order: per device, the send times never go back.
    const last = new Map<string, number>()
    for (const rec of records.sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
      const t = Number(/^t=(\d{16});/.exec(rec.value.toString())![1])
      const device = rec.key!.toString()
      expect(t).toBeGreaterThanOrEqual(last.get(device) ?? 0)
      last.set(device, t)
    }
    expect(last.size).toBe(20)
  }, 60_000)

  it('rate: offers the asked rate and reports latency percentiles', async () => {
    const r = await runLoadgen({ port, connections, mode: 'rate', rate: 400, window: 10, seconds: 1.5, warmupSeconds: 0.2 })
    expect(r.refused + r.failed).toBe(0)
    expect(r.acked).toBe(r.sent)
    // 400/s for 1.5 s: the window holds about 600 (the generator's clock decides the exact count).
    expect(r.windowAcked).toBeGreaterThan(400)
    expect(r.windowAcked).toBeLessThan(800)
    expect(r.p50Ms).toBeGreaterThan(0)
    expect(r.p999Ms).toBeGreaterThanOrEqual(r.p99Ms)
  }, 60_000)

  it('connect: counts a wrong password as refused and holds the rest open until released', async () => {
    const wrong = { ...connections[0]!, password: 'SharedAccessSignature sr=localhost%2Fdevices%2Floadgen-0&sig=AAAA&se=9999999999' }
    const held = await holdConnections({ port, connections: [wrong, ...connections.slice(1)], concurrency: 8 })
    expect(held.held).toBe(19)
    await waitFor(async () => (await metricSamples(gw)).get('streamgate_mqtt_connections') === 19, 10_000, '19 connections in the gauge')
    const r = await held.release()
    expect(r.connected).toBe(19)
    expect(r.refused).toBe(1)
    expect(r.failed).toBe(0)
    expect(r.rate).toBeGreaterThan(0)
    await waitFor(async () => (await metricSamples(gw)).get('streamgate_mqtt_connections') === 0, 10_000, 'connections closed after release')
  }, 60_000)
})
