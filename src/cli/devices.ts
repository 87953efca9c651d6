import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { GatewayConfig } from '../config/schema.js'
import { isGatewayError } from '../errors/catalogue.js'
import type { AuthMethod, DeviceView, KeyName } from '../registry/types.js'
import { COMMON_OPTIONS, UsageError, configFromFlags } from './common.js'
import { openDeviceAdmin, type DeviceAdmin } from './device-admin.js'
import { formatDevice, formatDeviceList, formatIssued, toJson } from './devices-output.js'
import { EXIT_OK, reportError } from './report.js'
import { generateSasToken } from '../auth/sas.js'

const USAGE = `usage: streamgate devices <command> [options]

commands:
  add ID [--auth sas|password] [--password P]  register a device and print its connection string
                                               (--password alone implies --auth password)
  add ID --auth x509-thumbprint --thumbprint SHA256   an X.509 device with a (self-signed) certificate
  add ID --auth x509-ca                        an X.509 device whose certificate (CN = ID) is issued
                                               by a CA registered with \`streamgate ca add FILE\`
  list                                         list every device
  show ID                                      show one device, keys included
  remove ID                                    delete a device
  enable ID                                    let the device connect again
  disable ID                                   refuse its connections (a connected one is dropped)
  rotate-key ID [--key primary|secondary|both] replace a key (default primary), print the new string
  set-password ID --password P                 set or replace the device password
  token ID [--ttl S] [--key primary|secondary] print a SAS token for the device (default 3600 s,
                                               primary key), for MQTT clients that take a password

options:
  --password -        read the password from stdin instead of the command line
  --json              machine-readable output
  --data-dir DIR, --config FILE, --hostname H, --admin-token T, --set key=value   as for start

When a gateway runs on the data directory the command goes through its HTTP API (so a removed,
disabled or re-keyed device is disconnected at once); otherwise it changes the registry file.`

const OPTIONS = {
  ...COMMON_OPTIONS,
  auth: { type: 'string' },
  password: { type: 'string' },
  key: { type: 'string' },
  ttl: { type: 'string' },
  thumbprint: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options']

type Values = ReturnType<typeof parse>['values']
type CommandOption = 'auth' | 'password' | 'key' | 'ttl' | 'thumbprint'
interface Output {
  human: string
  json: unknown
}
/** Checked and ready to run: usage problems surface before any file or socket is opened. */
type Action = (admin: DeviceAdmin) => Promise<Output>
type Prepare = (id: string, values: Values, config: GatewayConfig) => Promise<Action>

interface Subcommand {
  takesId: boolean
  options: readonly CommandOption[]
  prepare: Prepare
}

/** Commands that only read: they never create a data directory or a registry file. */
const READS = new Set(['list', 'show', 'token'])

const SUBCOMMANDS: Record<string, Subcommand> = {
  add: { takesId: true, options: ['auth', 'password', 'thumbprint'], prepare: prepareAdd },
  list: { takesId: false, options: [], prepare: async () => listAll },
  show: { takesId: true, options: [], prepare: async (id) => async (admin) => viewOutput(await admin.show(id)) },
  remove: {
    takesId: true,
    options: [],
    prepare: async (id) => async (admin) => {
      await admin.remove(id)
      return { human: `Removed device ${id}.\n`, json: { deviceId: id, removed: true } }
    },
  },
  enable: { takesId: true, options: [], prepare: async (id) => setStatus(id, 'enabled') },
  disable: { takesId: true, options: [], prepare: async (id) => setStatus(id, 'disabled') },
  'rotate-key': { takesId: true, options: ['key'], prepare: prepareRotate },
  'set-password': { takesId: true, options: ['password'], prepare: prepareSetPassword },
  token: { takesId: true, options: ['key', 'ttl'], prepare: prepareToken },
}

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
}

/** `streamgate devices ...`: returns the exit code (0 ok, 1 failed, 2 usage). */
export async function devicesCommand(argv: string[]): Promise<number> {
  let admin: DeviceAdmin | undefined
  try {
    const { values, positionals } = parse(argv)
    if (values.help) {
      process.stdout.write(USAGE + '\n')
      return EXIT_OK
    }
    const [name, ...args] = positionals
    const sub = name !== undefined && Object.hasOwn(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined
    if (!sub) throw new UsageError(name === undefined ? 'missing devices command' : `unknown devices command "${name}"`)
    const id = checkShape(name!, sub, args, values)
    const config = loadConfig(values)
    const action = await sub.prepare(id, values, config)
    admin = await openDeviceAdmin(config, (message) => process.stderr.write(`warning: ${message}\n`), READS.has(name!) ? 'read' : 'write')
    const output = await action(admin)
    process.stdout.write(values.json ? toJson(output.json) : output.human)
    return EXIT_OK
  } catch (err) {
    return reportError(err, USAGE)
  } finally {
    await admin?.close()
  }
}

/** Positional count and option applicability; returns the device id ('' when none is taken). */
function checkShape(name: string, sub: Subcommand, args: string[], values: Values): string {
  const wanted = sub.takesId ? 1 : 0
  if (args.length < wanted) throw new UsageError(`devices ${name} needs a device id`)
  if (args.length > wanted) throw new UsageError(`devices ${name}: unexpected argument "${args[wanted]}"`)
  for (const option of ['auth', 'password', 'key', 'ttl', 'thumbprint'] as const) {
    if (values[option] !== undefined && !sub.options.includes(option)) {
      throw new UsageError(`--${option} does not apply to devices ${name}`)
    }
  }
  return args[0] ?? ''
}

/** A bad --set is a usage problem; a config that fails validation is E_CONFIG_INVALID (exit 1). */
function loadConfig(values: Values): GatewayConfig {
  try {
    return configFromFlags(values)
  } catch (err) {
    if (isGatewayError(err)) throw err
    throw new UsageError((err as Error).message)
  }
}

async function prepareAdd(id: string, values: Values, config: GatewayConfig): Promise<Action> {
  const authMethod = oneOf<AuthMethod>('--auth', values.auth, ['sas', 'password', 'x509-thumbprint', 'x509-ca']) ?? (values.password !== undefined ? 'password' : 'sas')
  if (authMethod === 'password' && values.password === undefined) throw new UsageError('--auth password needs --password')
  if ((authMethod === 'x509-thumbprint') !== (values.thumbprint !== undefined)) throw new UsageError('--thumbprint goes with (and only with) --auth x509-thumbprint')
  const thumbprint = values.thumbprint
  const password = values.password === undefined ? undefined : await readPassword(values.password)
  return async (admin) => {
    const issued = await admin.add({ deviceId: id, authMethod, ...(password === undefined ? {} : { password }), ...(thumbprint === undefined ? {} : { thumbprint }) })
    return { human: formatIssued('Created', issued, config.hostname), json: { ...issued.device, connectionString: issued.connectionString } }
  }
}

async function prepareRotate(id: string, values: Values, config: GatewayConfig): Promise<Action> {
  const which = oneOf<KeyName>('--key', values.key, ['primary', 'secondary', 'both']) ?? 'primary'
  return async (admin) => {
    const issued = await admin.rotateKey(id, which)
    const verb = `Rotated the ${which === 'both' ? 'primary and secondary keys' : `${which} key`} of`
    return { human: formatIssued(verb, issued, config.hostname), json: { ...issued.device, connectionString: issued.connectionString } }
  }
}

/** A SAS token exactly as the Azure SDK makes it, for clients configured by hand (mqtt CLI, ...). */
async function prepareToken(id: string, values: Values, config: GatewayConfig): Promise<Action> {
  const which = oneOf('--key', values.key, ['primary', 'secondary'] as const) ?? 'primary'
  const ttl = values.ttl === undefined ? 3600 : Number(values.ttl)
  if (!Number.isInteger(ttl) || ttl <= 0) throw new UsageError('--ttl expects a positive number of seconds')
  return async (admin) => {
    const device = await admin.show(id)
    if (device.authMethod !== 'sas') throw new UsageError(`device ${id} authenticates with ${device.authMethod === 'password' ? 'a password' : `an X.509 certificate (${device.authMethod})`}, not SAS tokens`)
    const expiresAt = Math.floor(Date.now() / 1000) + ttl
    const key = which === 'primary' ? device.primaryKey : device.secondaryKey
    const token = generateSasToken({ host: config.hostname, deviceId: id, key, expiresAt })
    return { human: token + '\n', json: { deviceId: id, token, expiresAt: new Date(expiresAt * 1000).toISOString() } }
  }
}

async function prepareSetPassword(id: string, values: Values): Promise<Action> {
  if (values.password === undefined) throw new UsageError('devices set-password needs --password')
  const password = await readPassword(values.password)
  return async (admin) => {
    const device = await admin.setPassword(id, password)
    return { human: `Set the password of device ${id}.\n`, json: device }
  }
}

function setStatus(id: string, status: 'enabled' | 'disabled'): Action {
  return async (admin) => {
    const device = await admin.setStatus(id, status)
    return { human: `Device ${id} is ${status}.\n`, json: device }
  }
}

/** Every page, in id order; a page of 1000 is the API's and the registry's largest. */
async function listAll(admin: DeviceAdmin): Promise<Output> {
  const devices: DeviceView[] = []
  let after: string | undefined
  for (;;) {
    const page = await admin.list({ limit: 1000, ...(after === undefined ? {} : { after }) })
    devices.push(...page.devices)
    if (page.next === null) break
    after = page.next
  }
  // Which registry answered goes to stderr, so that stdout stays the table a script can parse.
  if (devices.length > 0) process.stderr.write(`${devices.length} device${devices.length === 1 ? '' : 's'} in ${admin.source}\n`)
  return { human: formatDeviceList(devices, admin.source), json: devices }
}

function viewOutput(device: DeviceView): Output {
  return { human: formatDevice(device), json: device }
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined
  if ((allowed as readonly string[]).includes(value)) return value as T
  throw new UsageError(`${flag} must be one of ${allowed.join(', ')}, got "${value}"`)
}

/** `--password -` reads it from stdin (one trailing newline dropped), keeping it out of `ps`. */
async function readPassword(value: string): Promise<string> {
  if (value !== '-') return value
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}
