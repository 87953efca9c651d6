import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { LOAD_OPTIONS, loadFromArgs, profileArgs, runClosedLoop } from './lib/closed-loop.js'
import { mqttPort, sasCredentials, seedDevices, startGateway, waitReady } from './lib/sim-bench.js'
import { benchKafka } from './lib/local-kafka.js'
import { producerAlone } from './lib/producer-alone.js'

/**
 * bench/kafka-ingest: the ingest benchmark on the Kafka backend. N devices publish QoS 1 telemetry
 * for a fixed time, each keeping a window of unacknowledged publishes, against the gateway writing
 * to Kafka (its own process); then, in the same run against the same broker, a kafkajs producer
 * alone sends the same records (same keys, headers, partitions, idempotent, acks=all) at full
 * speed with as many records outstanding as the devices keep: the ceiling for this path.
 * Kafka is KAFKA_BROKERS / --brokers, else a local broker from scripts/kafka-local.sh.
 *
 *   npm run bench:kafka -- --devices 200 --seconds 15 --window 8 --payload 200 [--brokers host:port]
 */
const { values } = parseArgs({
  options: {
    ...LOAD_OPTIONS,
    partitions: { type: 'string', default: '8' },
    brokers: { type: 'string', default: process.env.KAFKA_BROKERS ?? '' },
  },
})
const LOAD = loadFromArgs(values)
const { devices: DEVICES, seconds: SECONDS, warmupSeconds: WARMUP, window: WINDOW, payload: PAYLOAD } = LOAD
const PARTITIONS = Number(values.partitions)
const PREFIX = `bench-${Date.now().toString(36)}.`
/** The ids seedDevices gives the fleet, so that the producer alone writes the same keys. */
const deviceId = (i: number): string => `bench-${String(i + 1).padStart(6, '0')}`

interface Result {
  name: string
  messages: number
  seconds: number
  rate: number
  p50: number
  p99: number
  latencyOf: string
}

/** Same load as bench/ingest.ts: a window of unacknowledged QoS 1 publishes per device. */
async function runLoad(name: string, port: number, creds: (i: number) => { clientId: string; username: string; password: string }): Promise<Result> {
  const client = (i: number): ReturnType<typeof creds> & { clean: boolean } => ({ ...creds(i), clean: false })
  const f = await runClosedLoop({ port, ...LOAD, drainMs: 1000, client })
  return { name, messages: f.messages, seconds: f.seconds, rate: f.rate, p50: f.p50, p99: f.p99, latencyOf: 'PUBACK' }
}

async function benchGateway(brokers: string[]): Promise<Result> {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-bench-'))
  const devices = await seedDevices(dataDir, 'bench-', DEVICES)
  const env = { STREAMGATE_STREAM_BACKEND: 'kafka', STREAMGATE_KAFKA_BROKERS: brokers.join(','), STREAMGATE_TOPIC_PREFIX: PREFIX, STREAMGATE_PARTITIONS: String(PARTITIONS) }
  const gateway = await startGateway(dataDir, env, [], profileArgs(values['profile-dir']))
  try {
    // Ready = topics provisioned on Kafka; the load starts only then.
    await waitReady(gateway, 30_000)
    return await runLoad('gateway → Kafka (acks=all, idempotent)', mqttPort(gateway), sasCredentials(devices))
  } finally {
    await gateway.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

async function benchProducer(brokers: string[]): Promise<Result> {
  const r = await producerAlone({ brokers, topic: `${PREFIX}producer-alone`, partitions: PARTITIONS, devices: DEVICES, window: WINDOW, payload: PAYLOAD, seconds: SECONDS, warmupSeconds: WARMUP, deviceId })
  return { name: `kafkajs producer alone (batches of ${r.batchSize})`, messages: r.messages, seconds: r.seconds, rate: r.rate, p50: r.p50Ms, p99: r.p99Ms, latencyOf: 'send' }
}

const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
process.stdout.write(`bench/kafka-ingest: ${DEVICES} devices, QoS 1, window ${WINDOW} per device, ${PAYLOAD.length}-byte payloads, ${PARTITIONS} partitions, ${SECONDS} s measured after ${WARMUP} s warm-up\n`)
const kafka = await benchKafka(values.brokers)
try {
  const gw = await benchGateway(kafka.brokers)
  const alone = await benchProducer(kafka.brokers)
  process.stdout.write('\n| target | msgs/s | p50 ms | p99 ms | latency of | messages |\n|---|---|---|---|---|---|\n')
  for (const r of [gw, alone]) {
    process.stdout.write(`| ${r.name} | ${fmt(r.rate)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.latencyOf} | ${fmt(r.messages)} |\n`)
  }
  process.stdout.write(`\nratio gateway/producer alone: ${fmt(gw.rate / alone.rate, 2)}\n`)
} finally {
  await kafka.release()
}
