import { addProgress, progressOf, type Progress, type WorkerPool } from './workers.js'
import { runShare, type Assignment, type SharePlan } from './runner.js'
import type { Scenario } from './scenario.js'
import type { DeviceCredential } from './provision.js'
import type { Stats, StatsSnapshot } from './stats.js'

/**
 * Assigns credentials to groups and source addresses, then runs the fleet in this process or
 * spread over --workers child processes. Returns the merged snapshot.
 */

export function assign(scenario: Scenario, credentials: readonly DeviceCredential[]): Assignment[] {
  const out: Assignment[] = []
  let index = 0
  scenario.groups.forEach((group, groupIndex) => {
    for (let i = 0; i < group.count; i++, index++) {
      const c = credentials[index]!
      const ips = scenario.sourceIps
      out.push({
        deviceId: c.deviceId,
        key: c.key,
        hubHost: c.hubHost ?? scenario.hubHost,
        groupIndex,
        index,
        ...(ips.length > 0 ? { localAddress: ips[index % ips.length]! } : {}),
      })
    }
  })
  return out
}

export interface FleetRun {
  runId: string
  startedAt: number
  ca?: string
  /** The tracker's Stats in the parent, sampled for progress and merged at the end. */
  parentStats: Stats
  onProgress: (p: Progress) => void
  /** Started before the run's clock (simulate.ts); null runs every device in this process. */
  pool: WorkerPool | null
}

/**
 * Returns the workers' snapshots; devices run in this process record into `run.parentStats`,
 * which the caller snapshots last (the stream reader and the cloud side keep adding to it).
 */
export async function runFleet(scenario: Scenario, assignments: Assignment[], run: FleetRun): Promise<StatsSnapshot[]> {
  const k = run.pool?.size ?? 1
  const base = { scenario, runId: run.runId, startedAt: run.startedAt, ...(run.ca ? { ca: run.ca } : {}) }
  if (k === 1) {
    const timer = setInterval(() => run.onProgress(progressOf(run.parentStats)), 1000)
    try {
      await runShare({ ...base, assignments, ramp: scenario.ramp }, run.parentStats)
    } finally {
      clearInterval(timer)
    }
    return []
  }
  // Device i goes to worker i mod k, so every worker gets every group in proportion.
  const plans: SharePlan[] = Array.from({ length: k }, (_, w) => ({
    ...base,
    assignments: assignments.filter((_, i) => i % k === w),
    ramp: scenario.ramp / k,
  }))
  return run.pool!.run(plans, (p) => run.onProgress(addProgress([p, progressOf(run.parentStats)])))
}
