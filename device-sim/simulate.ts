import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { CommandDriver } from './commands.js'
import { SimError } from './errors.js'
import { assign, runFleet } from './fleet.js'
import { clearStopRequest, requestStop, type Assignment } from './runner.js'
import { cleanupFleet, fleetIds, provisionFleet, readCredentialsFile, type ApiTarget, type DeviceCredential } from './provision.js'
import { buildReport, type SimReport } from './report/build.js'
import type { Scenario } from './scenario.js'
import { Stats, type StatsSnapshot } from './stats.js'
import { mergeSnapshots } from './stats-merge.js'
import { StreamTracker, type StreamTally } from './stream-tracker.js'
import { WorkerPool, type Progress } from './workers.js'

/**
 * One simulation, start to end: identities (API or file), the stream reader when a data dir is
 * given, the fleet run, the wait for the stream to catch up, the report, the clean-up. The CLI,
 * the tests and the benchmarks all run it through here.
 */

export interface SimulationHooks {
  onProgress?: (p: Progress) => void
  /** Called once provisioning is done, with the fleet's device ids (tests inject faults). */
  onFleetReady?: (deviceIds: readonly string[]) => void
  log?: (line: string) => void
  /** Aborting ends the run early (Ctrl-C); the report and the clean-up still happen. */
  stop?: AbortSignal
}

function apiTarget(scenario: Scenario): ApiTarget {
  if (!scenario.token) throw new SimError('E_SIM_USAGE', 'provisioning through the API needs --token (or STREAMGATE_ADMIN_TOKEN, or ./data/admin-token of the gateway that runs here), or use --credentials FILE')
  return { api: scenario.api, token: scenario.token }
}

async function identities(scenario: Scenario, log: (line: string) => void): Promise<DeviceCredential[]> {
  const needed = scenario.groups.reduce((n, g) => n + g.count, 0)
  if (scenario.credentials) {
    const all = readCredentialsFile(scenario.credentials)
    if (all.length < needed) throw new SimError('E_SIM_CREDENTIALS', `${scenario.credentials} holds ${all.length} devices; the scenario needs ${needed}`)
    return all.slice(0, needed)
  }
  const t0 = Date.now()
  const { devices, created } = await provisionFleet(apiTarget(scenario), fleetIds(scenario.prefix, needed))
  log(`provisioned ${needed} devices (${created} created, ${needed - created} existing) in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return devices
}

export async function runSimulation(scenario: Scenario, hooks: SimulationHooks = {}): Promise<SimReport> {
  const log = hooks.log ?? (() => {})
  clearStopRequest()
  const credentials = await identities(scenario, log)
  let pool: WorkerPool | null = null
  let tracker: StreamTracker | null = null
  let commands: { stop(): Promise<void> } | null = null
  try {
    // Workers load before the clock starts, so their start-up is not counted as run time.
    const workers = Math.min(scenario.workers, credentials.length)
    pool = workers > 1 ? await WorkerPool.spawn(workers) : null
    const stopPool = pool
    hooks.stop?.addEventListener('abort', () => (requestStop(), stopPool?.stopEarly()))
    hooks.onFleetReady?.(credentials.map((c) => c.deviceId))
    const runId = randomBytes(6).toString('hex')
    const startedAt = Date.now()
    const stats = new Stats(startedAt)
    tracker = streamTracker(scenario, runId, stats)
    // The reader starts at the end of the topic before the first message is sent.
    await tracker?.start()
    const assignments = assign(scenario, credentials)
    commands = startCommands(scenario, assignments, stats, startedAt)
    const ca = scenario.ca ? readFileSync(scenario.ca, 'utf8') : undefined
    const workerSnapshots = await runFleet(scenario, assignments, { runId, startedAt, parentStats: stats, pool, onProgress: hooks.onProgress ?? (() => {}), ...(ca ? { ca } : {}) })
    await commands?.stop()
    const tally = tracker ? await settleStream(tracker, mergeSnapshots([...workerSnapshots, stats.snapshot()]), scenario) : null
    // Snapshot last: the stream reader and the cloud side record into this process's stats.
    const snapshot = mergeSnapshots([...workerSnapshots, stats.snapshot()])
    return buildReport(scenario, snapshot, tally, { runId, startedAt, elapsedS: (Date.now() - startedAt) / 1000 })
  } finally {
    pool?.close()
    await commands?.stop()
    await tracker?.stop()
    if (scenario.cleanup && !scenario.credentials) {
      const removed = await cleanupFleet(apiTarget(scenario), credentials.map((c) => c.deviceId))
      log(`cleanup: deleted ${removed} devices`)
    }
  }
}

function streamTracker(scenario: Scenario, runId: string, stats: Stats): StreamTracker | null {
  const { dataDir, streamConfig } = scenario
  if (!dataDir && !streamConfig) return null
  return new StreamTracker({ ...(dataDir ? { dataDir } : {}), ...(streamConfig ? { configFile: streamConfig } : {}) }, runId, stats)
}

/** Wait for the stream to show what was produced (bounded: QoS 0 losses never arrive), then count. */
async function settleStream(tracker: StreamTracker, produced: StatsSnapshot, scenario: Scenario): Promise<StreamTally> {
  const c = produced.counters
  await tracker.waitFor(c.sent - c.droppedOffline, Math.max(2000, scenario.drainS * 1000))
  return tracker.tally(produced.sentByDevice)
}

/**
 * The cloud side starts once the fleet should be connected (after the ramp, at most half-way
 * through the run) and stops at the end of the run. Runs in the parent: it talks to the API only.
 */
function startCommands(scenario: Scenario, assignments: readonly Assignment[], stats: Stats, startedAt: number): { stop(): Promise<void> } | null {
  const { c2dPerSecond, methodsPerSecond, methodName } = scenario.commands
  if (c2dPerSecond === 0 && methodsPerSecond === 0) return null
  const targets = (want: (g: Scenario['groups'][number]) => boolean): string[] =>
    assignments.filter((a) => want(scenario.groups[a.groupIndex]!)).map((a) => a.deviceId)
  const driver = new CommandDriver(apiTarget(scenario), { c2dPerSecond, methodsPerSecond, methodName, methodConnectTimeoutS: scenario.commands.methodConnectTimeoutS, c2dTargets: targets((g) => g.behaviour.c2d), methodTargets: targets((g) => g.behaviour.methods !== undefined) }, stats)
  const connectS = scenario.ramp > 0 ? assignments.length / scenario.ramp : 1
  const startIn = Math.min(connectS, scenario.duration / 2) * 1000
  const begin = setTimeout(() => driver.start(), startIn)
  const end = setTimeout(() => void driver.stop(), startedAt + scenario.duration * 1000 - Date.now())
  return {
    stop: async () => {
      clearTimeout(begin)
      clearTimeout(end)
      await driver.stop()
    },
  }
}
