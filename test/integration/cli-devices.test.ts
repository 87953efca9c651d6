import { execFile, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiServer, type DeviceChange } from '../../src/api/server.js'
import { writeRuntimeFile } from '../../src/app/runtime-file.js'
import { verifyPassword } from '../../src/auth/password.js'
import { createLogger } from '../../src/observability/logger.js'
import { GatewayMetrics } from '../../src/observability/metrics.js'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'

/**
 * `streamgate devices` as users run it: the built CLI in a child process, against a temporary
 * data dir. The build goes to a private dist/ subfolder (node_modules and config/default.yaml are
 * still found upwards from it) so parallel runs and other builds do not disturb it.
 */
const ROOT = resolve(import.meta.dirname, '../..')
const OUT = join(ROOT, 'dist', `.test-cli-${process.pid}`)
const MAIN = join(OUT, 'src', 'cli', 'main.js')
const HOSTNAME = 'cli.example.test'

let tmp: string

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Asynchronous on purpose: in HTTP mode the API server runs in this process and must answer. */
function cli(dataDir: string, args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<Result> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STREAMGATE_')))
  Object.assign(env, { STREAMGATE_DATA_DIR: dataDir, STREAMGATE_HOSTNAME: HOSTNAME }, options.env)
  return new Promise((done, fail) => {
    const child = execFile(process.execPath, [MAIN, ...args], { cwd: tmp, env, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err && typeof err.code === 'number' ? err.code : err ? null : 0
      if (err && code === null) fail(err)
      else done({ code, stdout, stderr })
    })
    child.stdin?.end(options.input ?? '')
  })
}

async function openRegistry(file: string): Promise<SqliteDeviceRegistry> {
  const registry = new SqliteDeviceRegistry({ file })
  await registry.start()
  return registry
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'streamgate-cli-'))
  // tsc emits even when files outside this feature have type errors; the CLI only needs its own.
  const build = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', OUT], { encoding: 'utf8' })
  if (!existsSync(MAIN)) throw new Error(`build failed:\n${build.stdout}${build.stderr}`)
}, 120_000)

afterAll(async () => {
  await rm(OUT, { recursive: true, force: true })
  await rm(tmp, { recursive: true, force: true })
})

describe('streamgate (main)', () => {
  it('prints the version of package.json', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    expect(await cli(tmp, ['--version'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
  })

  it('lists the commands on --help and exits 2 on an unknown command', async () => {
    const help = await cli(tmp, ['--help'])
    expect(help.code).toBe(0)
    for (const command of ['start', 'devices', 'tail']) expect(help.stdout).toContain(`  ${command} `)
    const unknown = await cli(tmp, ['frobnicate'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('unknown command "frobnicate"')
    expect(unknown.stderr).toContain('usage: streamgate <command>')
  })
})

describe('streamgate devices, registry file (no gateway running)', () => {
  let dataDir: string
  const registryFile = (): string => join(dataDir, 'registry.db')

  beforeAll(() => {
    dataDir = join(tmp, 'local-data')
  })

  it('adds a SAS device and prints its connection string', async () => {
    const res = await cli(dataDir, ['devices', 'add', 'dev1'])
    expect(res).toMatchObject({ code: 0, stderr: '' })
    const registry = await openRegistry(registryFile())
    try {
      const device = await registry.get('dev1')
      expect(res.stdout).toContain(`\nHostName=${HOSTNAME};DeviceId=dev1;SharedAccessKey=${device!.primaryKey}\n`)
    } finally {
      await registry.stop()
    }
  })

  it('adds a password device (password from stdin) and prints a note instead', async () => {
    const res = await cli(dataDir, ['devices', 'add', 'meter-7', '--auth', 'password', '--password', '-'], { input: 'pässword\n' })
    expect(res.code).toBe(0)
    expect(res.stdout).toContain('Created device meter-7 (password, enabled)')
    expect(res.stdout).not.toContain('SharedAccessKey')
    const registry = await openRegistry(registryFile())
    try {
      expect(await verifyPassword('pässword', (await registry.get('meter-7'))!.passwordHash!)).toBe(true)
    } finally {
      await registry.stop()
    }
  })

  it('lists devices as aligned text and as JSON', async () => {
    const text = await cli(dataDir, ['devices', 'list'])
    expect(text.code).toBe(0)
    const lines = text.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^DEVICE ID\s+STATUS\s+AUTH\s+CONNECTION\s+LAST ACTIVITY$/)
    // Which registry answered, on stderr (stdout stays the table).
    expect(text.stderr).toContain(`2 devices in the registry file ${join(dataDir, 'registry.db')}`)
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      ['dev1', 'enabled', 'sas'],
      ['meter-7', 'enabled', 'password'],
    ])
    // Aligned: every row's status starts in the STATUS column.
    for (const line of lines.slice(1)) expect(line.indexOf('enabled')).toBe(lines[0]!.indexOf('STATUS'))
    const json = await cli(dataDir, ['devices', 'list', '--json'])
    expect((JSON.parse(json.stdout) as Array<{ deviceId: string }>).map((d) => d.deviceId)).toEqual(['dev1', 'meter-7'])
  })

  it('shows a device as text and JSON, without the password hash', async () => {
    const text = await cli(dataDir, ['devices', 'show', 'meter-7'])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^device id:\s+meter-7$/m)
    expect(text.stdout).toMatch(/^password:\s+set$/m)
    const json = JSON.parse((await cli(dataDir, ['devices', 'show', 'meter-7', '--json'])).stdout) as Record<string, unknown>
    expect(json).toMatchObject({ deviceId: 'meter-7', authMethod: 'password', hasPassword: true })
    expect(json).not.toHaveProperty('passwordHash')
  })

  it('disables, enables, rotates keys, sets a password and removes', async () => {
    const registry = await openRegistry(registryFile())
    try {
      expect((await cli(dataDir, ['devices', 'disable', 'dev1'])).code).toBe(0)
      expect((await registry.get('dev1'))?.status).toBe('disabled')
      expect((await cli(dataDir, ['devices', 'enable', 'dev1'])).code).toBe(0)
      expect((await registry.get('dev1'))?.status).toBe('enabled')

      const before = (await registry.get('dev1'))!
      const rotated = await cli(dataDir, ['devices', 'rotate-key', 'dev1', '--key', 'both'])
      expect(rotated.code).toBe(0)
      const after = (await registry.get('dev1'))!
      expect(after.primaryKey).not.toBe(before.primaryKey)
      expect(after.secondaryKey).not.toBe(before.secondaryKey)
      expect(rotated.stdout).toContain(`SharedAccessKey=${after.primaryKey}`)

      expect((await cli(dataDir, ['devices', 'set-password', 'dev1', '--password', 'n3w'])).code).toBe(0)
      expect(await verifyPassword('n3w', (await registry.get('dev1'))!.passwordHash!)).toBe(true)

      expect(await cli(dataDir, ['devices', 'remove', 'dev1'])).toMatchObject({ code: 0, stdout: 'Removed device dev1.\n' })
      expect(await registry.get('dev1')).toBeNull()
    } finally {
      await registry.stop()
    }
  })

  it.each([
    [['add', 'bad id'], 'E_DEVICE_ID_INVALID'],
    [['add', 'meter-7'], 'E_DEVICE_EXISTS'],
    [['show', 'ghost'], 'E_DEVICE_NOT_FOUND'],
    [['remove', 'ghost'], 'E_DEVICE_NOT_FOUND'],
    [['disable', 'ghost'], 'E_DEVICE_NOT_FOUND'],
  ])('devices %j fails with exit 1 and %s', async (args, code) => {
    const res = await cli(dataDir, ['devices', ...args])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(new RegExp(`^error ${code}: `))
    expect(res.stdout).toBe('')
  })

  it.each([
    [[], 'missing devices command'],
    [['frobnicate'], 'unknown devices command'],
    [['add'], 'needs a device id'],
    [['add', 'a', 'b'], 'unexpected argument'],
    [['add', 'x', '--auth', 'magic'], '--auth must be one of'],
    [['add', 'x', '--auth', 'password'], 'needs --password'],
    [['rotate-key', 'x', '--key', 'third'], '--key must be one of'],
    [['set-password', 'x'], 'needs --password'],
    [['list', '--key', 'primary'], 'does not apply'],
    [['list', '--colour'], 'Unknown option'],
  ])('devices %j is a usage error (exit 2)', async (args, message) => {
    const res = await cli(dataDir, ['devices', ...args])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain(message)
    expect(res.stderr).toContain('usage: streamgate devices')
    // The message, the synopsis and where the rest is: not the whole 24-line help.
    expect(res.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(6)
    expect(res.stderr).toContain('run "streamgate devices --help" for every option')
  })

  it('uses the registry file when gateway.json names a dead process', async () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid!
    writeRuntimeFile(dataDir, { pid: dead, httpUrl: 'http://127.0.0.1:9', mqttUrl: 'mqtt://127.0.0.1:9', startedAt: new Date().toISOString() })
    const res = await cli(dataDir, ['devices', 'add', 'after-crash'])
    expect(res).toMatchObject({ code: 0, stderr: '' })
    const registry = await openRegistry(registryFile())
    try {
      expect(await registry.get('after-crash')).not.toBeNull()
    } finally {
      await registry.stop()
    }
  })
})

describe('streamgate devices, through a running gateway’s API', () => {
  const TOKEN = 'cli-test-admin-token-93c1d0b7'
  const API_HOSTNAME = 'gateway.example.test'
  let dataDir: string
  let registry: SqliteDeviceRegistry
  let metrics: GatewayMetrics
  let app: FastifyInstance
  const changes: Array<[string, DeviceChange]> = []

  beforeAll(async () => {
    dataDir = join(tmp, 'http-data')
    // The API's registry lives elsewhere: a device appearing there can only have come through HTTP.
    registry = await openRegistry(join(tmp, 'api-registry', 'registry.db'))
    metrics = new GatewayMetrics({ defaultMetrics: false })
    app = await createApiServer({
      registry,
      metrics,
      logger: createLogger('silent'),
      adminToken: TOKEN,
      hostname: API_HOSTNAME,
      readiness: () => ({ ready: true, checks: {} }),
      onDeviceChanged: (id, change) => void changes.push([id, change]),
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const port = (app.server.address() as AddressInfo).port
    await mkdir(dataDir, { recursive: true })
    await writeFile(join(dataDir, 'admin-token'), `${TOKEN}\n`, { mode: 0o600 })
    writeRuntimeFile(dataDir, { pid: process.pid, httpUrl: `http://127.0.0.1:${port}`, mqttUrl: 'mqtt://127.0.0.1:1883', startedAt: new Date().toISOString() })
  })

  afterAll(async () => {
    await app?.close()
    await registry?.stop()
  })

  it('adds a device through the API, with the gateway’s host name in the connection string', async () => {
    const res = await cli(dataDir, ['devices', 'add', 'via-http', '--json'])
    expect(res.code).toBe(0)
    const printed = JSON.parse(res.stdout) as { connectionString: string; primaryKey: string }
    const device = await registry.get('via-http')
    expect(device?.primaryKey).toBe(printed.primaryKey)
    expect(printed.connectionString).toBe(`HostName=${API_HOSTNAME};DeviceId=via-http;SharedAccessKey=${device!.primaryKey}`)
    expect(existsSync(join(dataDir, 'registry.db'))).toBe(false)
    const counted = await metrics.registry.getSingleMetricAsString('streamgate_http_requests_total')
    expect(counted).toContain('streamgate_http_requests_total{method="POST",route="/api/devices",status="201"} 1')
  })

  it('lists, disables and removes through the API, so the gateway hears of each change', async () => {
    const list = await cli(dataDir, ['devices', 'list', '--json'])
    expect((JSON.parse(list.stdout) as Array<{ deviceId: string }>).map((d) => d.deviceId)).toEqual(['via-http'])
    expect((await cli(dataDir, ['devices', 'disable', 'via-http'])).code).toBe(0)
    expect((await cli(dataDir, ['devices', 'rotate-key', 'via-http'])).code).toBe(0)
    expect((await cli(dataDir, ['devices', 'remove', 'via-http'])).code).toBe(0)
    expect(await registry.get('via-http')).toBeNull()
    expect(changes).toEqual([
      ['via-http', 'created'],
      ['via-http', 'disabled'],
      ['via-http', 'keys-rotated'],
      ['via-http', 'removed'],
    ])
    const gone = await cli(dataDir, ['devices', 'show', 'via-http'])
    expect(gone.code).toBe(1)
    expect(gone.stderr).toMatch(/^error E_DEVICE_NOT_FOUND: /)
  })

  it('reports E_UNAUTHORIZED with a hint when the token is not the gateway’s', async () => {
    const res = await cli(dataDir, ['devices', 'list'], { env: { STREAMGATE_ADMIN_TOKEN: 'some-other-token-0000000' } })
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/^error E_UNAUTHORIZED: .*--admin-token/)
  })
})


describe('the first hour: errors a new user meets', () => {
  it('start --set without "=" is a usage error (exit 2), not E_INTERNAL', async () => {
    const res = await cli(tmp, ['start', '--set', 'mqtt.port'])
    expect(res.code).toBe(2)
    expect(res.stderr).toMatch(/^error: --set expects key=value \(for example --set mqtt.port=1884\), got "mqtt.port"/)
    expect(res.stderr).not.toContain('E_INTERNAL')
    expect(res.stderr).toContain('usage: streamgate start')
  })

  it('a YAML error names the line and column and shows the offending line', async () => {
    const file = join(tmp, 'broken.yaml')
    await writeFile(file, 'mqtt:\n  port: 1883\n   tls: on\n')
    const res = await cli(tmp, ['start', '--config', file])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('E_CONFIG_INVALID')
    expect(res.stderr).toMatch(/broken\.yaml, line \d+, column \d+: YAML error: \S.+/)
    // The excerpt the yaml library prints after "column N:" is kept, not cut off.
    expect(res.stderr).toMatch(/line 2, column 9: YAML error: Nested mappings are not allowed in compact mappings\n +port: 1883\n +\^/)
  })

  it('tail errors show tail\'s usage, not the list of every command', async () => {
    const res = await cli(tmp, ['tail'])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('error: tail needs exactly one TOPIC')
    expect(res.stderr).toContain('usage: streamgate tail TOPIC')
    expect(res.stderr).not.toContain('commands:')
    const unknown = await cli(tmp, ['tail', 'telemetry', '--colour'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('usage: streamgate tail TOPIC')
  })

  it('devices list on a data directory where no gateway ran says so and creates nothing', async () => {
    const missing = join(tmp, 'not-a-data-dir')
    for (const args of [['devices', 'list'], ['devices', 'show', 'dev1'], ['devices', 'token', 'dev1']]) {
      const res = await cli(missing, args)
      expect(res.code).toBe(1)
      expect(res.stderr).toContain(`error E_NO_DATA: no device registry in the data directory ${missing}`)
      expect(existsSync(missing)).toBe(false)
    }
    for (const args of [['routes', 'list'], ['endpoints', 'list'], ['aggregates', 'list'], ['alerts', 'rules'], ['alerts', 'list']]) {
      const res = await cli(missing, args)
      expect({ args, code: res.code }).toEqual({ args, code: 1 })
      expect(res.stderr).toContain('error E_NO_DATA')
      expect(existsSync(missing)).toBe(false)
    }
    // A write still creates the registry, as the gateway would.
    const added = await cli(missing, ['devices', 'add', 'dev1'])
    expect(added.code).toBe(0)
    const listed = await cli(missing, ['devices', 'list'])
    expect(listed.code).toBe(0)
    expect(listed.stderr).toContain(`1 device in the registry file ${join(missing, 'registry.db')}`)
    await rm(missing, { recursive: true, force: true })
  })
})
