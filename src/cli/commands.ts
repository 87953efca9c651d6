import { resolve } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { resolveAdminToken } from '../api/admin-token.js'
import { findRunningGateway } from '../app/runtime-file.js'
import type { GatewayConfig } from '../config/schema.js'
import { GatewayError } from '../errors/catalogue.js'
import { COMMON_OPTIONS, UsageError, configFromFlags } from './common.js'
import { apiRequest, devicePath } from './device-admin.js'
import { EXIT_OK, reportError } from './report.js'

/**
 * `streamgate send`, `invoke` and `twin`: the command channel from a shell, through the running
 * gateway's HTTP API on the data directory (cloud-to-device traffic needs the live broker).
 */
const USAGE = `usage:
  streamgate send DEVICE PAYLOAD [--prop k=v]... [--ttl S] [--message-id ID] [--ack none|positive|negative|full]
      queue a cloud-to-device message; prints its message id
  streamgate invoke DEVICE METHOD [PAYLOAD] [--timeout S] [--connect-timeout S]
      call a direct method; PAYLOAD is JSON (or taken as a string); prints {status, payload}
  streamgate twin DEVICE [--set path=value]... [--if-match VERSION]
      print the twin, or patch desired properties (value is JSON or a string; null deletes)

options: --data-dir DIR, --config FILE, --admin-token T, --set key=value   as for start
         (twin uses --set for properties; pass config with --config or STREAMGATE_* variables)`

const OPTIONS = {
  ...COMMON_OPTIONS,
  prop: { type: 'string', multiple: true },
  ttl: { type: 'string' },
  'message-id': { type: 'string' },
  ack: { type: 'string' },
  timeout: { type: 'string' },
  'connect-timeout': { type: 'string' },
  'if-match': { type: 'string' },
} as const satisfies ParseArgsConfig['options']

type Values = ReturnType<typeof parse>['values']

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
}

interface Target {
  call<T>(method: string, path: string, body?: unknown, timeoutMs?: number, headers?: Record<string, string>): Promise<T>
}

async function connect(config: GatewayConfig): Promise<Target> {
  const dataDir = resolve(config.dataDir)
  const running = await findRunningGateway(dataDir)
  if (!running) throw new GatewayError('E_GATEWAY_NOT_RUNNING', `no gateway runs on ${dataDir}; start one with: streamgate start --data-dir ${dataDir}`)
  const token = resolveAdminToken(config).token
  return { call: (method, path, body, timeoutMs = 15_000, headers = {}) => apiRequest(running.httpUrl, token, method, path, body, timeoutMs, headers) }
}

function positiveInt(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} expects whole seconds, got "${text}"`)
  return Number(text)
}

/** JSON when it parses, else the text itself (so `invoke d reboot hello` sends "hello"). */
function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

function keyValue(item: string, flag: string): [string, string] {
  const eq = item.indexOf('=')
  if (eq <= 0) throw new UsageError(`--${flag} expects key=value, got "${item}"`)
  return [item.slice(0, eq), item.slice(eq + 1)]
}

function configOf(values: Values, forTwin: boolean): GatewayConfig {
  // For `twin`, --set carries properties, not config keys.
  return configFromFlags(forTwin ? { ...values, set: undefined } : values)
}

async function send(values: Values, positionals: string[]): Promise<string> {
  const [deviceId, payload, ...extra] = positionals
  if (deviceId === undefined || payload === undefined || extra.length > 0) throw new UsageError('send takes DEVICE and PAYLOAD')
  const body: Record<string, unknown> = { payload }
  if (values.prop) body.properties = Object.fromEntries(values.prop.map((p) => keyValue(p, 'prop')))
  const ttl = positiveInt(values.ttl, 'ttl')
  if (ttl !== undefined) body.ttlSeconds = ttl
  if (values['message-id'] !== undefined) body.messageId = values['message-id']
  if (values.ack !== undefined) body.ack = values.ack
  const target = await connect(configOf(values, false))
  const reply = await target.call<{ messageId: string }>('POST', `${devicePath(deviceId)}/messages`, body)
  return reply.messageId
}

async function invoke(values: Values, positionals: string[]): Promise<string> {
  const [deviceId, method, payload, ...extra] = positionals
  if (deviceId === undefined || method === undefined || extra.length > 0) throw new UsageError('invoke takes DEVICE, METHOD and an optional PAYLOAD')
  const body: Record<string, unknown> = {}
  if (payload !== undefined) body.payload = jsonOrText(payload)
  const timeout = positiveInt(values.timeout, 'timeout')
  const connectTimeout = positiveInt(values['connect-timeout'], 'connect-timeout')
  if (timeout !== undefined) body.responseTimeoutSeconds = timeout
  if (connectTimeout !== undefined) body.connectTimeoutSeconds = connectTimeout
  const target = await connect(configOf(values, false))
  // The HTTP call lasts as long as the gateway may wait for the device, plus a margin.
  const waitMs = ((timeout ?? 30) + (connectTimeout ?? 0) + 10) * 1000
  const reply = await target.call<unknown>('POST', `${devicePath(deviceId)}/methods/${encodeURIComponent(method)}`, body, waitMs)
  return JSON.stringify(reply, null, 2)
}

/** `a.b=1` -> { a: { b: 1 } }; several --set merge into one patch. */
export function twinPatchFromSets(sets: readonly string[]): Record<string, unknown> {
  const patch: Record<string, unknown> = {}
  for (const item of sets) {
    const [path, raw] = keyValue(item, 'set')
    const keys = path.split('.')
    if (keys.some((k) => k === '')) throw new UsageError(`--set path "${path}" has an empty segment`)
    let node = patch
    for (const key of keys.slice(0, -1)) {
      const child = node[key]
      node = (node[key] = typeof child === 'object' && child !== null ? child : {}) as Record<string, unknown>
    }
    node[keys[keys.length - 1]!] = jsonOrText(raw)
  }
  return patch
}

async function twin(values: Values, positionals: string[]): Promise<string> {
  const [deviceId, ...extra] = positionals
  if (deviceId === undefined || extra.length > 0) throw new UsageError('twin takes DEVICE')
  const target = await connect(configOf(values, true))
  const path = `${devicePath(deviceId)}/twin`
  if (!values.set || values.set.length === 0) return JSON.stringify(await target.call<unknown>('GET', path), null, 2)
  const version = values['if-match']
  if (version !== undefined && !/^\d+$/.test(version)) throw new UsageError(`--if-match expects a version number, got "${version}"`)
  const patch = { desired: twinPatchFromSets(values.set) }
  const reply = await target.call<unknown>('PATCH', path, patch, undefined, version === undefined ? {} : { 'if-match': version })
  return JSON.stringify(reply, null, 2)
}

function command(run: (values: Values, positionals: string[]) => Promise<string>): (argv: string[]) => Promise<number> {
  return async (argv) => {
    try {
      const { values, positionals } = parse(argv)
      if (values.help) {
        process.stdout.write(USAGE + '\n')
        return EXIT_OK
      }
      process.stdout.write((await run(values, positionals)) + '\n')
      return EXIT_OK
    } catch (err) {
      return reportError(err, USAGE)
    }
  }
}

export const sendCommand = command(send)
export const invokeCommand = command(invoke)
export const twinCommand = command(twin)
