import { parseArgs } from 'node:util'
import { SimError } from './errors.js'
import { sameApi, type LocalGateway } from './local-gateway.js'
import { loadScenarioFile, parseScenario, parseSourceIps, type Scenario } from './scenario.js'

/**
 * Command-line flags -> a validated Scenario. Flags describe one device group (the common
 * case); --scenario FILE reads groups and events from YAML, and the connection flags given on
 * the command line override the file's.
 */

export const USAGE = `streamgate-sim: a device fleet against a streamgate gateway

  streamgate-sim --devices 100 --rate 1 --duration 30 --api http://127.0.0.1:8080 --token T
  streamgate-sim --scenario fleet.yaml --token T --json report.json --html report.html

fleet       --devices N  --rate MSGS_PER_DEVICE_PER_S  --qos 0|1  --duration S  --ramp CONN_PER_S
payload     --payload TEMPLATE|@FILE  --payload-size BYTES
drivers     --driver mqtt|azure  --transport mqtt|mqttws (azure)  --ca PEM_FILE
gateway     --gateway mqtt://HOST:PORT[,mqtt://HOST2:PORT2...] (devices spread over them)  --hub-host NAME  --api URL  --token T
stream      --data-dir DIR (embedded stream)  --stream-config GATEWAY_CONFIG_FILE (its stream.*, e.g. Kafka)
identities  --prefix sim-  --credentials FILE  --cleanup
scale       --workers K  --source-ips 127.0.0.2-127.0.0.9
commands    --c2d-rate N/s  --method-rate N/s  --method-delay MS  --method-status CODE  --twin-interval S
output      --json FILE  --html FILE  --quiet
scenario    --scenario FILE (YAML: groups with their own driver/rate/qos/payload, events)
`

const FLAGS = {
  devices: { type: 'string' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  qos: { type: 'string' },
  payload: { type: 'string' },
  'payload-size': { type: 'string' },
  ramp: { type: 'string' },
  gateway: { type: 'string' },
  'hub-host': { type: 'string' },
  api: { type: 'string' },
  token: { type: 'string' },
  driver: { type: 'string' },
  transport: { type: 'string' },
  ca: { type: 'string' },
  prefix: { type: 'string' },
  cleanup: { type: 'boolean' },
  json: { type: 'string' },
  html: { type: 'string' },
  workers: { type: 'string' },
  'source-ips': { type: 'string' },
  credentials: { type: 'string' },
  'data-dir': { type: 'string' },
  'stream-config': { type: 'string' },
  scenario: { type: 'string' },
  drain: { type: 'string' },
  'c2d-rate': { type: 'string' },
  'method-rate': { type: 'string' },
  'method-delay': { type: 'string' },
  'method-status': { type: 'string' },
  'twin-interval': { type: 'string' },
  quiet: { type: 'boolean' },
  worker: { type: 'boolean' },
  help: { type: 'boolean' },
} as const

export interface CliOptions {
  scenario: Scenario
  json?: string
  html?: string
  quiet: boolean
  /** What was taken from the local gateway's data directory, to say so at start. */
  notes: string[]
}

const DEFAULT_API = 'http://127.0.0.1:8080'

export type ParsedArgs = { mode: 'help' } | { mode: 'worker' } | { mode: 'run'; options: CliOptions }

function number(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined
  const value = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(value)) throw new SimError('E_SIM_USAGE', `--${flag} needs a number, got "${raw}"`)
  return value
}

/** Drop undefined values so the schema's defaults apply. */
function defined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined))
}

type Values = ReturnType<typeof parseArgs<{ options: typeof FLAGS; args: string[] }>>['values']

export function parseCli(argv: readonly string[], readFile: (file: string) => string, local: LocalGateway | null = null): ParsedArgs {
  let values: Values
  try {
    values = parseArgs({ args: [...argv], options: FLAGS, strict: true }).values
  } catch (err) {
    throw new SimError('E_SIM_USAGE', `${(err as Error).message}\n\n${USAGE}`)
  }
  if (values.help) return { mode: 'help' }
  if (values.worker) return { mode: 'worker' }
  const top = runFlags(values)
  const file = values.scenario ? (loadScenarioFile(values.scenario) as Record<string, unknown>) : null
  const notes = local ? localDefaults(top, file, local) : []
  const scenario = file ? parseScenario({ ...file, ...top }, values.scenario!) : parseScenario({ ...top, groups: [groupFlags(values, readFile)] }, 'command line')
  return { mode: 'run', options: { scenario, ...defined({ json: values.json, html: values.html }), quiet: values.quiet ?? false, notes } }
}

/**
 * A run against the gateway that runs from ./data (its API is the one asked for): its admin token
 * when none is given, and its embedded stream to count loss from when no stream is named.
 */
function localDefaults(top: Record<string, unknown>, file: Record<string, unknown> | null, local: LocalGateway): string[] {
  const api = (top.api ?? file?.api ?? DEFAULT_API) as string
  const notes: string[] = []
  const isLocal = local.httpUrl !== null ? sameApi(local.httpUrl, api) : sameApi(DEFAULT_API, api)
  if (!isLocal) return notes
  if (top.token === undefined && file?.token === undefined && local.token !== null) {
    top.token = local.token
    notes.push(`admin token from ${local.dataDir}/admin-token`)
  }
  const streamNamed = [top.dataDir, top.streamConfig, file?.dataDir, file?.streamConfig].some((v) => v !== undefined)
  if (!streamNamed && local.hasStream && local.httpUrl !== null) {
    top.dataDir = local.dataDir
    notes.push(`counting loss from the embedded stream in ${local.dataDir} (the gateway at ${local.httpUrl} runs there; --data-dir or --stream-config to change)`)
  }
  return notes
}

/** Flags about the run and the gateway: they also override a scenario file. */
function runFlags(values: Values): Record<string, unknown> {
  return defined({
    gateway: values.gateway,
    hubHost: values['hub-host'],
    api: values.api,
    token: values.token ?? process.env.STREAMGATE_ADMIN_TOKEN,
    prefix: values.prefix,
    duration: number(values.duration, 'duration'),
    ramp: number(values.ramp, 'ramp'),
    cleanup: values.cleanup,
    credentials: values.credentials,
    dataDir: values['data-dir'],
    streamConfig: values['stream-config'],
    workers: number(values.workers, 'workers'),
    sourceIps: values['source-ips'] === undefined ? undefined : parseSourceIps(values['source-ips']),
    ca: values.ca,
    drainS: number(values.drain, 'drain'),
    commands: commandFlags(values['c2d-rate'], values['method-rate']),
  })
}

/** Flags describing the one device group of a command-line run. */
function groupFlags(values: Values, readFile: (file: string) => string): Record<string, unknown> {
  const methodsAsked = values['method-rate'] !== undefined || values['method-delay'] !== undefined || values['method-status'] !== undefined
  return defined({
    count: number(values.devices, 'devices') ?? 10,
    rate: number(values.rate, 'rate'),
    qos: number(values.qos, 'qos'),
    payload: values.payload?.startsWith('@') ? readFile(values.payload.slice(1)) : values.payload,
    payloadSize: number(values['payload-size'], 'payload-size'),
    driver: values.driver,
    transport: values.transport,
    behaviour: defined({
      c2d: values['c2d-rate'] === undefined ? undefined : true,
      methods: methodsAsked ? defined({ delayMs: number(values['method-delay'], 'method-delay'), status: number(values['method-status'], 'method-status') }) : undefined,
      twinReportIntervalS: number(values['twin-interval'], 'twin-interval'),
    }),
  })
}

function commandFlags(c2d: string | undefined, methods: string | undefined): Record<string, unknown> | undefined {
  if (c2d === undefined && methods === undefined) return undefined
  return defined({ c2dPerSecond: number(c2d, 'c2d-rate'), methodsPerSecond: number(methods, 'method-rate') })
}
