/**
 * Embedded stream append throughput: `callers` concurrent producers (think devices behind the
 * ingest pipeline) each append records of a 200-byte value plus telemetry-like key and headers in
 * a closed loop (await, append again) until `records` are written, for synchronous NORMAL and FULL.
 * Group commit is what turns many small concurrent appends into few transactions; the figures
 * show how many records each commit carried and what FULL costs.
 *
 *   npm run build && node dist/bench/stream-embedded.js [records=300000] [callers=1000] [recordsPerCall=1]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SqliteEventStream } from '../src/stream/embedded/sqlite-event-stream.js'
import type { OutgoingRecord } from '../src/stream/types.js'

interface Result {
  synchronous: 'NORMAL' | 'FULL'
  recordsPerSecond: number
  commitsPerSecond: number
  recordsPerCommit: number
  p99CallMs: number
}

const TOPIC = 'telemetry'
const PARTITIONS = 8
const VALUE = Buffer.alloc(200, 'x')

async function run(synchronous: 'NORMAL' | 'FULL', records: number, callers: number, perCall: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-bench-'))
  // The config defaults (stream.embedded.*), retention off so it does not run during the measurement.
  const stream = new SqliteEventStream({
    file: join(dir, 'stream.db'),
    synchronous,
    maxBatchRecords: 2000,
    lingerMs: 0,
    retentionHours: 0,
    retentionMaxMiBPerPartition: 0,
    retentionIntervalSeconds: 0,
    pollIntervalMs: 100,
  })
  await stream.start([{ name: TOPIC, partitions: PARTITIONS }])
  const latencies: number[] = []
  let issued = 0

  async function caller(id: number): Promise<void> {
    const deviceId = `device-${String(id).padStart(5, '0')}`
    const batch: OutgoingRecord[] = Array.from({ length: perCall }, () => ({
      key: deviceId,
      value: VALUE,
      headers: { 'device-id': deviceId, 'enqueued-time': String(Date.now()), 'content-type': 'application/json' },
    }))
    while (issued < records) {
      issued += perCall
      const t0 = performance.now()
      await stream.append(TOPIC, batch)
      latencies.push(performance.now() - t0)
    }
  }

  const started = performance.now()
  await Promise.all(Array.from({ length: callers }, (_, i) => caller(i)))
  const seconds = (performance.now() - started) / 1000
  const { commits, records: written } = stream.stats()
  await stream.stop()
  rmSync(dir, { recursive: true, force: true })
  latencies.sort((a, b) => a - b)
  return {
    synchronous,
    recordsPerSecond: Math.round(written / seconds),
    commitsPerSecond: Math.round(commits / seconds),
    recordsPerCommit: Math.round(written / commits),
    p99CallMs: Number(latencies[Math.floor(latencies.length * 0.99)]!.toFixed(2)),
  }
}

async function main(): Promise<void> {
  const [records = 300_000, callers = 1000, perCall = 1] = process.argv.slice(2).map(Number)
  console.log(`embedded stream: ${records} records, ${callers} concurrent callers, ${perCall} record(s) per append(), 200-byte values, ${PARTITIONS} partitions`)
  // One warm-up pass so the JIT and the page cache do not bias the first mode.
  await run('NORMAL', Math.min(records, 50_000), callers, perCall)
  const results: Result[] = []
  for (const mode of ['NORMAL', 'FULL'] as const) results.push(await run(mode, records, callers, perCall))
  console.table(results)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
