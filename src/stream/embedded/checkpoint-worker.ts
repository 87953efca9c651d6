import BetterSqlite3 from 'better-sqlite3'
import { parentPort, workerData } from 'node:worker_threads'
import type { CheckpointerConfig, FromCheckpointer } from './checkpointer.js'

/**
 * The embedded stream's checkpoint thread (started by checkpointer.ts): its own connection to the
 * stream file, copying committed WAL pages into the database every `intervalMs` (a PASSIVE
 * checkpoint: it never waits for, nor blocks, the writer or readers). The commits themselves then
 * no longer stop for SQLite's automatic checkpoint, which had held a batch of PUBACKs for
 * milliseconds every thousand pages.
 */
const config = workerData as CheckpointerConfig
const port = parentPort!
const post = (message: FromCheckpointer): void => port.postMessage(message)

let db: BetterSqlite3.Database
try {
  db = new BetterSqlite3(config.file, { fileMustExist: true })
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(config.busyTimeoutMs))}`)
} catch (err) {
  post({ type: 'error', message: `cannot open ${config.file} to checkpoint: ${(err as Error).message}` })
  process.exit(1)
}

let failing = false
function checkpoint(): void {
  try {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>
    if (failing) post({ type: 'recovered' })
    failing = false
    if (result) post({ type: 'checkpointed', walFrames: result.log, copied: result.checkpointed })
  } catch (err) {
    if (!failing) post({ type: 'error', message: `checkpoint failed: ${(err as Error).message}` })
    failing = true
  }
}

const timer = setInterval(checkpoint, config.intervalMs)
port.on('message', (message: { type: 'close' }) => {
  if (message.type !== 'close') return
  clearInterval(timer)
  checkpoint()
  db.close()
  post({ type: 'closed' })
  port.close()
})
post({ type: 'ready' })
