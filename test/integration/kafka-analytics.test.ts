import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { exactWindowsScenario, FAST_ANALYTICS } from '../helpers/analytics.js'
import { KILL_ARGS, KillScenarios, readWhole } from '../helpers/analytics-kill.js'
import { ensureBuilt, startChildGateway } from '../helpers/child-gateway.js'
import { kafkaForSuite, kafkaTestsEnabled, START_TIMEOUT_MS } from '../helpers/kafka.js'
import { KafkaEventStream } from '../../src/stream/kafka/kafka-event-stream.js'
import { kafkaOptions } from '../../src/stream/kafka/options.js'
import type { StoredRecord } from '../../src/stream/types.js'

/**
 * Aggregates and alerts on the Kafka backend: the exact-windows scenario with a gateway in this
 * process, and the SIGKILL scenarios with gateway processes (outputs and the alerts topic on Kafka,
 * window state checkpointed in the registry file).
 */
const enabled = kafkaTestsEnabled('aggregates and alerts on Kafka')
const PARTITIONS = 4

describe.skipIf(!enabled)('aggregates and alerts with the Kafka backend', () => {
  let brokers: string[]
  let release: () => Promise<void>
  const run = `an-${Date.now().toString(36)}-${process.pid}`

  beforeAll(async () => {
    ensureBuilt()
    ;({ brokers, release } = await kafkaForSuite())
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    await release?.()
  }, 60_000)

  describe('in this process', () => {
    let gw: TestGateway
    const clients: MqttClient[] = []
    beforeAll(async () => {
      gw = await startTestGateway({
        'stream.backend': 'kafka',
        'stream.kafka.brokers': brokers.join(','),
        'stream.topicPrefix': `${run}.`,
        'stream.partitions': String(PARTITIONS),
        ...FAST_ANALYTICS,
      })
      await waitFor(async () => (await fetch(`${gw.httpUrl}/readyz`)).status === 200, 60_000, 'ready')
    }, START_TIMEOUT_MS)
    afterAll(async () => {
      for (const c of clients) await c.endAsync(true).catch(() => undefined)
      await gw?.stop()
    }, 60_000)

    it('emits exact counts and averages per device per window; a late device does not delay another', { timeout: 90_000 }, async () => {
      await exactWindowsScenario(gw, 'kfk-', clients, `${run}.aggregates`)
    })
  })

  describe('through SIGKILLs', () => {
    let dataDir: string
    let scenarios: KillScenarios
    const prefix = `${run}-kill.`

    beforeAll(() => {
      dataDir = mkdtempSync(join(tmpdir(), 'streamgate-kafka-analytics-kill-'))
      const env = { STREAMGATE_LOG_LEVEL: 'error', STREAMGATE_STREAM_BACKEND: 'kafka', STREAMGATE_KAFKA_BROKERS: brokers.join(',') }
      const args = [...KILL_ARGS, '--set', `stream.topicPrefix=${prefix}`, '--set', `stream.partitions=${PARTITIONS}`]
      scenarios = new KillScenarios({
        dataDir,
        prefix: 'kafka-',
        start: async () => {
          const child = await startChildGateway(dataDir, env, { args })
          await waitFor(async () => (await fetch(`http://127.0.0.1:${child.httpPort}/readyz`)).status === 200, 60_000, 'ready')
          return child
        },
        readTopic: (topic) => readKafkaTopic(brokers, prefix + topic),
      })
    })
    afterAll(async () => {
      await scenarios?.close()
      rmSync(dataDir, { recursive: true, force: true })
    })

    it('emits every window exactly once, with exactly the records of the telemetry topic, across three kills', { timeout: 240_000 }, () => scenarios.windowsExactlyOnce())

    it('raises an alert with for 5 s once across a SIGKILL in the wait, clears it once, and a restart repeats neither', { timeout: 180_000 }, () => scenarios.alertAcrossRestarts())
  })
})

async function readKafkaTopic(brokers: string[], topic: string): Promise<StoredRecord[]> {
  const stream = new KafkaEventStream(kafkaOptions({ brokers, provisionRetryMs: 300 }))
  await stream.start([])
  try {
    return await readWhole(stream, topic)
  } finally {
    await stream.stop()
  }
}
