import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { KafkaEventStream } from '../../src/stream/kafka/kafka-event-stream.js'
import { waitFor } from '../helpers/gateway.js'
import { kafkaTestsEnabled, START_TIMEOUT_MS, startLocalKafka, type LocalKafka } from '../helpers/kafka.js'

/** TLS to a real broker listener, configured through the environment as an operator would. */
const enabled = kafkaTestsEnabled('Kafka TLS', { needsLocalBroker: true })

describe.skipIf(!enabled)('KafkaEventStream over TLS', () => {
  let kafka: LocalKafka

  beforeAll(async () => {
    kafka = await startLocalKafka({ tls: true })
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    await kafka?.destroy()
  }, 60_000)

  function streamWith(env: Record<string, string>): KafkaEventStream {
    const config = loadConfig({ skipDefaultFile: true, env: { STREAMGATE_KAFKA_BROKERS: kafka.tlsBrokers.join(','), STREAMGATE_KAFKA_SSL: 'true', ...env } })
    return KafkaEventStream.fromConfig(config.stream.kafka)
  }

  it('appends and reads back over TLS with the CA from STREAMGATE_KAFKA_SSL_CA_FILE', async () => {
    const stream = streamWith({ STREAMGATE_KAFKA_SSL_CA_FILE: kafka.caFile })
    try {
      const topic = `tls-${Date.now().toString(36)}`
      await stream.start([{ name: topic, partitions: 1 }])
      // start() waits 5 s at most for the first provisioning; a loaded broker may need longer.
      await waitFor(() => stream.health().ready, 20_000, 'provisioned over TLS')
      expect(stream.health()).toEqual({ ready: true })
      const [at] = await stream.append(topic, [{ key: 'dev', value: Buffer.from('over tls') }])
      expect((await stream.read(topic, 0, at!.offset, 1))[0]?.value.toString()).toBe('over tls')
    } finally {
      await stream.stop()
    }
  }, 60_000)

  it('refuses a broker certificate it cannot verify: not ready, appends fail with E_STREAM_UNAVAILABLE', async () => {
    const stream = streamWith({ STREAMGATE_STREAM__KAFKA__CONNECTION_TIMEOUT_MS: '1000' })
    try {
      await stream.start([{ name: 'tls-unverified', partitions: 1 }])
      // The first attempt may end otherwise on a loaded machine (a 1 s connection timeout): the
      // retries must come to name the certificate.
      await waitFor(() => /certificate/i.test(stream.health().detail ?? ''), 20_000, 'the certificate failure in health()')
      expect(stream.health().ready).toBe(false)
      expect(stream.health().detail).toMatch(/certificate/i)
      await expect(stream.append('tls-unverified', [{ key: 'k', value: Buffer.from('v') }])).rejects.toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
    } finally {
      await stream.stop()
    }
  }, 60_000)
})
