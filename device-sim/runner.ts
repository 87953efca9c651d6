import { SimDevice, preciseNow } from './device.js'
import { driverFactory, type DriverFactory, type DriverName } from './drivers/index.js'
import type { CommandHandlers } from './drivers/types.js'
import { gatewayUrls, type DeviceGroup, type Scenario, type ScenarioEvent } from './scenario.js'
import type { Stats } from './stats.js'
import { PayloadTemplate } from './template.js'

/**
 * Runs one process's share of the fleet: connects it at the ramp rate, lets it produce telemetry
 * until the end of the run, applies scenario events, then waits (bounded) for outstanding
 * PUBACKs and closes every connection. Stops by itself at the end of the duration.
 */

export interface Assignment {
  deviceId: string
  key: string
  hubHost: string
  groupIndex: number
  /** Place in the whole fleet (all workers), for spreading devices over several gateway URLs. */
  index?: number
  localAddress?: string
}

export interface SharePlan {
  scenario: Scenario
  assignments: Assignment[]
  runId: string
  /** Epoch ms when the run started (shared by all workers). */
  startedAt: number
  /** This process's share of the ramp, connections per second (0 = all at once). */
  ramp: number
  /** PEM text to trust, read once by the parent. */
  ca?: string
}

const COMMAND_GRACE_MS = 500

function maxMethodDelay(scenario: Scenario): number {
  return Math.max(0, ...scenario.groups.map((g) => g.behaviour.methods?.delayMs ?? 0))
}

/**
 * Ctrl-C: end the run early, as if the duration were over, so the report and the clean-up still
 * happen. One flag per process; workers get it by an IPC message.
 */
const stopRequest = { requested: false }
export function requestStop(): void {
  stopRequest.requested = true
}
/** A new run in the same process (tests, benchmarks) starts without an old request. */
export function clearStopRequest(): void {
  stopRequest.requested = false
}
const running = (endAt: number): boolean => Date.now() < endAt && !stopRequest.requested

/** Connection attempts in flight at once when there is no ramp: a bound, not a rate. */
const MAX_PARALLEL_CONNECTS = 500

export async function runShare(plan: SharePlan, stats: Stats): Promise<void> {
  const devices = await buildDevices(plan, stats)
  const endAt = plan.startedAt + plan.scenario.duration * 1000
  const timers = scheduleEvents(plan.scenario.events, devices, plan.startedAt)
  const tick = setInterval(() => stats.sample(), 1000)
  try {
    await rampUp(devices, plan.ramp, endAt)
    while (running(endAt)) await sleep(Math.min(100, Math.max(1, endAt - Date.now())))
    for (const d of devices) d.stopSending()
    // The cloud side stops sending at the end of the run too; stay connected a moment so the
    // commands already on their way are answered instead of timing out.
    const { c2dPerSecond, methodsPerSecond } = plan.scenario.commands
    if (c2dPerSecond > 0 || methodsPerSecond > 0) await sleep(COMMAND_GRACE_MS + maxMethodDelay(plan.scenario))
    const drainUntil = Date.now() + plan.scenario.drainS * 1000
    while (stats.counters.acked < stats.counters.sentQos1 && Date.now() < drainUntil) await sleep(20)
  } finally {
    timers.forEach((t) => clearInterval(t))
    stats.sample()
    clearInterval(tick)
    await Promise.all(devices.map((d) => d.stop()))
  }
}

async function buildDevices(plan: SharePlan, stats: Stats): Promise<SimDevice[]> {
  const { scenario } = plan
  const factories = new Map<DriverName, DriverFactory>()
  for (const g of scenario.groups) if (!factories.has(g.driver)) factories.set(g.driver, await driverFactory(g.driver))
  const templates = scenario.groups.map((g) => PayloadTemplate.compile(g.payload, g.payloadSize))
  const urls = gatewayUrls(scenario.gateway)
  return plan.assignments.map((a, i) => {
    const group = scenario.groups[a.groupIndex]!
    // Spread over the instances in turn (by the device's place in the whole fleet, so that the
    // workers together spread evenly); the others, in order, are where it goes when that one fails.
    const first = (a.index ?? i) % urls.length
    const driver = factories.get(group.driver)!({
      deviceId: a.deviceId,
      key: a.key,
      hubHost: a.hubHost,
      gatewayUrl: urls[first]!,
      gatewayUrls: [...urls.slice(first), ...urls.slice(0, first)],
      ...(a.localAddress ? { localAddress: a.localAddress } : {}),
      behaviour: group.behaviour,
      handlers: commandHandlers(group, stats),
      transport: group.transport,
      ...(plan.ca ? { ca: plan.ca } : {}),
    })
    return new SimDevice(a.deviceId, group, driver, templates[a.groupIndex]!, stats, plan.runId, scenario.backoff)
  })
}

/** C2D latency needs the sender's `sim-ts` property; a message without it is only counted. */
function commandHandlers(group: DeviceGroup, stats: Stats): CommandHandlers {
  return {
    onC2d(properties) {
      stats.count('c2dReceived')
      const sentAt = Number(properties.get('sim-ts'))
      if (Number.isFinite(sentAt) && sentAt > 0) stats.record('c2d', (preciseNow() - sentAt) * 1000)
    },
    async onMethod(name) {
      const m = group.behaviour.methods ?? { delayMs: 0, status: 200 }
      if (m.delayMs > 0) await sleep(m.delayMs)
      stats.count('methodsAnswered')
      return { status: m.status, payload: { method: name, answeredAt: new Date().toISOString() } }
    },
  }
}

async function rampUp(devices: SimDevice[], ramp: number, endAt: number): Promise<void> {
  if (ramp <= 0) {
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < devices.length && running(endAt)) await devices[next++]!.start()
    }
    await Promise.all(Array.from({ length: Math.min(MAX_PARALLEL_CONNECTS, devices.length) }, lane))
    return
  }
  // Batches every 50 ms keep the rate smooth without a timer per device.
  const t0 = Date.now()
  const starts: Promise<void>[] = []
  let started = 0
  while (started < devices.length && running(endAt)) {
    const due = Math.min(devices.length, Math.floor(((Date.now() - t0) / 1000) * ramp) + 1)
    while (started < due) starts.push(devices[started++]!.start())
    await sleep(50)
  }
  await Promise.all(starts)
}

function scheduleEvents(events: readonly ScenarioEvent[], devices: SimDevice[], startedAt: number): NodeJS.Timeout[] {
  const timers: NodeJS.Timeout[] = []
  const at = (seconds: number, fn: () => void): void => {
    timers.push(setTimeout(fn, Math.max(0, startedAt + seconds * 1000 - Date.now())))
  }
  for (const event of events) {
    if (event.type === 'reconnect-storm') {
      at(event.at, () => {
        const connected = devices.filter((d) => d.connected)
        for (const d of shuffle(connected).slice(0, Math.round((connected.length * event.percent) / 100))) d.drop()
      })
    } else {
      let churn: NodeJS.Timeout | null = null
      at(event.from, () => {
        churn = setInterval(() => {
          const connected = devices.filter((d) => d.connected)
          connected[Math.floor(Math.random() * connected.length)]?.drop()
        }, 1000 / event.perSecond)
        timers.push(churn)
      })
      if (event.to !== undefined) at(event.to, () => churn && clearInterval(churn))
    }
  }
  return timers
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
