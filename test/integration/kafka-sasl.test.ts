import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { KafkaEventStream } from '../../src/stream/kafka/kafka-event-stream.js'
import { kafkaClientConfig, kafkaOptions, redactedOptions } from '../../src/stream/kafka/options.js'
import { waitFor } from '../helpers/gateway.js'
import { kafkaTestsEnabled, START_TIMEOUT_MS, startLocalKafka, type LocalKafka } from '../helpers/kafka.js'

/**
 * SASL against a real broker listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), configured the way an
 * operator does it (environment variables), and the password kept out of everything reported.
 */
const enabled = kafkaTestsEnabled('Kafka SASL', { needsLocalBroker: true })
const PASSWORD = 'sasl-Secret-4711'

describe.skipIf(!enabled)('KafkaEventStream with SASL', () => {
  let kafka: LocalKafka

  beforeAll(async () => {
    kafka = await startLocalKafka({ saslUsers: { streamgate: PASSWORD } })
  }, START_TIMEOUT_MS)

  afterAll(async () => {
    await kafka?.destroy()
  }, 60_000)

  function configFor(mechanism: string, password: string): ReturnType<typeof loadConfig> {
    return loadConfig({
      skipDefaultFile: true,
      env: {
        STREAMGATE_STREAM_BACKEND: 'kafka',
        STREAMGATE_KAFKA_BROKERS: kafka.saslBrokers.join(','),
        STREAMGATE_KAFKA_SASL_MECHANISM: mechanism,
        STREAMGATE_KAFKA_SASL_USERNAME: 'streamgate',
        STREAMGATE_KAFKA_SASL_PASSWORD: password,
        STREAMGATE_STREAM__KAFKA__CONNECTION_TIMEOUT_MS: '1000',
        STREAMGATE_STREAM__KAFKA__PROVISION_RETRY_MS: '300',
      },
    })
  }

  for (const mechanism of ['plain', 'scram-sha-256', 'scram-sha-512']) {
    it(`appends and reads back over SASL ${mechanism}`, async () => {
      const config = configFor(mechanism, PASSWORD)
      expect(config.stream.kafka.sasl).toEqual({ mechanism, username: 'streamgate', password: PASSWORD })
      const stream = KafkaEventStream.fromConfig(config.stream.kafka)
      try {
        const topic = `sasl-${mechanism}-${Date.now().toString(36)}`
        await stream.start([{ name: topic, partitions: 2 }])
        // start() waits 5 s at most for the first provisioning; a loaded broker may need longer.
        await waitFor(() => stream.health().ready, 20_000, 'provisioned over SASL')
        expect(stream.health()).toEqual({ ready: true })
        const [at] = await stream.append(topic, [{ key: 'dev', value: Buffer.from(mechanism) }])
        const [read] = await stream.read(topic, at!.partition, at!.offset, 1)
        expect(read?.value.toString()).toBe(mechanism)
      } finally {
        await stream.stop()
      }
    }, 60_000)
  }

  it('with a wrong password: not ready, appends fail with E_STREAM_UNAVAILABLE, no password in any report', async () => {
    const wrong = 'wrong-Password-0815'
    const config = configFor('scram-sha-512', wrong)
    const stream = KafkaEventStream.fromConfig(config.stream.kafka)
    try {
      await stream.start([{ name: 'sasl-never', partitions: 1 }])
      // The first attempt may end otherwise on a loaded machine (a connection timeout): the
      // retries must come to say that authentication failed.
      const health = await waitFor(() => {
        const h = stream.health()
        return /authenticat|SASL/i.test(h.detail ?? '') ? h : null
      }, 20_000, 'an authentication failure in health()')
      expect(health.ready).toBe(false)
      expect(health.detail).toMatch(/authenticat|SASL/i)
      const err = await stream.append('sasl-never', [{ key: 'k', value: Buffer.from('v') }]).catch((e: unknown) => e)
      expect(err).toMatchObject({ code: 'E_STREAM_UNAVAILABLE' })
      const reported = JSON.stringify([health, String(err), (err as Error).message, redactedOptions(kafkaOptions({ ...config.stream.kafka }))])
      expect(reported).not.toContain(wrong)
      expect(reported).not.toContain(PASSWORD)
      expect(reported).toContain('[redacted]')
    } finally {
      await stream.stop()
    }
  }, 60_000)

  it('rejects SASL without credentials as a configuration error that names no secret', () => {
    const config = loadConfig({ skipDefaultFile: true, env: { STREAMGATE_KAFKA_SASL_MECHANISM: 'plain', STREAMGATE_KAFKA_SASL_USERNAME: 'streamgate' } })
    expect(() => kafkaClientConfig(kafkaOptions({ ...config.stream.kafka }))).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }))
  })
})
