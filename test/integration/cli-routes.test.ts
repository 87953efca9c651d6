import { execFile, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { SqliteRouteStore } from '../../src/registry/sqlite-route-store.js'
import type { RouteTestResult } from '../../src/routing/route-test.js'
import { api, TOKEN } from '../helpers/commands.js'
import { connectDevice, metricSamples, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { publishJson } from '../helpers/routing.js'

/**
 * `streamgate routes` and `streamgate endpoints` as users run them: the built CLI in a child
 * process, on the registry file when no gateway runs, through the API of a gateway in this
 * process when one does. The build goes to a private dist/ subfolder, as in cli-devices.test.ts.
 */
const ROOT = resolve(import.meta.dirname, '../..')
const OUT = join(ROOT, 'dist', `.test-cli-routes-${process.pid}`)
const MAIN = join(OUT, 'src', 'cli', 'main.js')
const SECRET = 'Bearer s3cret-hook-4f1c'
const HOT = "$body.temp > 30 AND processingPath = 'hot'"

let tmp: string
/** Every stdout and stderr the CLI printed: the webhook secret must be in none of them. */
const printed: string[] = []

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Asynchronous on purpose: in HTTP mode the gateway runs in this process and must answer. */
function cli(dataDir: string, args: string[], input = ''): Promise<Result> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STREAMGATE_')))
  Object.assign(env, { STREAMGATE_DATA_DIR: dataDir, STREAMGATE_ADMIN_TOKEN: TOKEN, STREAMGATE_HOSTNAME: 'routes.example.test' })
  return new Promise((done, fail) => {
    const child = execFile(process.execPath, [MAIN, ...args], { cwd: tmp, env, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err && typeof err.code === 'number' ? err.code : err ? null : 0
      printed.push(stdout, stderr)
      if (err && code === null) fail(err)
      else done({ code, stdout, stderr })
    })
    child.stdin?.end(input)
  })
}

/** Exit 0 and nothing on stderr; returns stdout. */
async function ok(dataDir: string, args: string[], input?: string): Promise<string> {
  const res = await cli(dataDir, args, input)
  expect(res, `${args.join(' ')}\n${res.stderr}`).toMatchObject({ code: 0, stderr: '' })
  return res.stdout
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'streamgate-cli-routes-'))
  // tsc emits even when files outside this feature have type errors; the CLI only needs its own.
  const build = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', OUT], { encoding: 'utf8' })
  if (!existsSync(MAIN)) throw new Error(`build failed:\n${build.stdout}${build.stderr}`)
}, 120_000)

afterAll(async () => {
  await rm(OUT, { recursive: true, force: true })
  await rm(tmp, { recursive: true, force: true })
})

describe('streamgate routes / endpoints on the registry file (no gateway running)', () => {
  let dataDir: string

  beforeAll(() => {
    dataDir = join(tmp, 'offline')
  })

  it('adds a stream endpoint with enrichments, and a webhook whose auth header comes from stdin', async () => {
    expect(await ok(dataDir, ['endpoints', 'add', 'hot', '--stream', 'hot-telemetry', '--partitions', '2', '--enrich', 'site=$twin.tags.building', '--enrich', 'hub=$hubName'])).toBe(
      'Created stream endpoint hot (topic hot-telemetry).\n',
    )
    const args = ['endpoints', 'add', 'hook', '--webhook', 'http://127.0.0.1:9/hook', '--auth-header', '-', '--timeout-ms', '2000', '--max-attempts', '3', '--enrich', 'fixed=v1']
    expect(await ok(dataDir, args, `${SECRET}\n`)).toBe('Created webhook endpoint hook (http://127.0.0.1:9/hook, with an auth header).\n')
    expect(await ok(dataDir, args, `${SECRET}\n`)).toMatch(/^Replaced webhook endpoint hook /)

    const store = new SqliteRouteStore({ file: join(dataDir, 'registry.db') })
    await store.start()
    try {
      const { endpoints } = await store.load()
      expect(endpoints.find((e) => e.name === 'hot')).toMatchObject({ type: 'stream', topic: 'hot-telemetry', partitions: 2, enrichments: [{ key: 'site', value: '$twin.tags.building' }, { key: 'hub', value: '$hubName' }] })
      // One trailing newline dropped, nothing else.
      expect(endpoints.find((e) => e.name === 'hook')).toMatchObject({ type: 'webhook', authHeader: SECRET, timeoutMs: 2000, maxAttempts: 3, enrichments: [{ key: 'fixed', value: 'v1' }] })
    } finally {
      await store.stop()
    }
  })

  it('refuses a stream endpoint writing into the gateway’s own telemetry topic', async () => {
    const res = await cli(dataDir, ['endpoints', 'add', 'loop', '--stream', 'telemetry'])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/^error E_BAD_REQUEST: endpoint\.topic: "telemetry" is a topic the gateway writes itself/)
  })

  it('adds routes, printing created or replaced', async () => {
    expect(await ok(dataDir, ['routes', 'add', 'hot', '--endpoint', 'hot', '--condition', 'true'])).toBe('Created route hot (telemetry to hot).\n')
    expect(await ok(dataDir, ['routes', 'add', 'hot', '--endpoint', 'hot', '--condition', HOT])).toBe('Replaced route hot (telemetry to hot).\n')
    expect(await ok(dataDir, ['routes', 'add', 'events', '--endpoint', 'hook', '--endpoint', 'hot', '--source', 'device-events', '--disabled'])).toBe(
      'Created route events (device-events to hook, hot, disabled).\n',
    )
  })

  it('refuses a broken condition with E_ROUTE_QUERY_INVALID and its column, and a missing endpoint', async () => {
    const broken = await cli(dataDir, ['routes', 'add', 'broken', '--endpoint', 'hot', '--condition', '$body.temp > '])
    expect(broken).toMatchObject({ code: 1, stdout: '' })
    expect(broken.stderr).toMatch(/^error E_ROUTE_QUERY_INVALID: .*column 14/)
    const orphan = await cli(dataDir, ['routes', 'add', 'orphan', '--endpoint', 'nope'])
    expect(orphan.code).toBe(1)
    expect(orphan.stderr).toMatch(/^error E_ENDPOINT_NOT_FOUND: route "orphan" names endpoint "nope"/)
  })

  it('lists routes and endpoints as aligned text and as JSON, showing only whether a webhook has an auth header', async () => {
    const routes = (await ok(dataDir, ['routes', 'list'])).trimEnd().split('\n')
    expect(routes[0]).toMatch(/^ROUTE\s+SOURCE\s+ENABLED\s+ENDPOINTS\s+CONDITION$/)
    expect(routes.slice(1)).toEqual([expect.stringMatching(/^events\s+device-events\s+no\s+hook,hot\s+true$/), expect.stringMatching(new RegExp(`^hot\\s+telemetry\\s+yes\\s+hot\\s+${escape(HOT)}$`))])
    for (const line of routes.slice(1)) expect(line.search(/(yes|no) /)).toBe(routes[0]!.indexOf('ENABLED'))
    const json = JSON.parse(await ok(dataDir, ['routes', 'list', '--json'])) as Array<Record<string, unknown>>
    expect(json).toEqual([
      { name: 'events', source: 'device-events', condition: 'true', endpoints: ['hook', 'hot'], enabled: false },
      { name: 'hot', source: 'telemetry', condition: HOT, endpoints: ['hot'], enabled: true },
    ])

    const endpoints = (await ok(dataDir, ['endpoints', 'list'])).trimEnd().split('\n')
    expect(endpoints[0]).toMatch(/^ENDPOINT\s+TYPE\s+AUTH\s+ENRICHMENTS\s+TARGET$/)
    expect(endpoints.slice(1)).toEqual([
      expect.stringMatching(/^hook\s+webhook\s+set\s+fixed\s+http:\/\/127\.0\.0\.1:9\/hook$/),
      expect.stringMatching(/^hot\s+stream\s+-\s+site,hub\s+topic hot-telemetry \(2 partitions\)$/),
    ])
    const shown = JSON.parse(await ok(dataDir, ['endpoints', 'list', '--json'])) as Array<Record<string, unknown>>
    expect(shown.find((e) => e.name === 'hook')).toMatchObject({ type: 'webhook', hasAuthHeader: true })
    expect(shown.find((e) => e.name === 'hook')).not.toHaveProperty('authHeader')
  })

  it('tests a condition against a sample: matched, not matched, undefined, with the reason and the steps', async () => {
    const yes = await ok(dataDir, ['routes', 'test', '--condition', HOT, '--body', '{"temp":31}', '--prop', 'processingPath=hot'])
    expect(yes).toMatch(/^matched: yes\nvalue: {3}true\nreason: {2}the condition is true: the message is routed\nsteps:\n/)
    expect(yes).toContain('  $body.temp > 30  =>  true\n')
    const no = await ok(dataDir, ['routes', 'test', '--condition', HOT, '--body', '{"temp":20}', '--prop', 'processingPath=hot'])
    expect(no).toMatch(/^matched: no\n/)
    expect(no).toContain('reason:  the condition is false: the message is not routed\n')
    const undef = await ok(dataDir, ['routes', 'test', '--condition', '$body.missing > 3', '--body', '{"temp":1}'])
    expect(undef).toMatch(/^matched: no\nvalue: {3}null\nreason: {2}the condition is undefined/)
    // A text body is no JSON: $body reads nothing, application properties still work.
    const text = JSON.parse(await ok(dataDir, ['routes', 'test', '--condition', "level = 'x' AND $body.temp > 0", '--body', 'not json', '--prop', 'level=x', '--json'])) as RouteTestResult
    expect(text).toMatchObject({ matched: false, value: null })
  })

  it('tests a stored route with the device twin from the registry file and shows the enrichments', async () => {
    const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
    await registry.start()
    try {
      await registry.create({ deviceId: 'dev-43' })
      await registry.patchTwin('dev-43', 'tags', { building: '43' }, { maxBytes: 32 * 1024, maxDepth: 10 })
    } finally {
      await registry.stop()
    }
    const args = ['routes', 'test', '--route', 'hot', '--device', 'dev-43', '--body', '{"temp":35}', '--prop', 'processingPath=hot']
    const human = await ok(dataDir, args)
    expect(human).toMatch(/^matched: yes\n/)
    expect(human).toContain('enrichments:\n  hot: site=43 hub=routes.example.test\n')
    const json = JSON.parse(await ok(dataDir, [...args, '--json'])) as RouteTestResult
    expect(json).toMatchObject({ matched: true, value: true, enrichments: { hot: { site: '43', hub: 'routes.example.test' } } })
    // Without --device no twin is read: the enrichment is left as written (IoT Hub's behaviour).
    const anonymous = JSON.parse(await ok(dataDir, ['routes', 'test', '--route', 'hot', '--body', '{"temp":35}', '--prop', 'processingPath=hot', '--json'])) as RouteTestResult
    expect(anonymous.enrichments.hot).toMatchObject({ site: '$twin.tags.building' })
  })

  it('refuses to remove an endpoint in use; removes routes, then endpoints', async () => {
    const inUse = await cli(dataDir, ['endpoints', 'remove', 'hot'])
    expect(inUse.code).toBe(1)
    expect(inUse.stderr).toMatch(/^error E_ENDPOINT_IN_USE: endpoint "hot" is used by route "(hot|events)"/)
    expect(await ok(dataDir, ['routes', 'remove', 'hot'])).toBe('Removed route hot.\n')
    expect(await ok(dataDir, ['routes', 'remove', 'events'])).toBe('Removed route events.\n')
    expect(await ok(dataDir, ['endpoints', 'remove', 'hot'])).toBe('Removed endpoint hot.\n')
    expect(JSON.parse(await ok(dataDir, ['endpoints', 'remove', 'hook', '--json']))).toEqual({ name: 'hook', removed: true })
    expect(await ok(dataDir, ['routes', 'list'])).toBe('no routes\n')
    expect(await ok(dataDir, ['endpoints', 'list'])).toBe('no endpoints\n')
    const gone = await cli(dataDir, ['routes', 'remove', 'hot'])
    expect(gone.code).toBe(1)
    expect(gone.stderr).toMatch(/^error E_ROUTE_NOT_FOUND: route "hot" not found/)
  })

  it('exits 2 with the usage text when called wrong', async () => {
    for (const args of [
      ['routes'],
      ['routes', 'add', 'r1'],
      ['routes', 'add', '--endpoint', 'e'],
      ['routes', 'test', '--condition', 'true', '--route', 'r1'],
      ['routes', 'test', '--route', 'r1', '--source', 'telemetry'],
      ['routes', 'list', '--webhook', 'http://x'],
      ['routes', 'add', 'r1', '--endpoint', 'e', '--source', 'everything'],
      ['endpoints', 'add', 'e1'],
      ['endpoints', 'add', 'e1', '--stream', 't', '--webhook', 'http://x'],
      ['endpoints', 'add', 'e1', '--stream', 't', '--timeout-ms', '100'],
      ['endpoints', 'add', 'e1', '--webhook', 'http://x', '--partitions', '3'],
      ['endpoints', 'add', 'e1', '--stream', 't', '--partitions', 'many'],
      ['endpoints', 'add', 'e1', '--stream', 't', '--enrich', 'novalue'],
    ]) {
      const res = await cli(dataDir, args)
      expect(res.code, args.join(' ')).toBe(2)
      expect(res.stderr).toContain(`usage: streamgate ${args[0]} <command>`)
    }
    const help = await cli(dataDir, ['endpoints', '--help'])
    expect(help).toMatchObject({ code: 0, stderr: '' })
    expect(help.stdout).toContain('--auth-header -')
    const top = await ok(dataDir, ['--help'])
    expect(top).toMatch(/^ {2}routes +list, add, remove message routes/m)
  })
})

describe('streamgate routes / endpoints through a running gateway’s API', () => {
  let gw: TestGateway
  let dataDir: string
  let device: MqttClient | undefined

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'streamgate-cli-routes-gw-'))
    // Polling the registry at its slowest: a route in force at once can only be the API's reload.
    gw = await startTestGateway({ 'routing.reloadIntervalMs': '300000' }, dataDir)
  })

  afterAll(async () => {
    await device?.endAsync(true).catch(() => undefined)
    await gw?.stop()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('adds an endpoint and a route through the API: the gateway runs the route at once', async () => {
    expect(await ok(dataDir, ['endpoints', 'add', 'hot', '--stream', 'cli-hot'])).toBe('Created stream endpoint hot (topic cli-hot).\n')
    expect(await ok(dataDir, ['routes', 'add', 'hot', '--endpoint', 'hot', '--condition', '$body.temp > 30'])).toBe('Created route hot (telemetry to hot).\n')
    const routes = (await api(gw.httpUrl, 'GET', '/api/routes')).body as { routes: Array<{ name: string }>; endpoints: Array<{ name: string; routes: string[]; lag: Record<string, number> }> }
    expect(routes.routes.map((r) => r.name)).toEqual(['hot'])
    // The service's own view (not the file's): the route runs, with a consumer on telemetry.
    expect(routes.endpoints.find((e) => e.name === 'hot')).toMatchObject({ routes: ['hot'], lag: { telemetry: expect.any(Number) } })
    const samples = await metricSamples(gw)
    expect(samples.get('streamgate_http_requests_total{method="PUT",route="/api/routes/:name",status="201"}')).toBe(1)
    expect(samples.get('streamgate_http_requests_total{method="PUT",route="/api/endpoints/:name",status="201"}')).toBe(1)
    expect(await ok(dataDir, ['routes', 'add', 'hot', '--endpoint', 'hot', '--condition', '$body.temp > 30'])).toBe('Replaced route hot (telemetry to hot).\n')
  })

  it('lists routes with their counters and endpoints with health and lag', async () => {
    const d = await gw.gateway.registry.create({ deviceId: 'cli-dev' })
    device = await connectDevice(gw.mqttUrl, 'cli-dev', sasFor(d))
    await publishJson(device, 'cli-dev', { temp: 35 })
    await publishJson(device, 'cli-dev', { temp: 5 })
    await waitFor(async () => {
      const route = (await api(gw.httpUrl, 'GET', '/api/routes/hot')).body as { matched: Record<string, number> }
      return route.matched.hot === 1
    }, 15_000, 'one matched message')

    const json = JSON.parse(await ok(dataDir, ['routes', 'list', '--json'])) as Array<Record<string, unknown>>
    expect(json).toEqual([{ name: 'hot', source: 'telemetry', condition: '$body.temp > 30', endpoints: ['hot'], enabled: true, matched: { hot: 1 }, undefinedCondition: { hot: 0 } }])
    const text = (await ok(dataDir, ['routes', 'list'])).trimEnd().split('\n')
    expect(text[0]).toMatch(/^ROUTE\s+SOURCE\s+ENABLED\s+ENDPOINTS\s+MATCHED\s+UNDEFINED\s+CONDITION$/)
    expect(text[1]).toMatch(/^hot\s+telemetry\s+yes\s+hot\s+hot=1\s+hot=0\s+\$body\.temp > 30$/)

    const endpoints = JSON.parse(await ok(dataDir, ['endpoints', 'list', '--json'])) as Array<Record<string, unknown>>
    expect(endpoints).toEqual([expect.objectContaining({ name: 'hot', health: 'healthy', routes: ['hot'], delivered: expect.any(Number), lag: { telemetry: expect.any(Number) } })])
    expect((await ok(dataDir, ['endpoints', 'list'])).split('\n')[0]).toMatch(/^ENDPOINT\s+TYPE\s+AUTH\s+ENRICHMENTS\s+HEALTH\s+DELIVERED\s+FAILED\s+DEAD-LETTERED\s+LAG\s+TARGET$/)
  })

  it('tests against the gateway and reports its typed errors', async () => {
    const result = JSON.parse(await ok(dataDir, ['routes', 'test', '--route', 'hot', '--body', '{"temp":31}', '--json'])) as RouteTestResult
    expect(result).toMatchObject({ matched: true, value: true, reason: 'the condition is true: the message is routed' })
    const broken = await cli(dataDir, ['routes', 'add', 'broken', '--endpoint', 'hot', '--condition', '$body.temp > '])
    expect(broken.code).toBe(1)
    expect(broken.stderr).toMatch(/^error E_ROUTE_QUERY_INVALID: .*column 14/)
    const loop = await cli(dataDir, ['endpoints', 'add', 'loop', '--stream', 'telemetry'])
    expect(loop.code).toBe(1)
    expect(loop.stderr).toMatch(/^error E_BAD_REQUEST: endpoint\.topic: "telemetry"/)
    const inUse = await cli(dataDir, ['endpoints', 'remove', 'hot'])
    expect(inUse.stderr).toMatch(/^error E_ENDPOINT_IN_USE: /)
  })

  it('keeps a webhook’s auth header secret through the API too', async () => {
    expect(await ok(dataDir, ['endpoints', 'add', 'hook', '--webhook', 'http://127.0.0.1:9/hook', '--auth-header', '-'], SECRET)).toBe('Created webhook endpoint hook (http://127.0.0.1:9/hook, with an auth header).\n')
    const shown = JSON.parse(await ok(dataDir, ['endpoints', 'list', '--json'])) as Array<Record<string, unknown>>
    expect(shown.find((e) => e.name === 'hook')).toMatchObject({ hasAuthHeader: true })
    expect(await ok(dataDir, ['endpoints', 'remove', 'hook'])).toBe('Removed endpoint hook.\n')
    expect(await ok(dataDir, ['routes', 'remove', 'hot'])).toBe('Removed route hot.\n')
    expect((await api(gw.httpUrl, 'GET', '/api/routes')).body).toMatchObject({ routes: [] })
  })
})

describe('the webhook auth header', () => {
  it('appeared in no output of any command above', () => {
    expect(printed.length).toBeGreaterThan(20)
    for (const text of printed) expect(text).not.toContain('s3cret')
  })
})

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
