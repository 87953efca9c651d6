import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseCli } from '../../device-sim/options.js'
import { findLocalGateway } from '../../device-sim/local-gateway.js'
import { gatewayUrls, parseSourceIps } from '../../device-sim/scenario.js'
import { fleetIds, readCredentialsFile } from '../../device-sim/provision.js'
import { SimError } from '../../device-sim/errors.js'

const noFile = (): string => {
  throw new Error('unexpected read')
}

function run(argv: string[]): ReturnType<typeof parseCli> & { mode: 'run' } {
  const parsed = parseCli(argv, noFile)
  if (parsed.mode !== 'run') throw new Error('expected run mode')
  return parsed
}

describe('simulator command line and scenario files', () => {
  it('flags make a one-group scenario with schema defaults for the rest', () => {
    const { options } = run(['--devices', '50', '--rate', '2', '--qos', '0', '--duration', '7', '--token', 'x', '--c2d-rate', '3', '--method-delay', '20'])
    const s = options.scenario
    expect(s.duration).toBe(7)
    expect(s.groups).toHaveLength(1)
    expect(s.groups[0]).toMatchObject({ count: 50, rate: 2, qos: 0, driver: 'mqtt', behaviour: { c2d: true, methods: { delayMs: 20, status: 200 } } })
    expect(s.commands).toMatchObject({ c2dPerSecond: 3, methodsPerSecond: 0 })
    expect(s.prefix).toBe('sim-')
  })

  it('a YAML scenario mixes groups and events; command-line connection flags override it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-opt-'))
    const file = join(dir, 'fleet.yaml')
    writeFileSync(
      file,
      `gateway: mqtt://10.0.0.1:1883
duration: 20
groups:
  - { name: meters, count: 100, rate: 0.2, qos: 1 }
  - { name: cams, count: 5, driver: azure, transport: mqttws, rate: 5, qos: 1, payloadSize: 2048 }
events:
  - { type: reconnect-storm, at: 10, percent: 30 }
  - { type: churn, from: 2, to: 8, perSecond: 4 }
`,
    )
    const s = run(['--scenario', file, '--gateway', 'mqtt://127.0.0.1:1999']).options.scenario
    expect(s.gateway).toBe('mqtt://127.0.0.1:1999')
    expect(s.groups.map((g) => [g.name, g.driver, g.transport, g.count])).toEqual([
      ['meters', 'mqtt', 'mqtt', 100],
      ['cams', 'azure', 'mqttws', 5],
    ])
    expect(s.events).toEqual([
      { type: 'reconnect-storm', at: 10, percent: 30 },
      { type: 'churn', from: 2, to: 8, perSecond: 4 },
    ])
  })

  it('--gateway takes several instances, spread in turn; a bad or mixed list is refused with the reason', () => {
    const s = run(['--gateway', 'mqtt://10.0.0.1:1883, mqtt://10.0.0.2:1883,mqtt://10.0.0.3:1884', '--token', 'x']).options.scenario
    expect(gatewayUrls(s.gateway)).toEqual(['mqtt://10.0.0.1:1883', 'mqtt://10.0.0.2:1883', 'mqtt://10.0.0.3:1884'])
    const refused = (gateway: string): string => {
      try {
        run(['--gateway', gateway, '--token', 'x'])
      } catch (err) {
        expect(err).toBeInstanceOf(SimError)
        return (err as Error).message
      }
      throw new Error(`${gateway} was accepted`)
    }
    expect(refused(',')).toContain('one URL, or several separated by commas')
    expect(refused('mqtt://a:1,mqtts://b:8883')).toContain('several gateway URLs need mqtt://')
  })

  it('a bad scenario lists every problem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-opt-'))
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, 'groups:\n  - { count: 0, qos: 2, colour: red }\nevents:\n  - { type: storm }\n')
    try {
      run(['--scenario', file])
      expect.unreachable()
    } catch (err) {
      expect((err as SimError).code).toBe('E_SIM_SCENARIO')
      const problems = (err as SimError).details.problems as string[]
      expect(problems.length).toBeGreaterThanOrEqual(3)
      expect(problems.join('\n')).toMatch(/groups\.0\.count/)
    }
  })

  it('an azure group cannot ask for QoS 0 (the SDK publishes telemetry at QoS 1 only)', () => {
    expect(() => parseCli(['--driver', 'azure', '--qos', '0'], noFile)).toThrow(/azure driver sends QoS 1 only/)
    expect(run(['--driver', 'azure', '--transport', 'mqttws']).options.scenario.groups[0]).toMatchObject({ driver: 'azure', transport: 'mqttws', qos: 1 })
  })

  it('refuses unknown flags and non-numbers with E_SIM_USAGE', () => {
    expect(() => parseCli(['--devicez', '3'], noFile)).toThrow(/E_SIM_USAGE|Unknown option/)
    expect(() => parseCli(['--rate', 'fast'], noFile)).toThrow(/--rate needs a number/)
  })

  it('source address ranges expand in the last octet', () => {
    expect(parseSourceIps('127.0.0.2-127.0.0.5')).toEqual(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'])
    expect(parseSourceIps('127.0.0.7,127.0.0.9-10')).toEqual(['127.0.0.7', '127.0.0.9', '127.0.0.10'])
  })

  it('fleet ids are the prefix and a six-digit index; credentials files read JSON or connection strings', () => {
    expect(fleetIds('sim-', 2)).toEqual(['sim-000001', 'sim-000002'])
    const dir = mkdtempSync(join(tmpdir(), 'sim-cred-'))
    const json = join(dir, 'c.json')
    writeFileSync(json, JSON.stringify([{ deviceId: 'a', key: 'a2V5' }]))
    expect(readCredentialsFile(json)).toEqual([{ deviceId: 'a', key: 'a2V5' }])
    const lines = join(dir, 'c.txt')
    writeFileSync(lines, '# fleet\nHostName=hub.example;DeviceId=b;SharedAccessKey=a2V5PT0=\n\n')
    expect(readCredentialsFile(lines)).toEqual([{ deviceId: 'b', key: 'a2V5PT0=', hubHost: 'hub.example' }])
    writeFileSync(lines, 'HostName=hub;DeviceId=b;x509=true\n')
    expect(() => readCredentialsFile(lines)).toThrow(/line 1/)
  })
})

describe('the gateway that runs from ./data (npm start)', () => {
  function localDir(files: { token?: string; httpUrl?: string; stream?: boolean }): string {
    const cwd = mkdtempSync(join(tmpdir(), 'streamgate-sim-local-'))
    const data = join(cwd, 'data')
    mkdirSync(data)
    if (files.token !== undefined) writeFileSync(join(data, 'admin-token'), `${files.token}\n`)
    if (files.httpUrl !== undefined) writeFileSync(join(data, 'gateway.json'), JSON.stringify({ pid: 1, httpUrl: files.httpUrl, mqttUrl: 'mqtt://127.0.0.1:1883', startedAt: '' }))
    if (files.stream) writeFileSync(join(data, 'stream.db'), '')
    return cwd
  }
  const parse = (argv: string[], cwd: string) => {
    const parsed = parseCli(argv, noFile, findLocalGateway(cwd))
    if (parsed.mode !== 'run') throw new Error('expected run mode')
    return parsed.options
  }

  it('takes its admin token and counts loss from its embedded stream when the run targets it', () => {
    const cwd = localDir({ token: 'local-token', httpUrl: 'http://127.0.0.1:8080', stream: true })
    const options = parse(['--devices', '2'], cwd)
    expect(options.scenario.token).toBe('local-token')
    expect(options.scenario.dataDir).toBe(join(cwd, 'data'))
    expect(options.notes).toEqual([
      `admin token from ${join(cwd, 'data')}/admin-token`,
      `counting loss from the embedded stream in ${join(cwd, 'data')} (the gateway at http://127.0.0.1:8080 runs there; --data-dir or --stream-config to change)`,
    ])
    // localhost and 127.0.0.1 are the same API.
    expect(parse(['--api', 'http://localhost:8080'], cwd).scenario.token).toBe('local-token')
  })

  it('keeps what the command line says, and leaves other gateways alone', () => {
    const cwd = localDir({ token: 'local-token', httpUrl: 'http://127.0.0.1:8080', stream: true })
    const given = parse(['--token', 'mine', '--data-dir', '/elsewhere'], cwd)
    expect([given.scenario.token, given.scenario.dataDir, given.notes]).toEqual(['mine', '/elsewhere', []])
    const kafka = parse(['--stream-config', 'kafka.yaml'], cwd)
    expect(kafka.scenario.dataDir).toBeUndefined()
    const other = parse(['--api', 'http://10.0.0.9:8080'], cwd)
    expect([other.scenario.token, other.scenario.dataDir, other.notes]).toEqual([undefined, undefined, []])
    const otherPort = parse(['--api', 'http://127.0.0.1:9090'], cwd)
    expect(otherPort.scenario.token).toBeUndefined()
  })

  it('without gateway.json takes the token for the default API but reads no stream', () => {
    const cwd = localDir({ token: 'local-token', stream: true })
    const options = parse([], cwd)
    expect(options.scenario.token).toBe('local-token')
    expect(options.scenario.dataDir).toBeUndefined()
    expect(findLocalGateway(mkdtempSync(join(tmpdir(), 'streamgate-sim-none-')))).toBeNull()
  })
})
