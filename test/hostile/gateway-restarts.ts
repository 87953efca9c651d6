import { spawn } from 'node:child_process'
import { loadConfig } from '../../src/config/load.js'
import { createEventStream } from '../../src/app/backends.js'
import type { EventStream, OutgoingRecord, StoredRecord } from '../../src/stream/types.js'
import { startHostileGateway, type HostileGateway, type HostileOptions } from '../helpers/hostile.js'

/**
 * What the outbox and de-duplication hostile tests need beyond test/helpers/hostile.ts: the
 * gateway stopped (or killed) and started again on the same data directory, the stream file read
 * and written by a tool process while no gateway runs, and SQLite's write lock on a file held by
 * another process.
 */

/** Start a hostile gateway on an existing data dir (a restart). */
export function startHostileGatewayIn(dataDir: string, options: HostileOptions = {}): Promise<HostileGateway> {
  return startHostileGateway({ ...options, dataDir })
}

/** The embedded stream of `dataDir` opened as a tool (no retention): to read, or to write while no gateway runs. */
export async function withStream<T>(dataDir: string, use: (stream: EventStream, partitions: number) => Promise<T>): Promise<T> {
  const config = loadConfig({ env: {}, overrides: { dataDir, 'log.level': 'silent' } })
  const stream = createEventStream(config, 'tool')
  await stream.start([])
  try {
    return await use(stream, config.stream.partitions)
  } finally {
    await stream.stop()
  }
}

export async function readTopic(dataDir: string, topic: string): Promise<StoredRecord[]> {
  return withStream(dataDir, async (stream) => {
    const out: StoredRecord[] = []
    const partitions = await stream.offsets(topic).catch(() => [])
    for (const p of partitions) {
      for (let offset = p.low; offset < p.high; ) {
        const batch = await stream.read(topic, p.partition, offset, 5000)
        if (batch.length === 0) break
        out.push(...batch)
        offset = batch[batch.length - 1]!.offset + 1
      }
    }
    return out
  })
}

/** Append to a topic of `dataDir`'s stream, creating it with the configured partitions. Only while no gateway runs there. */
export async function appendOffline(dataDir: string, topic: string, records: OutgoingRecord[]): Promise<void> {
  await withStream(dataDir, async (stream, partitions) => {
    await stream.ensureTopics([{ name: topic, partitions }])
    await stream.append(topic, records)
  })
}

export interface WriteLock {
  release(): Promise<void>
}

/** Another process takes SQLite's write lock on `file` and holds it until released. */
export function holdWriteLock(file: string): Promise<WriteLock> {
  const script = `
    const Database = require('better-sqlite3')
    const db = new Database(process.argv[1])
    db.exec('BEGIN IMMEDIATE')
    process.stdout.write('locked\\n')
    const release = () => { db.exec('ROLLBACK'); db.close(); process.exit(0) }
    process.stdin.once('data', release)
    process.stdin.once('end', release)
    setTimeout(release, 120000).unref()
  `
  const child = spawn(process.execPath, ['-e', script, file], { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () =>
      resolve({
        release: async () => {
          child.stdin.end('release\n')
          await exited
        },
      }),
    )
    child.once('error', reject)
  })
}

/** One sample of the gateway's /metrics (0 when absent). */
export async function metric(gw: HostileGateway, sample: string): Promise<number> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `))
  return line ? Number(line.slice(sample.length + 1)) : 0
}
