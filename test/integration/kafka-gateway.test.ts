import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Kafka, logLevel, type KafkaMessage } from 'kafkajs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { partitionForKey } from '../../src/stream/partitioner.js'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { CLI, ensureBuilt } from '../helpers/child-gateway.js'
import { kafkaForSuite, kafkaTestsEnabled, START_TIMEOUT_MS } from '../helpers/kafka.js'
import { parseScenario } from '../../device-sim/scenario.js'
import { runSimulation } from '../../device-sim/simulate.js'

/**
 * The gateway on `stream.backend: kafka`, seen from Kafka itself: a plain kafkajs consumer finds
 * the device's telemetry with the device id as key, on murmur2(key) % partitions, with the
 * envelope headers; lifecycle events land on device-events; `streamgate tail` reads the topic.
 */
const enabled = kafkaTestsEnabled('gateway on Kafka')
const run = promisify(execFile)
const PARTITIONS = 5

describe.skipIf(!enabled)('gateway with the Kafka backend', () => {
  let brokers: string[]
  let release: () => Promise<void>
  let gw: TestGateway
  let device: Device
  let client: MqttClient | null = null
  const prefix = `gw-${Date.now().toString(36)}-${process.pid}.`

  beforeAll(async () => {
    ensureBuilt()
    ;({ brokers, release } = await kafkaForSuite())
    gw = await startTestGateway({
      'stream.backend': 'kafka',
      'stream.kafka.brokers': brokers.join(','),
      'stream.topicPrefix': prefix,
      'stream.partitions': String(PARTITIONS),
    })
    device = await gw.gateway.registry.create({ deviceId: 'kafka-gw-device' })
    await waitFor(async () => (await fetch(`${gw.httpUrl}/readyz`)).status === 200, 30_000, 'ready')
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    await client?.endAsync(true).catch(() => undefined)
    await gw?.stop()
    await release?.()
  }, 60_000)

  /** Every message of a topic, read with plain kafkajs (no streamgate code). */
  async function kafkaMessages(topic: string, expected: number): Promise<Array<KafkaMessage & { partition: number }>> {
    const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING })
    const consumer = kafka.consumer({ groupId: `check-${Date.now()}-${Math.random()}`, maxWaitTimeInMs: 100 })
    const got: Array<KafkaMessage & { partition: number }> = []
    await consumer.connect()
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({ eachMessage: async ({ message, partition }) => void got.push({ ...message, partition }) })
      await waitFor(() => got.length >= expected, 45_000, `${expected} messages on ${topic}`)
    } finally {
      await consumer.disconnect()
    }
    return got
  }

  it('writes telemetry as Kafka records: key, murmur2 partition, headers; and lifecycle events', async () => {
    client = await connectDevice(gw.mqttUrl, device.deviceId, sasFor(device))
    for (let i = 0; i < 3; i++) {
      await client.publishAsync(`devices/${device.deviceId}/messages/events/%24.mid=m-${i}&%24.ct=application%2Fjson&unit=c`, `{"n":${i}}`, { qos: 1 })
    }
    const telemetry = await kafkaMessages(`${prefix}telemetry`, 3)
    expect(telemetry.map((m) => m.value?.toString())).toEqual(['{"n":0}', '{"n":1}', '{"n":2}'])
    for (const [i, m] of telemetry.entries()) {
      expect(m.key?.toString()).toBe(device.deviceId)
      expect(m.partition).toBe(partitionForKey(device.deviceId, PARTITIONS))
      expect(m.headers?.['device-id']?.toString()).toBe(device.deviceId)
      expect(m.headers?.['message-id']?.toString()).toBe(`m-${i}`)
      expect(m.headers?.['content-type']?.toString()).toBe('application/json')
      expect(m.headers?.unit?.toString()).toBe('c')
    }
    // The device's `created` event (the registry writes one for every device) comes first.
    const events = await kafkaMessages(`${prefix}device-events`, 2)
    expect(events.some((m) => m.key?.toString() === device.deviceId && m.headers?.['event-type']?.toString() === 'connected')).toBe(true)
  }, 120_000)

  it('streamgate tail reads the Kafka topic', async () => {
    const env = { PATH: process.env.PATH ?? '', STREAMGATE_STREAM_BACKEND: 'kafka', STREAMGATE_KAFKA_BROKERS: brokers.join(','), STREAMGATE_TOPIC_PREFIX: prefix, STREAMGATE_DATA_DIR: gw.dataDir }
    const { stdout } = await run(process.execPath, [CLI, 'tail', 'telemetry', '--from-beginning'], { env, timeout: 30_000 })
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { key: string; value: string; headers: Record<string, string> })
    expect(lines.map((l) => l.headers['message-id'])).toEqual(['m-0', 'm-1', 'm-2'])
    expect(lines.every((l) => l.key === device.deviceId)).toBe(true)
  }, 60_000)

  it('the device simulator reads its records back from Kafka (--stream-config): sent = acked = stored, end-to-end latency', async () => {
    // The gateway's own config file, as a user would hand it to `streamgate-sim --stream-config`.
    const configFile = join(gw.dataDir, 'gateway-kafka.yaml')
    writeFileSync(configFile, `dataDir: ${JSON.stringify(gw.dataDir)}\nstream:\n  backend: kafka\n  topicPrefix: ${JSON.stringify(prefix)}\n  kafka:\n    brokers: ${JSON.stringify(brokers)}\n`)
    const scenario = parseScenario(
      { gateway: gw.mqttUrl, api: gw.httpUrl, token: gw.config.adminToken, streamConfig: configFile, duration: 3, drainS: 10, prefix: 'simkafka-', groups: [{ count: 5, rate: 20, qos: 1 }] },
      'test',
    )
    const report = await runSimulation(scenario)
    const c = report.counts
    expect(report.errors).toEqual({})
    expect(report.lossBasis).toBe('stream')
    expect(c.sent).toBeGreaterThan(100)
    expect(c.acked).toBe(c.sent)
    expect(c.stored).toBe(c.sent)
    expect(c.lost).toBe(0)
    expect(c.duplicated).toBe(0)
    expect(report.latencyMs.e2e.count).toBe(c.sent)
    expect(report.latencyMs.e2e.p50).toBeGreaterThan(0)
    expect(report.latencyMs.e2e.p50).toBeLessThanOrEqual(report.latencyMs.e2e.p99)
  }, 120_000)
})
