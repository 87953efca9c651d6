import { parentPort, workerData } from 'node:worker_threads'
import { toGatewayError } from '../../errors/catalogue.js'
import type { AppendResult } from '../types.js'
import { decodeBatch } from './record-batch.js'
import { openStreamDatabase, toStreamError } from './schema.js'
import { StreamStore } from './store.js'
import { GroupCommitWriter } from './writer.js'
import type { ToWorker, FromWorker, WriterThreadConfig } from './writer-protocol.js'

/**
 * The embedded stream's writer thread (started by writer-thread.ts): its own connection to the
 * stream file, the group-commit writer, nothing else. SQLite commits block whichever thread runs
 * them; here they block this one, and the event loop goes on speaking MQTT on the other core.
 *
 * Messages that arrive while a commit runs queue up in the port and go into the next commit
 * together (the writer schedules its commit for the next turn of this thread's loop), so group
 * commit works across the thread boundary as it does within one.
 */
const config = workerData as WriterThreadConfig
const port = parentPort!

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer)
}

let writer: GroupCommitWriter
let store: StreamStore
try {
  const db = openStreamDatabase(config)
  store = new StreamStore(db)
  writer = new GroupCommitWriter(db, store, { maxBatchRecords: config.maxBatchRecords, lingerMs: config.lingerMs, now: Date.now }, () => undefined)
  port.on('message', (message: ToWorker) => {
    if (message.type === 'append') append(message.id, message.data, message.length)
    else if (message.type === 'reload') reload()
    else close(db)
  })
  post({ type: 'ready' })
} catch (err) {
  const e = toStreamError(err, 'cannot open the stream writer')
  post({ type: 'fatal', error: { code: e.code, message: e.message } })
}

function append(id: number, data: ArrayBuffer, length: number): void {
  let pending: Array<Promise<AppendResult[]>>
  try {
    pending = decodeBatch(data, length).map((call) => writer.appendDecoded(store.requireTopic(call.topic), call.records))
  } catch (err) {
    fail(id, err)
    return
  }
  Promise.all(pending).then(
    (results) => {
      const flat = results.flat()
      const placed = new Float64Array(flat.length * 2)
      const topics = new Set<string>()
      flat.forEach((r, i) => {
        placed[2 * i] = r.partition
        placed[2 * i + 1] = r.offset
        topics.add(r.topic)
      })
      const stats = writer.stats()
      post({ type: 'done', id, placed, topics: [...topics], commits: stats.commits, records: stats.records, failedCommits: stats.failedCommits }, [placed.buffer])
    },
    (err: unknown) => fail(id, err),
  )
}

function reload(): void {
  // Everything this thread queued is committed first: offsets are read after its last commit.
  writer.flush()
  try {
    for (const topic of store.allTopics()) store.loadNextOffsets(topic)
  } catch {
    // The file is unreachable: the next commit fails, and a failed commit re-reads the offsets itself.
  }
}

function fail(id: number, err: unknown): void {
  const e = toGatewayError(err, 'E_STREAM_UNAVAILABLE')
  post({ type: 'failed', id, error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) }, failedCommits: writer.stats().failedCommits })
}

function close(db: { close(): void }): void {
  writer.flush()
  // flush() settles every queued call synchronously; their replies are posted before this one.
  setImmediate(() => {
    db.close()
    post({ type: 'closed' })
    port.close()
  })
}
