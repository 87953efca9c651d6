import type { ParseArgsConfig } from 'node:util'
import { loadConfig } from '../config/load.js'
import type { GatewayConfig } from '../config/schema.js'

/**
 * Flags every command accepts; each maps onto a config key and wins over STREAMGATE_* env
 * variables, which win over --config FILE, which wins over config/default.yaml.
 */
export const COMMON_OPTIONS = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  hostname: { type: 'string' },
  'mqtt-port': { type: 'string' },
  'http-port': { type: 'string' },
  'admin-token': { type: 'string' },
  'log-level': { type: 'string' },
  /** Any config key: --set limits.maxPayloadBytes=1024 (repeatable). */
  set: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

const FLAG_KEYS: Record<string, string> = {
  'data-dir': 'dataDir',
  hostname: 'hostname',
  'mqtt-port': 'mqtt.port',
  'http-port': 'http.port',
  'admin-token': 'adminToken',
  'log-level': 'log.level',
}

export type FlagValues = Record<string, string | boolean | string[] | undefined>

/** Build the validated config from parsed CLI flags (throws GatewayError E_CONFIG_INVALID). */
export function configFromFlags(values: FlagValues, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const overrides: Record<string, string> = {}
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    const v = values[flag]
    if (typeof v === 'string') overrides[key] = v
  }
  const sets = values.set
  for (const item of Array.isArray(sets) ? sets : []) {
    const eq = item.indexOf('=')
    if (eq <= 0) throw new UsageError(`--set expects key=value (for example --set mqtt.port=1884), got "${item}"`)
    overrides[item.slice(0, eq)] = item.slice(eq + 1)
  }
  const configFile = typeof values.config === 'string' ? values.config : env.STREAMGATE_CONFIG
  return loadConfig({ configFile, env, overrides })
}

/** Thrown by commands for a usage problem; main prints it with the usage text and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}
