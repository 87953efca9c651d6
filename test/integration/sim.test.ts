import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { topicNames } from '../../src/config/load.js'
import { parseScenario } from '../../device-sim/scenario.js'
import { runSimulation } from '../../device-sim/simulate.js'
import type { SimReport } from '../../device-sim/report/build.js'
import { readAll, startTestGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * The simulator against a real gateway (embedded stream, loopback sockets): its report must
 * agree with what the gateway stored, and with faults injected from the outside.
 */

let gw: TestGateway | null = null
afterEach(async () => {
  await gw?.stop()
  gw = null
})

function baseScenario(g: TestGateway, extra: Record<string, unknown>): ReturnType<typeof parseScenario> {
  return parseScenario(
    { gateway: g.mqttUrl, api: g.httpUrl, token: g.config.adminToken, dataDir: g.dataDir, drainS: 3, ...extra },
    'test',
  )
}

async function storedOfRun(g: TestGateway, report: SimReport): Promise<Map<string, number>> {
  const perDevice = new Map<string, number>()
  for (const r of await readAll(g.gateway, topicNames(g.config).telemetry)) {
    if (r.headers['sim-run'] !== report.runId) continue
    perDevice.set(r.key!, (perDevice.get(r.key!) ?? 0) + 1)
  }
  return perDevice
}

/**
 * Runs `fn` once `deviceId` is connected to `g` and at least `afterMs` have passed: a fault injected
 * at a fixed time could find the device not connected yet when a loaded machine is slow to start
 * the fleet (the run's clock starts before the devices connect).
 */
function whenConnected(g: TestGateway, deviceId: string, afterMs: number, fn: () => void): void {
  const earliest = Date.now() + afterMs
  const giveUp = earliest + 30_000
  const timer = setInterval(() => {
    if (Date.now() > giveUp) return clearInterval(timer)
    if (Date.now() < earliest || !g.gateway.broker.connectionOf(deviceId)) return
    clearInterval(timer)
    fn()
  }, 25)
}

describe('device-sim against a real gateway', () => {
  it('QoS 1 fleet: sent = acked = stored, no loss, ordered latencies, C2D, methods and twins answered', async () => {
    gw = await startTestGateway()
    const scenario = baseScenario(gw, {
      duration: 3,
      prefix: 'simq1-',
      cleanup: true,
      groups: [{ count: 20, rate: 10, qos: 1, behaviour: { c2d: true, methods: { delayMs: 2, status: 201 }, twinReportIntervalS: 1 } }],
      commands: { c2dPerSecond: 10, methodsPerSecond: 5, methodName: 'ping' },
    })
    const report = await runSimulation(scenario)
    const c = report.counts
    // 20 devices x 10/s for 3 s asks for 600; connecting eats into the 3 s on a loaded machine
    // (400 was seen under CI load), so only require a volume well past a handful.
    expect(c.sent).toBeGreaterThanOrEqual(200)
    expect(c.acked).toBe(c.sent)
    expect(c.stored).toBe(c.sent)
    expect(c.lost).toBe(0)
    expect(c.duplicated).toBe(0)
    expect(report.lossBasis).toBe('stream')
    expect(report.errors).toEqual({})
    expect(c.connects).toBe(20)
    const stored = await storedOfRun(gw, report)
    expect([...stored.values()].reduce((a, b) => a + b, 0)).toBe(c.sent)
    for (const name of ['connect', 'puback', 'e2e', 'c2d', 'method'] as const) {
      const l = report.latencyMs[name]
      expect(l.count, name).toBeGreaterThan(0)
      expect(l.p50, name).toBeGreaterThan(0)
      expect(l.p50, name).toBeLessThanOrEqual(l.p99)
      expect(l.p99, name).toBeLessThanOrEqual(l.max)
    }
    expect(report.latencyMs.puback.count).toBe(c.acked)
    expect(report.latencyMs.e2e.count).toBe(c.stored)
    expect(c.c2dSent).toBeGreaterThan(0)
    expect(c.c2dReceived).toBe(c.c2dSent)
    expect(c.methodsInvoked).toBeGreaterThan(0)
    expect(c.methodsReturned).toBe(c.methodsInvoked)
    expect(c.methodsAnswered).toBe(c.methodsInvoked)
    expect(c.twinReported).toBeGreaterThanOrEqual(20)
    // A method answered after its configured delay cannot come back faster than the delay.
    expect(report.latencyMs.method.min).toBeGreaterThanOrEqual(2)
    expect(report.timeline.reduce((n, t) => n + t.sent, 0)).toBe(c.sent)
    // --cleanup removed the fleet it created.
    const gone = await fetch(`${gw.httpUrl}/api/devices/simq1-000001`, { headers: { authorization: `Bearer ${gw.config.adminToken}` } })
    expect(gone.status).toBe(404)
    expect(await gw.gateway.registry.get('simq1-000020')).toBeFalsy()
  })

  it('QoS 0 device disabled mid-run: what it produced while refused is reported lost, per the stream', async () => {
    gw = await startTestGateway()
    const g = gw
    let victim = ''
    const scenario = baseScenario(g, {
      duration: 4,
      prefix: 'simloss-',
      backoff: { minMs: 50, maxMs: 200 },
      groups: [{ count: 10, rate: 20, qos: 0 }],
    })
    const report = await runSimulation(scenario, {
      onFleetReady: (ids) => {
        victim = ids[3]!
        const patch = (status: string): Promise<Response> =>
          fetch(`${g.httpUrl}/api/devices/${victim}`, { method: 'PATCH', headers: { authorization: `Bearer ${g.config.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ status }) })
        whenConnected(g, victim, 1200, () => void patch('disabled').then(() => setTimeout(() => void patch('enabled'), 1000)))
      },
    })
    const c = report.counts
    const stored = await storedOfRun(g, report)
    const storedTotal = [...stored.values()].reduce((a, b) => a + b, 0)
    expect(c.stored).toBe(storedTotal)
    expect(c.lost).toBe(c.sent - storedTotal)
    // About a second of 20 msgs/s was produced while the device was refused.
    expect(c.droppedOffline).toBeGreaterThanOrEqual(10)
    expect(c.lost).toBeGreaterThanOrEqual(c.droppedOffline)
    expect(c.disconnects).toBeGreaterThanOrEqual(1)
    expect(c.connectFailures).toBeGreaterThanOrEqual(1)
    expect(report.errors.E_SIM_OFFLINE_QOS0).toBe(c.droppedOffline)
    expect(Object.keys(report.errors).some((code) => code.startsWith('CONNACK_'))).toBe(true)
    // The loss is the victim's alone: every other device's messages are all in the stream.
    for (const [deviceId, n] of stored) {
      if (deviceId !== victim) expect(n, deviceId).toBeGreaterThanOrEqual(20)
    }
    expect(stored.get(victim) ?? 0).toBeLessThan(Math.min(...[...stored.entries()].filter(([d]) => d !== victim).map(([, n]) => n)))
  })

  it('QoS 1 device kicked mid-run: it reconnects and redelivers, nothing acknowledged is lost', async () => {
    gw = await startTestGateway()
    const g = gw
    // This run finds the stream through a gateway config file (--stream-config) instead of --data-dir.
    const configFile = join(g.dataDir, 'sim-gateway.yaml')
    writeFileSync(configFile, `dataDir: ${JSON.stringify(g.dataDir)}\n`)
    const scenario = parseScenario(
      { gateway: g.mqttUrl, api: g.httpUrl, token: g.config.adminToken, streamConfig: configFile, drainS: 3, duration: 3, prefix: 'simkick-', backoff: { minMs: 50, maxMs: 200 }, groups: [{ count: 5, rate: 50, qos: 1 }] },
      'test',
    )
    const report = await runSimulation(scenario, { onFleetReady: (ids) => whenConnected(g, ids[0]!, 1000, () => g.gateway.broker.kick(ids[0]!)) })
    const c = report.counts
    expect(c.disconnects).toBe(1)
    expect(c.connects).toBe(6)
    expect(c.acked).toBe(c.sent)
    expect(c.lost).toBe(0)
    expect(c.stored).toBe(c.sent)
    expect(report.lossBasis).toBe('stream')
  })

  it('--workers and --source-ips: devices spread over child processes and local addresses, results merged', async () => {
    gw = await startTestGateway()
    const g = gw
    const addresses = new Set<string>()
    const scenario = baseScenario(g, { duration: 3, prefix: 'simwk-', workers: 2, sourceIps: ['127.0.0.2', '127.0.0.3'], groups: [{ count: 8, rate: 10, qos: 1 }] })
    // Where each device connects from, seen through the API while the run goes on (the worker
    // processes may take a while to start on a loaded machine: look until the run ends).
    let looking = true
    const look = async (ids: readonly string[]): Promise<void> => {
      while (looking) {
        for (const id of ids) {
          const view = (await (await fetch(`${g.httpUrl}/api/devices/${id}`, { headers: { authorization: `Bearer ${g.config.adminToken}` } })).json()) as { live?: { remoteAddress?: string } | null }
          if (view.live?.remoteAddress) addresses.add(view.live.remoteAddress.replace(/^::ffff:/, ''))
        }
        await new Promise((r) => setTimeout(r, 250))
      }
    }
    let looked: Promise<void> = Promise.resolve()
    const report = await runSimulation(scenario, { onFleetReady: (ids) => void (looked = look(ids)) }).finally(() => (looking = false))
    await looked
    const c = report.counts
    expect(report.workers).toBe(2)
    expect(c.connects).toBe(8)
    expect(c.sent).toBeGreaterThan(100)
    expect(c.acked).toBe(c.sent)
    expect(c.stored).toBe(c.sent)
    expect(c.lost).toBe(0)
    expect(report.latencyMs.puback.count).toBe(c.acked)
    expect(report.latencyMs.e2e.count).toBe(c.stored)
    expect(Object.keys(report.timeline).length).toBeGreaterThan(0)
    expect([...addresses].sort()).toEqual(['127.0.0.2', '127.0.0.3'])
  })

  it('scenario events: a reconnect storm drops its share of the fleet at once, churn keeps dropping; QoS 1 loses nothing', async () => {
    gw = await startTestGateway()
    // The churn ends at 3.5 s; a 5 s run leaves the last dropped device time to reconnect on a
    // loaded machine (connects = 10 + disconnects below).
    const scenario = baseScenario(gw, {
      duration: 5,
      prefix: 'simev-',
      backoff: { minMs: 50, maxMs: 300 },
      groups: [{ count: 10, rate: 10, qos: 1 }],
      events: [
        { type: 'reconnect-storm', at: 1.5, percent: 50 },
        { type: 'churn', from: 2.5, to: 3.5, perSecond: 4 },
      ],
    })
    const report = await runSimulation(scenario)
    const c = report.counts
    // 5 from the storm, about 4 from churn (a churn pick may find its device reconnecting).
    expect(c.disconnects).toBeGreaterThanOrEqual(7)
    expect(c.disconnects).toBeLessThanOrEqual(9)
    expect(c.connects).toBe(10 + c.disconnects)
    const stormSecond = report.timeline.find((t) => t.second === 1)
    expect(stormSecond?.disconnects).toBe(5)
    expect(c.acked).toBe(c.sent)
    expect(c.lost).toBe(0)
    expect(c.stored).toBe(c.sent)
    expect(report.events).toHaveLength(2)
  })
})
