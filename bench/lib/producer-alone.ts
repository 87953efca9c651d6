import * as hdr from 'hdr-histogram-js'
import { Kafka, logLevel, type Message } from 'kafkajs'
import { buildTelemetryRecord } from '../../src/ingest/envelope.js'
import { partitionForKey } from '../../src/stream/partitioner.js'

export interface ProducerAloneOptions {
  brokers: string[]
  /** Created here with `partitions` partitions. */
  topic: string
  partitions: number
  devices: number
  /** Records outstanding per device: one request carries devices × window records. */
  window: number
  payload: Buffer
  seconds: number
  warmupSeconds: number
  deviceId: (i: number) => string
}

export interface ProducerAloneResult {
  batchSize: number
  messages: number
  seconds: number
  rate: number
  /** Latency of one send (a whole batch), ms. */
  p50Ms: number
  p99Ms: number
}

/**
 * The ceiling of the gateway's Kafka path: kafkajs alone sending the records the gateway would
 * write (same envelope, keys, headers and partitions; idempotent, acks=all, one request at a
 * time), with as many records outstanding as the devices keep unacknowledged.
 */
export async function producerAlone(o: ProducerAloneOptions): Promise<ProducerAloneResult> {
  const kafka = new Kafka({ brokers: o.brokers, clientId: 'bench-producer', logLevel: logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: o.topic, numPartitions: o.partitions }] })
  await admin.disconnect()
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()
  const batchSize = o.devices * o.window
  let next = 0
  const batch = (): Message[] =>
    Array.from({ length: batchSize }, () => {
      const id = o.deviceId(next++ % o.devices)
      const record = buildTelemetryRecord({ deviceId: id, payload: o.payload, properties: { system: {}, app: [] }, enqueuedAt: Date.now(), retain: false })
      return { key: id, value: record.value, headers: record.headers ?? {}, partition: partitionForKey(id, o.partitions), timestamp: String(record.timestamp) }
    })
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
  let counted = 0
  const run = async (untilNs: bigint, measure: boolean): Promise<void> => {
    while (process.hrtime.bigint() < untilNs) {
      const messages = batch()
      const t0 = process.hrtime.bigint()
      await producer.send({ topic: o.topic, acks: -1, messages })
      if (!measure) continue
      counted += messages.length
      h.recordValue(Number((process.hrtime.bigint() - t0) / 1000n))
    }
  }
  try {
    await run(process.hrtime.bigint() + BigInt(Math.round(o.warmupSeconds * 1e9)), false)
    const t0 = process.hrtime.bigint()
    await run(t0 + BigInt(Math.round(o.seconds * 1e9)), true)
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    return { batchSize, messages: counted, seconds, rate: counted / seconds, p50Ms: h.getValueAtPercentile(50) / 1000, p99Ms: h.getValueAtPercentile(99) / 1000 }
  } finally {
    h.destroy()
    await producer.disconnect()
  }
}
