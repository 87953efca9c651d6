import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt'
import { loadConfig } from '../../src/config/load.js'
import type { GatewayConfig } from '../../src/config/schema.js'
import { Gateway } from '../../src/app/gateway.js'
import { createLogger } from '../../src/observability/logger.js'
import { generateSasToken } from '../../src/auth/sas.js'
import type { Device } from '../../src/registry/types.js'
import type { StoredRecord } from '../../src/stream/types.js'

export interface TestGateway {
  gateway: Gateway
  config: GatewayConfig
  dataDir: string
  mqttUrl: string
  httpUrl: string
  wsUrl: string
  stop(): Promise<void>
}

/** A real gateway in this process on free loopback ports with a fresh data dir. */
export async function startTestGateway(overrides: Record<string, string> = {}, dataDir?: string): Promise<TestGateway> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'streamgate-test-'))
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      'mqtt.port': '0',
      'http.port': '0',
      adminToken: 'test-admin-token-0123456789',
      'log.level': process.env.TEST_LOG_LEVEL ?? 'silent',
      ...overrides,
    },
  })
  const gateway = new Gateway({ config, logger: createLogger(config.log.level) })
  const a = await gateway.start()
  return {
    gateway,
    config,
    dataDir: dir,
    mqttUrl: `mqtt://127.0.0.1:${a.mqtt.port}`,
    httpUrl: `http://127.0.0.1:${a.http.port}`,
    wsUrl: `ws://127.0.0.1:${a.http.port}/mqtt`,
    stop: async () => {
      await gateway.stop()
      if (!dataDir) rmSync(dir, { recursive: true, force: true })
    },
  }
}

export function sasFor(device: Device, host = 'localhost', ttlSeconds = 3600, key = device.primaryKey): string {
  return generateSasToken({ host, deviceId: device.deviceId, key, expiresAt: Math.floor(Date.now() / 1000) + ttlSeconds })
}

/** IoT Hub style MQTT options for a device (clean session 0, like the Azure SDK). */
export function deviceOptions(deviceId: string, password: string, extra: IClientOptions = {}): IClientOptions {
  return {
    clientId: deviceId,
    username: `localhost/${deviceId}/?api-version=2021-04-12`,
    password,
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 15_000,
    ...extra,
  }
}

export async function connectDevice(url: string, deviceId: string, password: string, extra: IClientOptions = {}): Promise<MqttClient> {
  return connectAsync(url, deviceOptions(deviceId, password, extra))
}

/** Connect and return the CONNACK return code (0 = accepted) or the error text. */
export async function connackCode(url: string, options: IClientOptions): Promise<number> {
  try {
    const client = await connectAsync(url, { reconnectPeriod: 0, connectTimeout: 15_000, protocolVersion: 4, ...options })
    await client.endAsync()
    return 0
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'number') return code
    throw err
  }
}

/** Every record of a topic, all partitions, ordered by partition then offset. */
export async function readAll(gateway: Gateway, topic: string): Promise<StoredRecord[]> {
  const out: StoredRecord[] = []
  for (const p of await gateway.stream.offsets(topic)) {
    let offset = p.low
    while (offset < p.high) {
      const batch = await gateway.stream.read(topic, p.partition, offset, 1000)
      if (batch.length === 0) break
      out.push(...batch)
      offset = batch[batch.length - 1]!.offset + 1
    }
  }
  return out
}

export async function waitFor<T>(probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Every sample of the gateway's /metrics, keyed as printed: `name` or `name{label="value",...}`. */
export async function metricSamples(gw: TestGateway): Promise<Map<string, number>> {
  const text = await (await fetch(`${gw.httpUrl}/metrics`)).text()
  return new Map([...text.matchAll(/^([a-z_][^\s#]*) (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])]))
}
