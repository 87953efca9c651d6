import { fork, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SimError } from './errors.js'
import { runShare, type SharePlan } from './runner.js'
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

type ToWorker = { type: 'run'; plan: SharePlan }
type FromWorker = { type: 'progress'; progress: Progress } | { type: 'done'; snapshot: StatsSnapshot } | { type: 'failed'; message: string }

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

function cliPath(): string {
  const file = join(dirname(fileURLToPath(import.meta.url)), 'cli.js')
  if (!existsSync(file)) throw new SimError('E_SIM_WORKER', `--workers needs the built simulator (${file}); run npm run build`)
  return file
}

export async function runInWorkers(plans: SharePlan[], onProgress: (p: Progress) => void): Promise<StatsSnapshot[]> {
  const file = cliPath()
  const latest: Progress[] = plans.map(() => ({ connected: 0, sent: 0, acked: 0, errors: 0, pubackP99Ms: 0 }))
  return Promise.all(
    plans.map(
      (plan, i) =>
        new Promise<StatsSnapshot>((resolve, reject) => {
          const child: ChildProcess = fork(file, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
          let done = false
          child.on('message', (raw) => {
            const msg = raw as FromWorker
            if (msg.type === 'progress') {
              latest[i] = msg.progress
              onProgress(addProgress(latest))
            } else if (msg.type === 'done') {
              done = true
              resolve(msg.snapshot)
              child.disconnect()
            } else {
              done = true
              reject(new SimError('E_SIM_WORKER', `worker ${i + 1} failed: ${msg.message}`))
            }
          })
          child.on('exit', (code) => {
            if (!done) reject(new SimError('E_SIM_WORKER', `worker ${i + 1} exited (${code}) without a result`))
          })
          child.send({ type: 'run', plan } satisfies ToWorker)
        }),
    ),
  )
}

/** The child side: wait for a plan, run it, report progress and the final snapshot. */
export function serveAsWorker(): void {
  process.once('message', (raw) => {
    const { plan } = raw as ToWorker
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
  })
}
