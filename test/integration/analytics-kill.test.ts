import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { ensureBuilt, startChildGateway } from '../helpers/child-gateway.js'
import { KILL_ARGS, KillScenarios, readWhole } from '../helpers/analytics-kill.js'
import { SqliteEventStream } from '../../src/stream/embedded/sqlite-event-stream.js'
import type { StoredRecord } from '../../src/stream/types.js'

/** The SIGKILL scenarios of test/helpers/analytics-kill.ts on the embedded stream (Kafka: kafka-analytics.test.ts). */
async function readTopic(dataDir: string, topic: string): Promise<StoredRecord[]> {
  const stream = new SqliteEventStream({
    file: join(dataDir, 'stream.db'), synchronous: 'NORMAL', maxBatchRecords: 1000, lingerMs: 0, retentionHours: 0,
    retentionMaxMiBPerPartition: 0, retentionIntervalSeconds: 0, pollIntervalMs: 50, busyTimeoutMs: 1000,
  })
  await stream.start([])
  try {
    return await readWhole(stream, topic)
  } finally {
    await stream.stop()
  }
}

describe('aggregates and alerts through a SIGKILL (embedded stream)', () => {
  let dataDir: string
  let scenarios: KillScenarios

  beforeAll(() => {
    ensureBuilt()
    dataDir = mkdtempSync(join(tmpdir(), 'streamgate-analytics-kill-'))
    scenarios = new KillScenarios({
      dataDir,
      prefix: '',
      start: () => startChildGateway(dataDir, { STREAMGATE_LOG_LEVEL: 'error' }, { args: KILL_ARGS }),
      readTopic: (topic) => readTopic(dataDir, topic),
    })
  }, 180_000)

  afterAll(async () => {
    await scenarios.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('emits every window exactly once, with exactly the records of the telemetry topic, across three kills', { timeout: 180_000 }, () => scenarios.windowsExactlyOnce())

  it('raises an alert with for 5 s once across a SIGKILL in the wait, clears it once, and a restart repeats neither', { timeout: 120_000 }, () => scenarios.alertAcrossRestarts())
})
