import { fork, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SimError } from './errors.js'
import { requestStop, runShare, type SharePlan } from './runner.js'
import { Stats, type StatsSnapshot } from './stats.js'

/**
 * --workers K: the fleet is split over K child processes (each has its own open-file limit and
 * event loop). The parent forks the built cli.js with --worker, sends each its share over IPC,
 * receives a progress line once a second and a StatsSnapshot at the end, and merges them.
 */

export interface Progress {
  connected: number
  sent: number
  acked: number
  errors: number
  pubackP99Ms: number
}

type ToWorker = { type: 'run'; plan: SharePlan } | { type: 'stop' }
type FromWorker = { type: 'ready' } | { type: 'progress'; progress: Progress } | { type: 'done'; snapshot: StatsSnapshot } | { type: 'failed'; message: string }

export function progressOf(stats: Stats): Progress {
  let errors = 0
  for (const n of stats.errors.values()) errors += n
  return { connected: stats.connected, sent: stats.counters.sent, acked: stats.counters.acked, errors, pubackP99Ms: stats.p99Ms('puback') }
}

/** Sum of the workers' latest progress (p99: the worst worker's, an upper bound). */
export function addProgress(items: readonly Progress[]): Progress {
  return items.reduce(
    (a, b) => ({ connected: a.connected + b.connected, sent: a.sent + b.sent, acked: a.acked + b.acked, errors: a.errors + b.errors, pubackP99Ms: Math.max(a.pubackP99Ms, b.pubackP99Ms) }),
    { connected: 0, sent: 0, acked: 0, errors: 0, pubackP99Ms: 0 },
  )
}

/** The built cli.js beside this module, or, when running from the TypeScript sources (tests), the one in dist/. */
function cliPath(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  const file = [join(here, 'cli.js'), join(here, '..', 'dist', 'device-sim', 'cli.js')].find((f) => existsSync(f)) ?? join(here, 'cli.js')
  if (!existsSync(file)) throw new SimError('E_SIM_WORKER', `--workers needs the built simulator (${file}); run npm run build`)
  return file
}

/**
 * Worker processes, forked and loaded before the run's clock starts: a Node process needs a
 * moment (more on a busy machine) to load the simulator, which must not eat into --duration.
 */
export class WorkerPool {
  private constructor(private readonly children: ChildProcess[]) {}

  static async spawn(k: number): Promise<WorkerPool> {
    const file = cliPath()
    const children = Array.from({ length: k }, () => fork(file, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
    await Promise.all(
      children.map(
        (child, i) =>
          new Promise<void>((resolve, reject) => {
            child.once('message', (msg) => ((msg as FromWorker).type === 'ready' ? resolve() : reject(new SimError('E_SIM_WORKER', `worker ${i + 1} did not start`))))
            child.once('exit', (code) => reject(new SimError('E_SIM_WORKER', `worker ${i + 1} exited (${code}) while starting`)))
          }),
      ),
    )
    return new WorkerPool(children)
  }

  get size(): number {
    return this.children.length
  }

  run(plans: SharePlan[], onProgress: (p: Progress) => void): Promise<StatsSnapshot[]> {
    const latest: Progress[] = plans.map(() => ({ connected: 0, sent: 0, acked: 0, errors: 0, pubackP99Ms: 0 }))
    return Promise.all(plans.map((plan, i) => this.runOne(this.children[i]!, i, plan, (p) => ((latest[i] = p), onProgress(addProgress(latest))))))
  }

  /** End the run early in every worker (Ctrl-C); each still sends its result. */
  stopEarly(): void {
    for (const child of this.children) if (child.connected) child.send({ type: 'stop' } satisfies ToWorker)
  }

  /** Stop workers that are still there (a failed run); safe after a normal end. */
  close(): void {
    for (const child of this.children) if (child.exitCode === null && child.connected) child.disconnect()
  }

  private runOne(child: ChildProcess, i: number, plan: SharePlan, onProgress: (p: Progress) => void): Promise<StatsSnapshot> {
    return new Promise<StatsSnapshot>((resolve, reject) => {
      let done = false
      child.on('message', (raw) => {
        const msg = raw as FromWorker
        if (msg.type === 'progress') onProgress(msg.progress)
        else if (msg.type === 'done') {
          done = true
          resolve(msg.snapshot)
          child.disconnect()
        } else if (msg.type === 'failed') {
          done = true
          reject(new SimError('E_SIM_WORKER', `worker ${i + 1} failed: ${msg.message}`))
        }
      })
      child.on('exit', (code) => {
        if (!done) reject(new SimError('E_SIM_WORKER', `worker ${i + 1} exited (${code}) without a result`))
      })
      child.send({ type: 'run', plan } satisfies ToWorker)
    })
  }
}

/** The child side: wait for a plan, run it, report progress and the final snapshot. */
export function serveAsWorker(): void {
  const start = (plan: SharePlan): void => {
    const stats = new Stats(plan.startedAt)
    const send = (msg: FromWorker): void => void process.send?.(msg)
    const timer = setInterval(() => send({ type: 'progress', progress: progressOf(stats) }), 1000)
    runShare(plan, stats).then(
      () => {
        clearInterval(timer)
        send({ type: 'done', snapshot: stats.snapshot() })
      },
      (err: unknown) => {
        clearInterval(timer)
        send({ type: 'failed', message: (err as Error).message })
      },
    )
  }
  process.on('message', (raw) => {
    const msg = raw as ToWorker
    if (msg.type === 'stop') requestStop()
    else start(msg.plan)
  })
  // Ctrl-C in a terminal reaches the whole process group; the parent relays it as 'stop' so
  // this worker still reports what it measured.
  process.on('SIGINT', () => {})
  process.send?.({ type: 'ready' } satisfies FromWorker)
}
