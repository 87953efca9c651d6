import { resolve } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import mqtt, { type MqttClient } from 'mqtt'
import { resolveAdminToken } from '../api/admin-token.js'
import { findRunningGateway } from '../app/runtime-file.js'
import { generateSasToken } from '../auth/sas.js'
import { GatewayError } from '../errors/catalogue.js'
import { parsePropertyBag } from '../protocol/property-bag.js'
import type { DeviceView } from '../registry/types.js'
import { COMMON_OPTIONS, UsageError, configFromFlags } from './common.js'
import { apiRequest, devicePath } from './device-admin.js'
import { EXIT_OK, reportError } from './report.js'

/**
 * `streamgate device-demo ID`: a device that answers, for trying the command channel from a
 * shell. It connects to the gateway running on the data directory as a registered device (SAS
 * from its primary key, or --password), and prints what it receives: cloud-to-device messages
 * (completed at once, by the PUBACK), direct method calls (answered 200 with what they carried),
 * and the twin's desired properties at connect and on every change. `--every S` also sends a
 * telemetry message every S seconds. The protocol is the device's side of docs/iothub-mqtt.md.
 */
const USAGE = `usage: streamgate device-demo DEVICE [--password P] [--every S] [--method-status N] [--json]

Connects as DEVICE to the gateway running on the data directory and prints what it receives:
  c2d      cloud-to-device messages, with their properties; each is completed at once
  method   direct method calls; each is answered with --method-status (default 200) and
           {"method": NAME, "payload": PAYLOAD}
  desired  the desired properties at connect and every change after
Stops on Ctrl-C.

  --password P        for a device that authenticates with a password (default: a SAS token
                      from the device's primary key, read through the gateway's API)
  --every S           also send telemetry {"seq": n, "temperature": t} every S seconds
  --method-status N   the status method calls are answered with (200..599)
  --json              one JSON object per line instead of text
  --data-dir DIR, --config FILE, --admin-token T, --set key=value   as for start`

const OPTIONS = {
  ...COMMON_OPTIONS,
  password: { type: 'string' },
  every: { type: 'string' },
  'method-status': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options']

const TOKEN_TTL_SECONDS = 24 * 3600
const C2D_PREFIX = (id: string): string => `devices/${id}/messages/devicebound/`

type Event =
  | { kind: 'connected'; deviceId: string; url: string }
  | { kind: 'c2d'; messageId: string | null; properties: Record<string, string | null>; body: string }
  | { kind: 'method'; name: string; payload: unknown; status: number }
  | { kind: 'desired'; version: number | null; desired: unknown; initial: boolean }
  | { kind: 'telemetry'; seq: number }
  | { kind: 'disconnected'; reason: string }

export async function deviceDemoCommand(argv: string[]): Promise<number> {
  let demo: Demo
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
    if (values.help) {
      process.stdout.write(USAGE + '\n')
      return EXIT_OK
    }
    if (positionals.length !== 1) throw new UsageError('device-demo needs exactly one DEVICE')
    const every = values.every === undefined ? null : Number(values.every)
    if (every !== null && !(every >= 0.1 && every <= 3600)) throw new UsageError(`--every expects seconds between 0.1 and 3600, got "${values.every}"`)
    const methodStatus = values['method-status'] === undefined ? 200 : Number(values['method-status'])
    if (!Number.isInteger(methodStatus) || methodStatus < 200 || methodStatus > 599) throw new UsageError(`--method-status expects a status from 200 to 599, got "${values['method-status']}"`)
    const config = configFromFlags(values)
    demo = await Demo.connect({ deviceId: positionals[0]!, dataDir: resolve(config.dataDir), hostname: config.hostname, token: () => resolveAdminToken(config).token, password: values.password, every, methodStatus, json: values.json === true })
  } catch (err) {
    return reportError(err, USAGE)
  }
  await new Promise<void>((done) => {
    process.once('SIGINT', done)
    process.once('SIGTERM', done)
  })
  await demo.stop()
  return EXIT_OK
}

interface DemoOptions {
  deviceId: string
  dataDir: string
  hostname: string
  token: () => string
  password: string | undefined
  every: number | null
  methodStatus: number
  json: boolean
}

class Demo {
  private seq = 0
  private timer: NodeJS.Timeout | null = null
  private readonly pendingTwin = new Set<string>()

  private constructor(
    private readonly client: MqttClient,
    private readonly o: DemoOptions,
  ) {}

  static async connect(o: DemoOptions): Promise<Demo> {
    const running = await findRunningGateway(o.dataDir)
    if (!running) throw new GatewayError('E_GATEWAY_NOT_RUNNING', `no gateway runs on ${o.dataDir}; start one with: streamgate start --data-dir ${o.dataDir}`)
    const device = await apiRequest<DeviceView>(running.httpUrl, o.token(), 'GET', devicePath(o.deviceId), undefined, 15_000)
    const password = credential(device, o)
    const client = await mqtt.connectAsync(running.mqttUrl, {
      clientId: o.deviceId,
      username: `${o.hostname}/${o.deviceId}/?api-version=2021-04-12`,
      password,
      protocolVersion: 4,
      clean: false,
      keepalive: 60,
      // A gateway restart is survived: the session (and queued C2D messages) waits for the device.
      reconnectPeriod: 2000,
      connectTimeout: 10_000,
    })
    const demo = new Demo(client, o)
    client.on('message', (topic, payload) => demo.onMessage(topic, payload))
    try {
      await demo.subscribe()
    } catch (err) {
      await client.endAsync(true)
      throw err
    }
    demo.print({ kind: 'connected', deviceId: o.deviceId, url: running.mqttUrl })
    client.on('close', () => demo.print({ kind: 'disconnected', reason: 'the connection closed; reconnecting' }))
    client.on('connect', () => void demo.subscribe().catch(() => undefined))
    if (o.every !== null) demo.timer = setInterval(() => demo.sendTelemetry(), o.every * 1000)
    return demo
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.client.removeAllListeners('close')
    await this.client.endAsync()
  }

  private async subscribe(): Promise<void> {
    await this.client.subscribeAsync({
      [`${C2D_PREFIX(this.o.deviceId)}#`]: { qos: 1 },
      '$iothub/methods/POST/#': { qos: 0 },
      '$iothub/twin/res/#': { qos: 0 },
      '$iothub/twin/PATCH/properties/desired/#': { qos: 0 },
    })
    // The twin's desired properties as they are now (answered on $iothub/twin/res/200/?$rid=..).
    const rid = `demo-${Date.now()}`
    this.pendingTwin.add(rid)
    await this.client.publishAsync(`$iothub/twin/GET/?$rid=${rid}`, '', { qos: 0 })
  }

  private onMessage(topic: string, payload: Buffer): void {
    const c2d = C2D_PREFIX(this.o.deviceId)
    if (topic.startsWith(c2d)) {
      // mqtt.js has already queued the PUBACK: that is what completes the message.
      const bag = parsePropertyBag(topic.slice(c2d.length))
      const properties: Record<string, string | null> = Object.fromEntries(bag.application)
      for (const [name, value] of Object.entries(bag.system)) properties[`$${name}`] = value ?? null
      return this.print({ kind: 'c2d', messageId: bag.system.messageId ?? null, properties, body: payload.toString('utf8') })
    }
    const rid = /[?&]\$rid=([^&]+)/.exec(topic)?.[1]
    const method = /^\$iothub\/methods\/POST\/([^/?]+)\/?\?/.exec(topic)
    if (method && rid) return this.answerMethod(method[1]!, rid, payload)
    const desired = /^\$iothub\/twin\/PATCH\/properties\/desired\/\?\$version=(\d+)/.exec(topic)
    if (desired) return this.print({ kind: 'desired', version: Number(desired[1]), desired: parseJson(payload), initial: false })
    const twin = /^\$iothub\/twin\/res\/(\d+)\//.exec(topic)
    if (twin && rid && this.pendingTwin.delete(rid) && twin[1] === '200') {
      const doc = parseJson(payload) as { desired?: { $version?: number } } | null
      this.print({ kind: 'desired', version: doc?.desired?.$version ?? null, desired: doc?.desired ?? null, initial: true })
    }
  }

  private answerMethod(name: string, rid: string, payload: Buffer): void {
    const request = parseJson(payload)
    const status = this.o.methodStatus
    this.print({ kind: 'method', name, payload: request, status })
    this.client.publish(`$iothub/methods/res/${status}/?$rid=${rid}`, JSON.stringify({ method: name, payload: request }), { qos: 0 })
  }

  private sendTelemetry(): void {
    if (!this.client.connected) return
    const seq = ++this.seq
    const body = JSON.stringify({ seq, temperature: Math.round((20 + 5 * Math.sin(seq / 10)) * 10) / 10 })
    this.client.publish(`devices/${this.o.deviceId}/messages/events/$.ct=application%2Fjson&$.ce=utf-8`, body, { qos: 1 }, (err) => {
      if (!err) this.print({ kind: 'telemetry', seq })
    })
  }

  private print(event: Event): void {
    process.stdout.write((this.o.json ? JSON.stringify(event) : describe(event)) + '\n')
  }
}

function credential(device: DeviceView, o: DemoOptions): string {
  if (o.password !== undefined) return o.password
  if (device.authMethod === 'password') throw new UsageError(`device ${o.deviceId} authenticates with a password: pass --password`)
  if (device.authMethod !== 'sas') throw new UsageError(`device ${o.deviceId} authenticates with an X.509 certificate; device-demo speaks SAS and passwords (the simulator speaks X.509: docs/simulator.md)`)
  return generateSasToken({ host: o.hostname, deviceId: o.deviceId, key: device.primaryKey, expiresAt: Math.floor(Date.now() / 1000) + TOKEN_TTL_SECONDS })
}

function parseJson(payload: Buffer): unknown {
  const text = payload.toString('utf8')
  if (text === '') return null
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** As is when it holds no control characters (terminal escapes), else as a JSON string. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f-\u009f]/.test(text) ? JSON.stringify(text) : text
}

function describe(e: Event): string {
  switch (e.kind) {
    case 'connected':
      return `connected to ${e.url} as ${e.deviceId}; waiting for messages, method calls and desired changes (Ctrl-C stops)`
    case 'c2d': {
      const props = Object.entries(e.properties).map(([k, v]) => `${k}=${v ?? ''}`).join(' ')
      return `c2d      ${printable(e.body)}${props ? `  [${printable(props)}]` : ''}  (completed)`
    }
    case 'method':
      return `method   ${printable(e.name)}(${JSON.stringify(e.payload)}) answered ${e.status}`
    case 'desired':
      return `desired  ${e.initial ? 'at connect' : 'changed'}${e.version === null ? '' : ` (version ${e.version})`}: ${JSON.stringify(e.desired)}`
    case 'telemetry':
      return `sent     telemetry #${e.seq}`
    case 'disconnected':
      return `         ${e.reason}`
  }
}
