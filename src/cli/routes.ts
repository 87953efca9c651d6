import type { ParseArgsConfig } from 'node:util'
import { ROUTE_SOURCES, type EndpointInput, type RouteInput, type RouteSource } from '../routing/definitions.js'
import { COMMON_OPTIONS, UsageError } from './common.js'
import { openRouteAdmin, type RouteAdmin, type RouteTestInput } from './routes-admin.js'
import { formatEndpointList, formatRouteList, formatTestResult } from './routes-output.js'
import { integerFlag, keyValue, oneOf, removedOutput, runSubcommand, type Output, type ParsedValues, type Subcommand } from './subcommands.js'

const SHARED_HELP = `options:
  --json              machine-readable output
  --data-dir DIR, --config FILE, --admin-token T, --set key=value   as for start

When a gateway runs on the data directory the command goes through its HTTP API (it reloads its
routes at once); otherwise it changes the registry file, where a gateway finds it when it starts
or next polls the registry.`

const ROUTES_USAGE = `usage: streamgate routes <command> [options]

commands:
  list                                   every route: source, endpoints, enabled, condition (and
                                         per endpoint matched / undefined-condition counters when
                                         a gateway runs)
  add NAME --endpoint E [--endpoint E2]... [--condition Q]
      [--source telemetry|device-events|twin-changes|alerts] [--disabled]
                                         create or replace a route (a replaced route takes exactly
                                         the flags given: no --condition means "true")
  remove NAME                            delete a route
  test (--condition Q | --route NAME) [--body JSON|TEXT] [--prop k=v]... [--device ID]
      [--content-type T] [--content-encoding E] [--source S] [--endpoint E]
                                         evaluate a condition (or a stored route's) against a sample
                                         message: matched yes/no, the reason, every step, and the
                                         enrichments of the endpoint(s); --body is JSON or else text;
                                         --device reads that device's twin

${SHARED_HELP}`

const ENDPOINTS_USAGE = `usage: streamgate endpoints <command> [options]

commands:
  list                                   every endpoint (and health, counters, lag when a gateway runs)
  add NAME --stream TOPIC [--partitions N]
  add NAME --webhook URL [--auth-header VALUE|-] [--timeout-ms N] [--max-batch N]
      either one also [--max-attempts N] [--backoff-ms N] [--max-backoff-ms N] [--read-batch N]
      [--enrich key=value]...
                                         create or replace an endpoint (prints created/replaced)
  remove NAME                            delete an endpoint no route names

  --auth-header -     read the webhook's Authorization header value from stdin (keeps it out of
                      \`ps\`); it is stored, sent with every POST, and never shown again
  --enrich key=value  a header stamped on every message: a fixed value, $deviceId, $hubName or
                      $twin.tags.x / $twin.properties.desired.x / $twin.properties.reported.x

${SHARED_HELP}`

const OPTIONS = {
  ...COMMON_OPTIONS,
  json: { type: 'boolean' },
  endpoint: { type: 'string', multiple: true },
  condition: { type: 'string' },
  source: { type: 'string' },
  disabled: { type: 'boolean' },
  route: { type: 'string' },
  body: { type: 'string' },
  prop: { type: 'string', multiple: true },
  device: { type: 'string' },
  'content-type': { type: 'string' },
  'content-encoding': { type: 'string' },
  stream: { type: 'string' },
  partitions: { type: 'string' },
  webhook: { type: 'string' },
  'auth-header': { type: 'string' },
  'timeout-ms': { type: 'string' },
  'max-batch': { type: 'string' },
  'max-attempts': { type: 'string' },
  'backoff-ms': { type: 'string' },
  'max-backoff-ms': { type: 'string' },
  'read-batch': { type: 'string' },
  enrich: { type: 'string', multiple: true },
} as const satisfies ParseArgsConfig['options']

type Values = ParsedValues<typeof OPTIONS>
type Action = (admin: RouteAdmin) => Promise<Output>

const ROUTE_COMMANDS: Record<string, Subcommand<RouteAdmin, Values>> = {
  list: {
    takesName: false,
    options: [],
    prepare: () => async (admin) => {
      const { routes } = await admin.list()
      return { human: formatRouteList(routes), json: routes }
    },
  },
  add: { takesName: true, options: ['endpoint', 'condition', 'source', 'disabled'], prepare: prepareRouteAdd },
  remove: { takesName: true, options: [], prepare: (name) => removed('route', name, (admin) => admin.removeRoute(name)) },
  test: { takesName: false, options: ['condition', 'route', 'body', 'prop', 'device', 'content-type', 'content-encoding', 'source', 'endpoint'], prepare: prepareTest },
}

const ENDPOINT_COMMANDS: Record<string, Subcommand<RouteAdmin, Values>> = {
  list: {
    takesName: false,
    options: [],
    prepare: () => async (admin) => {
      const { endpoints } = await admin.list()
      return { human: formatEndpointList(endpoints), json: endpoints }
    },
  },
  add: {
    takesName: true,
    options: ['stream', 'partitions', 'webhook', 'auth-header', 'timeout-ms', 'max-batch', 'max-attempts', 'backoff-ms', 'max-backoff-ms', 'read-batch', 'enrich'],
    prepare: prepareEndpointAdd,
  },
  remove: { takesName: true, options: [], prepare: (name) => removed('endpoint', name, (admin) => admin.removeEndpoint(name)) },
}

/** `streamgate routes ...`: returns the exit code (0 ok, 1 failed, 2 usage). */
export function routesCommand(argv: string[]): Promise<number> {
  return runSubcommand({ group: 'routes', usage: ROUTES_USAGE, options: OPTIONS, table: ROUTE_COMMANDS, open: openRouteAdmin }, argv)
}

/** `streamgate endpoints ...`: returns the exit code (0 ok, 1 failed, 2 usage). */
export function endpointsCommand(argv: string[]): Promise<number> {
  return runSubcommand({ group: 'endpoints', usage: ENDPOINTS_USAGE, options: OPTIONS, table: ENDPOINT_COMMANDS, open: openRouteAdmin }, argv)
}

function prepareRouteAdd(name: string, values: Values): Action {
  const endpoints = values.endpoint ?? []
  if (endpoints.length === 0) throw new UsageError('routes add needs --endpoint E (repeat it for several endpoints)')
  const source = oneOf<RouteSource>('--source', values.source, ROUTE_SOURCES)
  const input: RouteInput = { name, endpoints, enabled: values.disabled !== true, ...(values.condition === undefined ? {} : { condition: values.condition }), ...(source === undefined ? {} : { source }) }
  return async (admin) => {
    const { created, route } = await admin.putRoute(input)
    const human = `${created ? 'Created' : 'Replaced'} route ${name} (${route.source} to ${route.endpoints.join(', ')}${route.enabled ? '' : ', disabled'}).\n`
    return { human, json: { created, route } }
  }
}

function prepareTest(_name: string, values: Values): Action {
  if ((values.condition === undefined) === (values.route === undefined)) throw new UsageError('routes test needs --condition Q or --route NAME (one of them)')
  if (values.route !== undefined && values.source !== undefined) throw new UsageError('--source does not apply with --route (the route has its source)')
  const endpoints = values.endpoint ?? []
  if (endpoints.length > 1) throw new UsageError('routes test takes one --endpoint')
  const source = oneOf<RouteSource>('--source', values.source, ROUTE_SOURCES)
  const message: NonNullable<RouteTestInput['message']> = {
    ...(values.device === undefined ? {} : { deviceId: values.device }),
    ...(values.body === undefined ? {} : { body: sampleBody(values.body) }),
    ...(values.prop === undefined ? {} : { properties: Object.fromEntries(values.prop.map((p) => keyValue(p, 'prop'))) }),
    ...(values['content-type'] === undefined ? {} : { contentType: values['content-type'] }),
    ...(values['content-encoding'] === undefined ? {} : { contentEncoding: values['content-encoding'] }),
  }
  const body: RouteTestInput = {
    ...(values.condition === undefined ? {} : { condition: values.condition }),
    ...(values.route === undefined ? {} : { route: values.route }),
    ...(endpoints[0] === undefined ? {} : { endpoint: endpoints[0] }),
    ...(source === undefined ? {} : { source }),
    message,
  }
  return async (admin) => {
    const result = await admin.test(body)
    return { human: formatTestResult(result), json: result }
  }
}

/** `--body 42` and `--body '{"temp":31}'` are JSON (sent as application/json); anything else is text. */
function sampleBody(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

async function prepareEndpointAdd(name: string, values: Values): Promise<Action> {
  const input = await endpointInput(name, values)
  return async (admin) => {
    const { created, endpoint } = await admin.putEndpoint(input)
    const target = endpoint.type === 'stream' ? `topic ${endpoint.topic}` : `${endpoint.url}${endpoint.hasAuthHeader ? ', with an auth header' : ''}`
    return { human: `${created ? 'Created' : 'Replaced'} ${endpoint.type} endpoint ${name} (${target}).\n`, json: { created, endpoint } }
  }
}

/** The flags as an endpoint definition; ranges are the schema's to check (E_BAD_REQUEST). */
async function endpointInput(name: string, values: Values): Promise<EndpointInput> {
  if ((values.stream === undefined) === (values.webhook === undefined)) throw new UsageError('endpoints add needs --stream TOPIC or --webhook URL (one of them)')
  const common = {
    name,
    enrichments: (values.enrich ?? []).map((item) => {
      const [key, value] = keyValue(item, 'enrich')
      return { key, value }
    }),
    ...integer(values, 'max-attempts', 'maxAttempts'),
    ...integer(values, 'read-batch', 'readBatch'),
    ...integer(values, 'backoff-ms', 'backoffMs'),
    ...integer(values, 'max-backoff-ms', 'maxBackoffMs'),
  }
  if (values.stream !== undefined) {
    for (const flag of ['auth-header', 'timeout-ms', 'max-batch'] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} goes with --webhook, not --stream`)
    }
    return { ...common, type: 'stream', topic: values.stream, ...integer(values, 'partitions', 'partitions') }
  }
  if (values.partitions !== undefined) throw new UsageError('--partitions goes with --stream, not --webhook')
  const authHeader = values['auth-header'] === undefined ? undefined : await readSecret(values['auth-header'])
  return {
    ...common,
    type: 'webhook',
    url: values.webhook!,
    ...(authHeader === undefined ? {} : { authHeader }),
    ...integer(values, 'timeout-ms', 'timeoutMs'),
    ...integer(values, 'max-batch', 'maxBatch'),
  }
}

function integer<K extends string>(values: Values, flag: 'partitions' | 'timeout-ms' | 'max-batch' | 'max-attempts' | 'backoff-ms' | 'max-backoff-ms' | 'read-batch', key: K): Partial<Record<K, number>> {
  return integerFlag(values[flag], flag, key)
}

function removed(kind: 'route' | 'endpoint', name: string, remove: (admin: RouteAdmin) => Promise<void>): Action {
  return async (admin) => {
    await remove(admin)
    return removedOutput(kind, name)
  }
}

/** `--auth-header -` reads it from stdin (one trailing newline dropped), keeping it out of `ps`. */
async function readSecret(value: string): Promise<string> {
  if (value !== '-') return value
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}
