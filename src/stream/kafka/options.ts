import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import { logLevel, type KafkaConfig, type SASLOptions } from 'kafkajs'
import type { GatewayConfig } from '../../config/schema.js'
import { GatewayError } from '../../errors/catalogue.js'

export type KafkaStreamConfig = GatewayConfig['stream']['kafka']

/** Everything KafkaEventStream needs; `stream.kafka.*` plus the gateway-wide partition count. */
export interface KafkaEventStreamOptions extends KafkaStreamConfig {
  /** Partition count of a TopicSpec that arrives without one (untyped input). Default 1. */
  defaultPartitions?: number
  /** Consumer group heartbeat period in ms. Default sessionTimeoutMs / 5. */
  heartbeatIntervalMs?: number
}

/** The options with every `stream.kafka.*` default, for tests and tools that build one directly. */
export function kafkaOptions(overrides: Partial<KafkaEventStreamOptions> & { brokers: string[] }): KafkaEventStreamOptions {
  return {
    clientId: 'streamgate',
    replicationFactor: 0,
    ssl: { enabled: false, caFile: '', certFile: '', keyFile: '', rejectUnauthorized: true },
    sasl: { mechanism: 'none', username: '', password: '' },
    connectionTimeoutMs: 3000,
    requestTimeoutMs: 10_000,
    appendTimeoutMs: 15_000,
    maxBatchRecords: 10_000,
    lingerMs: 0,
    provisionRetryMs: 2000,
    sessionTimeoutMs: 10_000,
    fetchMaxWaitMs: 500,
    producerThread: true,
    ...overrides,
  }
}

/**
 * kafkajs client settings. Retries stay short on purpose: the ingest pipeline owns retrying (with
 * the device waiting for its PUBACK), so one call must fail within a bounded time instead of
 * retrying inside the client for minutes.
 */
export function kafkaClientConfig(options: KafkaEventStreamOptions): KafkaConfig {
  return {
    clientId: options.clientId,
    brokers: options.brokers,
    connectionTimeout: options.connectionTimeoutMs,
    requestTimeout: options.requestTimeoutMs,
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
    ...tlsConfig(options.ssl),
    ...saslConfig(options.sasl),
    // Connection failures during an outage would be logged several times a second; they are
    // reported instead through health(), append errors and the gateway's metrics.
    logLevel: logLevel.NOTHING,
  }
}

function tlsConfig(ssl: KafkaStreamConfig['ssl']): Pick<KafkaConfig, 'ssl'> {
  if (!ssl.enabled) return {}
  const tls: ConnectionOptions = { rejectUnauthorized: ssl.rejectUnauthorized }
  try {
    if (ssl.caFile) tls.ca = [readFileSync(ssl.caFile, 'utf8')]
    if (ssl.certFile) tls.cert = readFileSync(ssl.certFile, 'utf8')
    if (ssl.keyFile) tls.key = readFileSync(ssl.keyFile, 'utf8')
  } catch (err) {
    throw new GatewayError('E_CONFIG_INVALID', `stream.kafka.ssl: cannot read a PEM file (${(err as NodeJS.ErrnoException).code ?? 'error'})`, {}, { cause: err })
  }
  return { ssl: tls }
}

function saslConfig(sasl: KafkaStreamConfig['sasl']): Pick<KafkaConfig, 'sasl'> {
  if (sasl.mechanism === 'none') return {}
  if (!sasl.username || !sasl.password) {
    // The message names the keys, never their values.
    throw new GatewayError('E_CONFIG_INVALID', `stream.kafka.sasl: mechanism ${sasl.mechanism} needs username and password`)
  }
  const credentials = { username: sasl.username, password: sasl.password }
  const options: SASLOptions =
    sasl.mechanism === 'plain'
      ? { mechanism: 'plain', ...credentials }
      : sasl.mechanism === 'scram-sha-256'
        ? { mechanism: 'scram-sha-256', ...credentials }
        : { mechanism: 'scram-sha-512', ...credentials }
  return { sasl: options }
}

/** The options as they may be logged or shown: the SASL password replaced. */
export function redactedOptions(options: KafkaEventStreamOptions): KafkaEventStreamOptions {
  return { ...options, sasl: { ...options.sasl, password: options.sasl.password ? '[redacted]' : '' } }
}
