import { Worker } from 'node:worker_threads'
import { siblingWorkerFile } from './worker-file.js'

export interface CheckpointerConfig {
  file: string
  /** How often committed WAL pages are copied into the database. */
  intervalMs: number
  busyTimeoutMs: number
}

export type FromCheckpointer =
  | { type: 'ready' }
  | { type: 'closed' }
  | { type: 'recovered' }
  | { type: 'error'; message: string }
  /** After each pass: frames in the WAL, and how many of them are in the database now. */
  | { type: 'checkpointed'; walFrames: number; copied: number }

/**
 * WAL pages of the stream file get into the database on a thread of their own
 * (checkpoint-worker.ts), off the commit path. The stream's connections keep SQLite's automatic
 * checkpoint only as a backstop at WAL_BACKSTOP_PAGES (it then finds the pages already copied and
 * only resets the log), so the WAL stays bounded even if this thread fails or falls behind; a
 * failure is reported in `lastError` (health) and nothing else depends on it.
 */
export class Checkpointer {
  private worker: Worker | null = null
  private closing: Promise<void> | null = null
  lastError: string | null = null
  /** Counters for tests and diagnostics. */
  passes = 0
  lastWalFrames = 0

  constructor(private readonly config: CheckpointerConfig) {}

  start(): void {
    if (this.worker) return
    const worker = new Worker(siblingWorkerFile(import.meta.url, 'checkpoint-worker'), { workerData: this.config, name: 'stream-checkpointer' })
    worker.unref()
    worker.on('message', (message: FromCheckpointer) => {
      if (message.type === 'error') this.lastError = message.message
      else if (message.type === 'recovered') this.lastError = null
      else if (message.type === 'checkpointed') {
        this.passes++
        this.lastWalFrames = message.walFrames
      }
    })
    worker.on('error', (err) => (this.lastError = `the checkpoint thread failed: ${err.message}`))
    worker.on('exit', (code) => {
      if (!this.closing) this.lastError ??= `the checkpoint thread exited (code ${code})`
      this.worker = null
    })
    this.worker = worker
  }

  /** One last pass, then the thread ends. */
  close(): Promise<void> {
    const worker = this.worker
    if (!worker) return Promise.resolve()
    this.closing ??= new Promise<void>((resolve) => {
      // Unref'd while it runs; while we wait for it, it must keep the process alive (or a stop with
      // nothing else left would end the process mid-await, exit code 13).
      worker.ref()
      worker.once('exit', () => resolve())
      worker.postMessage({ type: 'close' })
    })
    return this.closing
  }
}

/** The automatic checkpoint's threshold while a Checkpointer runs (SQLite's default is 1000). */
export const WAL_BACKSTOP_PAGES = 4000
