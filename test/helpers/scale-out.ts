import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type IClientOptions, type MqttClient } from 'mqtt'
import { KafkaEventStream } from '../../src/stream/kafka/kafka-event-stream.js'
import { kafkaOptions } from '../../src/stream/kafka/options.js'
import type { StoredRecord } from '../../src/stream/types.js'
import { startChildGateway, type ChildGateway } from './child-gateway.js'
import { api, TOKEN, type ApiResponse } from './commands.js'
import { waitFor } from './gateway.js'
import { readWhole } from './analytics-kill.js'
import { sasToken } from './hostile.js'

/**
 * Several gateway processes acting as one (state.backend postgres, stream.backend kafka), for the
 * scale-out tests: each its own data dir and ports, all on one PostgreSQL schema and one Kafka
 * topic prefix, with short heartbeats so that a killed instance is found dead in about a second.
 */
export interface Instance extends ChildGateway {
  name: string
  dataDir: string
  httpUrl: string
  mqttUrl: string
  call(method: string, path: string, body?: unknown): Promise<ApiResponse>
}

export interface ClusterSettings {
  postgresUrl: string
  schema: string
  brokers: string[]
  topicPrefix: string
  partitions?: number
}

export async function startInstance(name: string, settings: ClusterSettings, extraArgs: string[] = []): Promise<Instance> {
  const dataDir = mkdtempSync(join(tmpdir(), `streamgate-scale-${name}-`))
  const env = {
    STREAMGATE_ADMIN_TOKEN: TOKEN,
    STREAMGATE_LOG_LEVEL: 'warn',
    STREAMGATE_STATE_BACKEND: 'postgres',
    STREAMGATE_POSTGRES_URL: settings.postgresUrl,
    STREAMGATE_STREAM_BACKEND: 'kafka',
    STREAMGATE_KAFKA_BROKERS: settings.brokers.join(','),
  }
  const args = [
    '--set', `state.postgres.schema=${settings.schema}`,
    '--set', `stream.topicPrefix=${settings.topicPrefix}`,
    '--set', `stream.partitions=${settings.partitions ?? 4}`,
    '--set', `cluster.instanceId=${name}`,
    '--set', 'cluster.heartbeatIntervalMs=200',
    '--set', 'cluster.heartbeatTimeoutMs=1500',
    '--set', 'cluster.signalPollMs=250',
    '--set', 'commands.expiryCheckIntervalMs=250',
    ...extraArgs,
  ]
  let child: ChildGateway
  try {
    child = await startChildGateway(dataDir, env, { args })
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true })
    throw err
  }
  const httpUrl = `http://127.0.0.1:${child.httpPort}`
  await waitFor(async () => (await fetch(`${httpUrl}/readyz`).catch(() => null))?.status === 200, 60_000, `instance ${name} ready`)
  return {
    ...child,
    name,
    dataDir,
    httpUrl,
    mqttUrl: `mqtt://127.0.0.1:${child.mqttPort}`,
    call: (method, path, body) => api(httpUrl, method, path, body),
    kill: async (signal) => {
      await child.kill(signal)
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

export async function addDevice(instance: Instance, deviceId: string): Promise<string> {
  const res = await instance.call('POST', '/api/devices', { deviceId })
  if (res.status !== 201) throw new Error(`adding ${deviceId} through ${instance.name}: ${res.status} ${JSON.stringify(res.body)}`)
  return sasToken(deviceId, (res.body as { primaryKey: string }).primaryKey)
}

export function deviceClientOptions(deviceId: string, token: string, extra: IClientOptions = {}): IClientOptions {
  return {
    clientId: deviceId,
    username: `localhost/${deviceId}/?api-version=2021-04-12`,
    password: token,
    protocolVersion: 4,
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: 15_000,
    ...extra,
  }
}

/** Connect with the message handler attached before the CONNACK (a stored session delivers right behind it). */
export function connectWith(url: string, options: IClientOptions, onMessage: (topic: string, payload: Buffer, client: MqttClient, dup: boolean) => void): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = connect(url, options)
    client.on('message', (topic, payload, packet) => onMessage(topic, payload, client, packet.dup === true))
    client.once('connect', () => resolve(client))
    client.once('error', (err) => {
      client.end(true)
      reject(err)
    })
  })
}

/** Resolves once the client's connection closed (or at once if it is closed). */
export function closed(client: MqttClient): Promise<void> {
  if (!client.connected) return Promise.resolve()
  let gone = closing.get(client)
  if (!gone) {
    gone = new Promise((resolve) => client.once('close', () => resolve()))
    closing.set(client, gone)
  }
  return gone
}

const closing = new WeakMap<MqttClient, Promise<void>>()

/** Every record of a Kafka topic, from the start. */
export async function readKafka(brokers: string[], topic: string): Promise<StoredRecord[]> {
  const stream = new KafkaEventStream(kafkaOptions({ brokers, provisionRetryMs: 300 }))
  await stream.start([])
  try {
    return await readWhole(stream, topic)
  } finally {
    await stream.stop()
  }
}

export interface FeedbackRow {
  messageId: string
  deviceId: string
  status: string
  deliveryCount: number
}

export async function feedbackOf(brokers: string[], topicPrefix: string): Promise<FeedbackRow[]> {
  return (await readKafka(brokers, `${topicPrefix}command-feedback`)).map((r) => JSON.parse(r.value.toString()) as FeedbackRow)
}
