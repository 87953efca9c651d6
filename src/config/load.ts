import { readFileSync, existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { configSchema, type GatewayConfig } from './schema.js'
import { GatewayError } from '../errors/catalogue.js'

/**
 * Configuration layers, later wins: config/default.yaml < --config FILE < STREAMGATE_* env <
 * CLI flags. The merged object is validated once against the schema; every problem is listed.
 */

/** Named environment variables for operators and scripts. */
export const ENV_KEYS: Record<string, string> = {
  STREAMGATE_DATA_DIR: 'dataDir',
  STREAMGATE_HOSTNAME: 'hostname',
  STREAMGATE_ADMIN_TOKEN: 'adminToken',
  STREAMGATE_MQTT_HOST: 'mqtt.host',
  STREAMGATE_MQTT_PORT: 'mqtt.port',
  STREAMGATE_HTTP_HOST: 'http.host',
  STREAMGATE_HTTP_PORT: 'http.port',
  STREAMGATE_LOG_LEVEL: 'log.level',
  STREAMGATE_STREAM_BACKEND: 'stream.backend',
  STREAMGATE_TOPIC_PREFIX: 'stream.topicPrefix',
  STREAMGATE_PARTITIONS: 'stream.partitions',
  STREAMGATE_KAFKA_BROKERS: 'stream.kafka.brokers',
  STREAMGATE_STATE_BACKEND: 'state.backend',
  STREAMGATE_POSTGRES_URL: 'state.postgres.url',
  STREAMGATE_KAFKA_CLIENT_ID: 'stream.kafka.clientId',
  STREAMGATE_KAFKA_REPLICATION_FACTOR: 'stream.kafka.replicationFactor',
  STREAMGATE_KAFKA_SSL: 'stream.kafka.ssl.enabled',
  STREAMGATE_KAFKA_SSL_CA_FILE: 'stream.kafka.ssl.caFile',
  STREAMGATE_KAFKA_SSL_CERT_FILE: 'stream.kafka.ssl.certFile',
  STREAMGATE_KAFKA_SSL_KEY_FILE: 'stream.kafka.ssl.keyFile',
  STREAMGATE_KAFKA_SASL_MECHANISM: 'stream.kafka.sasl.mechanism',
  STREAMGATE_KAFKA_SASL_USERNAME: 'stream.kafka.sasl.username',
  STREAMGATE_KAFKA_SASL_PASSWORD: 'stream.kafka.sasl.password',
}

/** Values that must stay strings even when they look like numbers or booleans. */
const STRING_KEYS = new Set([
  'adminToken',
  'hostname',
  'dataDir',
  'stream.topicPrefix',
  'stream.kafka.brokers',
  'stream.kafka.clientId',
  'stream.kafka.ssl.caFile',
  'stream.kafka.ssl.certFile',
  'stream.kafka.ssl.keyFile',
  'stream.kafka.sasl.username',
  'stream.kafka.sasl.password',
])

export interface LoadOptions {
  /** Path given with --config. */
  configFile?: string
  env?: NodeJS.ProcessEnv
  /** Dotted-path overrides from CLI flags, e.g. { 'mqtt.port': '1884' }. */
  overrides?: Record<string, string>
  /** Skip config/default.yaml (tests). */
  skipDefaultFile?: boolean
}

type Tree = Record<string, unknown>

export function defaultConfigPath(): string {
  // dist/src/config/load.js or src/config/load.ts -> <package root>/config/default.yaml
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'config', 'default.yaml')
    if (existsSync(candidate)) return candidate
    dir = dirname(dir)
  }
  return resolve('config', 'default.yaml')
}

export function loadConfig(options: LoadOptions = {}): GatewayConfig {
  const env = options.env ?? process.env
  const problems: string[] = []
  let tree: Tree = {}
  if (!options.skipDefaultFile) tree = merge(tree, readYamlFile(defaultConfigPath(), problems))
  if (options.configFile) tree = merge(tree, readYamlFile(options.configFile, problems))
  for (const [name, value] of Object.entries(env)) {
    // An empty variable counts as unset (`STREAMGATE_ADMIN_TOKEN= streamgate start`).
    if (value === undefined || value === '' || !name.startsWith('STREAMGATE_')) continue
    const path = ENV_KEYS[name] ?? genericEnvPath(name)
    if (path) setPath(tree, path, coerce(path, value))
  }
  for (const [path, value] of Object.entries(options.overrides ?? {})) setPath(tree, path, coerce(path, value))

  const result = configSchema.safeParse(tree)
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(`${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  if (problems.length > 0 || !result.success) {
    throw new GatewayError('E_CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`, { problems })
  }
  return Object.freeze(result.data) as GatewayConfig
}

/** STREAMGATE_LIMITS__MAX_PAYLOAD_BYTES -> limits.maxPayloadBytes */
function genericEnvPath(name: string): string | null {
  const rest = name.slice('STREAMGATE_'.length)
  if (!rest.includes('__')) return null
  return rest
    .split('__')
    .map((part) => part.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()))
    .join('.')
}

function coerce(path: string, raw: string): unknown {
  if (STRING_KEYS.has(path)) return raw
  try {
    const value: unknown = parseYaml(raw)
    return value === null ? raw : value
  } catch {
    return raw
  }
}

function readYamlFile(file: string, problems: string[]): Tree {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    problems.push(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    return {}
  }
  try {
    const value: unknown = parseYaml(text)
    if (value === null || value === undefined) return {}
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`${file}: must hold a mapping of keys`)
      return {}
    }
    return value as Tree
  } catch (err) {
    problems.push(describeYamlError(file, err))
    return {}
  }
}

/**
 * The yaml library's message is "<reason> at line L, column C:" followed by the source line and a
 * caret on lines of their own: keep all of it, reason first, the excerpt indented under it.
 */
export function describeYamlError(file: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const at = /^([\s\S]*?) at line (\d+), column (\d+):\n?([\s\S]*)$/.exec(message)
  if (!at) return `${file}: YAML error: ${message.trim()}`
  const excerpt = at[4]!.split('\n').filter((line) => line.trim() !== '').map((line) => `      ${line}`)
  return [`${file}, line ${at[2]}, column ${at[3]}: YAML error: ${at[1]!.trim()}`, ...excerpt].join('\n')
}

function setPath(tree: Tree, path: string, value: unknown): void {
  const parts = path.split('.')
  let node = tree
  for (const part of parts.slice(0, -1)) {
    const next = node[part]
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[part] = {}
    node = node[part] as Tree
  }
  node[parts[parts.length - 1]!] = value
}

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base }
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key]
    if (isTree(prev) && isTree(value)) out[key] = merge(prev, value)
    else out[key] = value
  }
  return out
}

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Full names of the gateway's stream topics, prefix applied. */
export function topicNames(config: GatewayConfig): { telemetry: string; deviceEvents: string; commands: string; commandFeedback: string; deadLetter: string; alerts: string } {
  const p = config.stream.topicPrefix
  const t = config.stream.topics
  return {
    telemetry: p + t.telemetry,
    deviceEvents: p + t.deviceEvents,
    commands: p + t.commands,
    commandFeedback: p + t.commandFeedback,
    deadLetter: p + t.deadLetter,
    alerts: p + t.alerts,
  }
}
