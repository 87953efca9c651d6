import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { GatewayConfig } from '../config/schema.js'
import { isGatewayError } from '../errors/catalogue.js'
import { COMMON_OPTIONS, UsageError, configFromFlags, type FlagValues } from './common.js'
import { requireRegistry } from './device-admin.js'
import { toJson } from './devices-output.js'
import { EXIT_OK, reportError } from './report.js'

/**
 * The shape shared by `streamgate routes|endpoints|aggregates|alerts`: `<group> <command> [NAME]
 * [options]`, each subcommand naming the options it takes (the common ones and --json go
 * everywhere), usage problems found before any file or socket is opened, and the work done through
 * an admin object (the gateway's API when one runs on the data dir, else the registry file).
 */

export interface Output {
  human: string
  json: unknown
}

export interface Subcommand<Admin, Values> {
  takesName: boolean
  options: readonly string[]
  /** Checked and ready to run: throws UsageError before the admin is opened. */
  prepare: (name: string, values: Values) => ((admin: Admin) => Promise<Output>) | Promise<(admin: Admin) => Promise<Output>>
}

export interface SubcommandGroup<Admin, Options extends NonNullable<ParseArgsConfig['options']>> {
  group: string
  usage: string
  options: Options
  table: Record<string, Subcommand<Admin, ParsedValues<Options>>>
  open: (config: GatewayConfig, warn: (message: string) => void) => Promise<Admin & { close(): Promise<void> }>
}

export type ParsedValues<Options extends NonNullable<ParseArgsConfig['options']>> = ReturnType<typeof parseArgs<{ options: Options; allowPositionals: true; strict: true }>>['values']

/** Subcommands that only read: they never create a registry file (E_NO_DATA instead). */
const READS = new Set(['list', 'rules'])

/** Returns the exit code (0 ok, 1 failed, 2 usage). */
export async function runSubcommand<Admin, Options extends NonNullable<ParseArgsConfig['options']>>(spec: SubcommandGroup<Admin, Options>, argv: string[]): Promise<number> {
  let admin: (Admin & { close(): Promise<void> }) | undefined
  try {
    const { values, positionals } = parseArgs({ args: argv, options: spec.options, allowPositionals: true, strict: true })
    const flags = values as FlagValues
    if (flags.help) {
      process.stdout.write(spec.usage + '\n')
      return EXIT_OK
    }
    const [command, ...args] = positionals
    const sub = command !== undefined && Object.hasOwn(spec.table, command) ? spec.table[command] : undefined
    if (!sub) throw new UsageError(command === undefined ? `missing ${spec.group} command` : `unknown ${spec.group} command "${command}"`)
    const name = checkShape(`${spec.group} ${command!}`, sub, args, flags, Object.keys(spec.options))
    const config = loadConfig(flags)
    const action = await sub.prepare(name, values as ParsedValues<Options>)
    if (READS.has(command!)) requireRegistry(config)
    admin = await spec.open(config, (message) => process.stderr.write(`warning: ${message}\n`))
    const output = await action(admin)
    process.stdout.write(flags.json ? toJson(output.json) : output.human)
    return EXIT_OK
  } catch (err) {
    return reportError(err, spec.usage)
  } finally {
    await admin?.close()
  }
}

/** Positional count and option applicability; returns the NAME ('' when none is taken). */
function checkShape(what: string, sub: { takesName: boolean; options: readonly string[] }, args: string[], values: FlagValues, all: string[]): string {
  const wanted = sub.takesName ? 1 : 0
  if (args.length < wanted) throw new UsageError(`${what} needs a NAME`)
  if (args.length > wanted) throw new UsageError(`${what}: unexpected argument "${args[wanted]}"`)
  for (const option of all) {
    if (Object.hasOwn(COMMON_OPTIONS, option) || option === 'json') continue
    if (values[option] !== undefined && !sub.options.includes(option)) throw new UsageError(`--${option} does not apply to ${what}`)
  }
  return args[0] ?? ''
}

/** A bad --set is a usage problem; a config that fails validation is E_CONFIG_INVALID (exit 1). */
function loadConfig(values: FlagValues): GatewayConfig {
  try {
    return configFromFlags(values)
  } catch (err) {
    if (isGatewayError(err)) throw err
    throw new UsageError((err as Error).message)
  }
}

/** `--flag 123` as a number under `key`, or nothing when the flag is absent. */
export function integerFlag<K extends string>(text: string | undefined, flag: string, key: K): Partial<Record<K, number>> {
  if (text === undefined) return {}
  if (!/^\d+$/.test(text)) throw new UsageError(`--${flag} expects a whole number, got "${text}"`)
  return { [key]: Number(text) } as Partial<Record<K, number>>
}

export function keyValue(item: string, flag: string): [string, string] {
  const eq = item.indexOf('=')
  if (eq <= 0) throw new UsageError(`--${flag} expects key=value, got "${item}"`)
  return [item.slice(0, eq), item.slice(eq + 1)]
}

export function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined
  if ((allowed as readonly string[]).includes(value)) return value as T
  throw new UsageError(`${flag} must be one of ${allowed.join(', ')}, got "${value}"`)
}

export function removedOutput(kind: string, name: string): Output {
  return { human: `Removed ${kind} ${name}.\n`, json: { name, removed: true } }
}
