import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { loadConfig, topicNames } from '../../src/config/load.js'
import { GatewayError } from '../../src/errors/catalogue.js'
import { openStateStores } from '../../src/app/backends.js'

const dir = mkdtempSync(join(tmpdir(), 'streamgate-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function problemsOf(fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    expect((err as GatewayError).code).toBe('E_CONFIG_INVALID')
    return ((err as GatewayError).details?.problems as string[]) ?? []
  }
  throw new Error('expected the config to be refused')
}

describe('configuration', () => {
  it('has documented defaults matching config/default.yaml', () => {
    const fromFile = loadConfig({ env: {} })
    const builtIn = loadConfig({ env: {}, skipDefaultFile: true })
    expect(fromFile).toEqual(builtIn)
    expect(builtIn.mqtt.port).toBe(1883)
    expect(builtIn.http.port).toBe(8080)
    expect(builtIn.hostname).toBe('localhost')
    expect(builtIn.dataDir).toBe('./data')
    expect(builtIn.limits.maxPayloadBytes).toBe(256 * 1024)
    expect(builtIn.stream.partitions).toBe(8)
  })

  it('lists every setting in config/default.yaml (a setting missing there is undocumented)', () => {
    const builtIn = loadConfig({ env: {}, skipDefaultFile: true }) as unknown as Record<string, unknown>
    const file = parseYaml(readFileSync(join(import.meta.dirname, '..', '..', 'config', 'default.yaml'), 'utf8')) as Record<string, unknown>
    const missing: string[] = []
    const walk = (config: Record<string, unknown>, yaml: Record<string, unknown> | undefined, path: string): void => {
      for (const [key, value] of Object.entries(config)) {
        const at = path ? `${path}.${key}` : key
        if (yaml === undefined || !(key in yaml)) missing.push(at)
        else if (value !== null && typeof value === 'object' && !Array.isArray(value)) walk(value as Record<string, unknown>, yaml[key] as Record<string, unknown>, at)
      }
    }
    walk(builtIn, file, '')
    expect(missing).toEqual([])
  })

  it('layers --config file < STREAMGATE_* env < CLI overrides', () => {
    const file = join(dir, 'layer.yaml')
    writeFileSync(file, 'hostname: from-file\nmqtt:\n  port: 1000\nhttp:\n  port: 2000\nlog:\n  level: debug\n')
    const c = loadConfig({
      configFile: file,
      env: { STREAMGATE_MQTT_PORT: '1001', STREAMGATE_HOSTNAME: 'from-env', STREAMGATE_LIMITS__MAX_PAYLOAD_BYTES: '1024' },
      overrides: { 'mqtt.port': '1002' },
    })
    expect(c.mqtt.port).toBe(1002)
    expect(c.http.port).toBe(2000)
    expect(c.hostname).toBe('from-env')
    expect(c.log.level).toBe('debug')
    expect(c.limits.maxPayloadBytes).toBe(1024)
  })

  it('honours every documented environment variable', () => {
    const c = loadConfig({
      env: {
        STREAMGATE_DATA_DIR: '/tmp/sg',
        STREAMGATE_HOSTNAME: 'hub.example.com',
        STREAMGATE_MQTT_PORT: '11883',
        STREAMGATE_HTTP_PORT: '18080',
        STREAMGATE_ADMIN_TOKEN: '0123456789abcdef0123',
        STREAMGATE_LOG_LEVEL: 'warn',
      },
    })
    expect([c.dataDir, c.hostname, c.mqtt.port, c.http.port, c.adminToken, c.log.level]).toEqual(['/tmp/sg', 'hub.example.com', 11883, 18080, '0123456789abcdef0123', 'warn'])
  })

  it('keeps numeric-looking strings as strings where a string is expected', () => {
    expect(loadConfig({ env: { STREAMGATE_ADMIN_TOKEN: '12345678901234567890' } }).adminToken).toBe('12345678901234567890')
  })

  it('lists every problem at once', () => {
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, 'mqtt:\n  port: 99999\n  bogus: 1\nlimits:\n  maxPayloadBytes: -1\nlog:\n  level: loud\n')
    const problems = problemsOf(() => loadConfig({ configFile: file, env: { STREAMGATE_HTTP_PORT: 'eighty' } }))
    expect(problems.join('\n')).toMatch(/mqtt\.port/)
    expect(problems.join('\n')).toMatch(/mqtt: Unrecognized key.*bogus/)
    expect(problems.join('\n')).toMatch(/limits\.maxPayloadBytes/)
    expect(problems.join('\n')).toMatch(/log\.level/)
    expect(problems.join('\n')).toMatch(/http\.port/)
    expect(problems.length).toBeGreaterThanOrEqual(5)
  })

  it('reports an unreadable or malformed file', () => {
    expect(problemsOf(() => loadConfig({ configFile: join(dir, 'missing.yaml'), env: {} }))[0]).toMatch(/cannot read/)
    const file = join(dir, 'broken.yaml')
    writeFileSync(file, 'mqtt: [unclosed\n')
    expect(problemsOf(() => loadConfig({ configFile: file, env: {} }))[0]).toMatch(/YAML error/)
  })

  it('applies the topic prefix to every stream topic', () => {
    const c = loadConfig({ env: { STREAMGATE_TOPIC_PREFIX: 'plant1.' } })
    expect(topicNames(c)).toEqual({ telemetry: 'plant1.telemetry', deviceEvents: 'plant1.device-events', commands: 'plant1.commands', commandFeedback: 'plant1.command-feedback', deadLetter: 'plant1.routing-deadletter', alerts: 'plant1.alerts' })
  })

  it('maps the state env variables to PostgreSQL stores, and refuses postgres without a URL', async () => {
    const config = loadConfig({ env: { STREAMGATE_STATE_BACKEND: 'postgres', STREAMGATE_POSTGRES_URL: 'postgres://u:p@127.0.0.1:5432/db' } })
    expect(config.state.backend).toBe('postgres')
    expect(config.state.postgres.url).toBe('postgres://u:p@127.0.0.1:5432/db')
    // The stores are PostgreSQL ones; the pool connects on first use, so nothing is reached here.
    const stores = openStateStores(config, 'tool')
    expect(stores.backend).toBe('postgres')
    expect(stores.postgres?.where).toBe('postgres://u@127.0.0.1:5432/db')
    await stores.end()
    // Without a URL it is refused at once, with the setting to fix.
    const noUrl = loadConfig({ env: { STREAMGATE_STATE_BACKEND: 'postgres' } })
    expect(() => openStateStores(noUrl)).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('STREAMGATE_POSTGRES_URL') }))
  })
})
