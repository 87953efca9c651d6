import type { ErrorCode } from '../../errors/catalogue.js'

/** Messages between the event loop (writer-thread.ts) and the writer thread (writer-worker.ts). */

export interface WriterThreadConfig {
  file: string
  synchronous: 'NORMAL' | 'FULL'
  busyTimeoutMs: number
  maxBatchRecords: number
  lingerMs: number
  walAutocheckpointPages?: number
}

export interface WireError {
  code: ErrorCode
  message: string
  details?: Record<string, unknown>
}

/** `data` holds the packed batch (record-batch.ts) in its first `length` bytes. */
export type ToWorker =
  | { type: 'append'; id: number; data: ArrayBuffer; length: number }
  /** Re-read every partition's next offset from the file (another writer wrote meanwhile). */
  | { type: 'reload' }
  | { type: 'close' }

export type FromWorker =
  | { type: 'ready' }
  | { type: 'fatal'; error: WireError }
  /** `placed`: partition and offset of each record of the message, in order. Counters are the thread's totals. */
  | { type: 'done'; id: number; placed: Float64Array; topics: string[]; commits: number; records: number; failedCommits: number }
  | { type: 'failed'; id: number; error: WireError; failedCommits: number }
  | { type: 'closed' }
