import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { SimError } from './errors.js'
import { DEFAULT_PAYLOAD } from './template.js'

/**
 * A run described as data: where the gateway is, the device groups, and timed events. The CLI
 * flags build a one-group scenario; --scenario FILE reads one from YAML. Validated once, here,
 * with every default inside the schema (as the gateway's own config); a bad file lists every problem.
 */

const methodBehaviour = z.strictObject({
  /** Wait this long before answering, to simulate a slow device. */
  delayMs: z.number().int().min(0).default(0),
  status: z.number().int().min(100).max(599).default(200),
})

const behaviour = z.strictObject({
  /** Subscribe to cloud-to-device messages (PUBACK completes them, IoT Hub MQTT support, "Receiving cloud-to-device messages"). */
  c2d: z.boolean().default(false),
  /** Answer direct methods; absent = not subscribed. */
  methods: methodBehaviour.optional(),
  /** Publish a reported-properties patch this often (0 = never). */
  twinReportIntervalS: z.number().min(0).default(0),
})
export type Behaviour = z.infer<typeof behaviour>

export const groupSchema = z.strictObject({
  name: z.string().min(1).default('devices'),
  count: z.number().int().min(1),
  driver: z.enum(['mqtt', 'azure']).default('mqtt'),
  /** azure driver only: the SDK transport. */
  transport: z.enum(['mqtt', 'mqttws']).default('mqtt'),
  /** Telemetry messages per device per second; 0 = connect only. */
  rate: z.number().min(0).default(1),
  qos: z.union([z.literal(0), z.literal(1)]).default(1),
  payload: z.string().default(DEFAULT_PAYLOAD),
  payloadSize: z.number().int().min(0).default(0),
  /** Application properties (values may hold template generators). */
  properties: z.record(z.string(), z.string()).default({}),
  behaviour: behaviour.default({ c2d: false, twinReportIntervalS: 0 }),
})
  // The SDK publishes telemetry at QoS 1 only (IoT Hub MQTT support, "Sending device-to-cloud messages"); a QoS 0 azure group would be
  // counted as QoS 0 while it is acknowledged, so it is refused.
  .refine((g) => g.driver !== 'azure' || g.qos === 1, { message: 'the azure driver sends QoS 1 only', path: ['qos'] })
export type DeviceGroup = z.infer<typeof groupSchema>

const reconnectStorm = z.strictObject({
  type: z.literal('reconnect-storm'),
  /** Seconds after the start of the run. */
  at: z.number().min(0),
  /** Share of connected devices whose connection is dropped at once. */
  percent: z.number().min(0).max(100),
})
const churn = z.strictObject({
  type: z.literal('churn'),
  from: z.number().min(0).default(0),
  to: z.number().min(0).optional(),
  /** Devices disconnected (and reconnected after their back-off) per second. */
  perSecond: z.number().positive(),
})
export const eventSchema = z.discriminatedUnion('type', [reconnectStorm, churn])
export type ScenarioEvent = z.infer<typeof eventSchema>

export const scenarioSchema = z.strictObject({
  /**
   * The gateway's MQTT URL, or several separated by commas (instances of one scaled-out gateway):
   * devices are spread over them in turn, and an mqtt:// device whose connection is lost or
   * refused tries the next one (a SIGKILLed instance's devices move to the others).
   */
  gateway: z
    .string()
    .default('mqtt://127.0.0.1:1883')
    .refine((v) => gatewayUrls(v).length > 0, 'one URL, or several separated by commas (mqtt://HOST:PORT, mqtts://..., wss://...)')
    .refine((v) => gatewayUrls(v).length === 1 || gatewayUrls(v).every((u) => u.startsWith('mqtt://') || u.startsWith('tcp://')), 'several gateway URLs need mqtt:// (the Azure SDK and TLS drivers keep one)'),
  api: z.string().default('http://127.0.0.1:8080'),
  token: z.string().optional(),
  /** The host name the gateway expects in user names and SAS tokens (its `hostname` config). */
  hubHost: z.string().default('localhost'),
  prefix: z.string().default('sim-'),
  /** Seconds of telemetry after the ramp starts. */
  duration: z.number().positive().default(10),
  /** New connections per second (0 = all at once). */
  ramp: z.number().min(0).default(0),
  cleanup: z.boolean().default(false),
  credentials: z.string().optional(),
  /** Gateway data dir: read the embedded stream for end-to-end latency and loss. */
  dataDir: z.string().optional(),
  /** The gateway's config file: read the stream its `stream.*` section names (e.g. Kafka). */
  streamConfig: z.string().optional(),
  workers: z.number().int().min(1).default(1),
  sourceIps: z.array(z.string()).default([]),
  /** PEM file to trust (azure driver, TLS). */
  ca: z.string().optional(),
  /** Seconds to wait after the run for outstanding PUBACKs and stream records. */
  drainS: z.number().min(0).default(5),
  /** Reconnect back-off: first delay and cap, ms (exponential with full jitter). */
  backoff: z.strictObject({ minMs: z.number().int().min(1).default(100), maxMs: z.number().int().min(1).default(10_000) }).default({ minMs: 100, maxMs: 10_000 }),
  /** The cloud side, through the API: C2D messages and method calls to random devices. */
  commands: z
    .strictObject({
      c2dPerSecond: z.number().min(0).default(0),
      methodsPerSecond: z.number().min(0).default(0),
      methodName: z.string().min(1).default('ping'),
      /** How long a method call waits for its device to be connected and subscribed (API connectTimeoutSeconds). */
      methodConnectTimeoutS: z.number().int().min(0).max(300).default(5),
    })
    .default({ c2dPerSecond: 0, methodsPerSecond: 0, methodName: 'ping', methodConnectTimeoutS: 5 }),
  groups: z.array(groupSchema).min(1),
  events: z.array(eventSchema).default([]),
})
export type Scenario = z.infer<typeof scenarioSchema>

export function parseScenario(input: unknown, origin: string): Scenario {
  const result = scenarioSchema.safeParse(input)
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    throw new SimError('E_SIM_SCENARIO', `invalid scenario (${origin}):\n  - ${problems.join('\n  - ')}`, { problems })
  }
  return result.data
}

export function loadScenarioFile(file: string): unknown {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SimError('E_SIM_SCENARIO', `cannot read scenario ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  try {
    return parseYaml(text) as unknown
  } catch (err) {
    throw new SimError('E_SIM_SCENARIO', `scenario ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
}

/** `127.0.0.2-127.0.0.9` or `127.0.0.2,127.0.0.5` -> the list of addresses (IPv4 ranges in the last octet). */
export function parseSourceIps(text: string): string[] {
  const out: string[] = []
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^(\d+\.\d+\.\d+\.)(\d+)-(?:\d+\.\d+\.\d+\.)?(\d+)$/.exec(part)
    if (!m) {
      out.push(part)
      continue
    }
    const [from, to] = [Number(m[2]), Number(m[3])]
    if (from > to || to > 255) throw new SimError('E_SIM_USAGE', `bad address range ${part}`)
    for (let i = from; i <= to; i++) out.push(`${m[1]}${i}`)
  }
  return out
}

/** The URLs of `scenario.gateway` (a comma-separated list). */
export function gatewayUrls(gateway: string): string[] {
  return gateway.split(',').map((u) => u.trim()).filter((u) => u !== '')
}
