import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectAsync } from 'mqtt'
import { generateSasToken, parseConnectionString } from '../../src/auth/sas.js'
import { deviceOptions } from '../helpers/gateway.js'
import { CLI, ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'

const run = promisify(execFile)

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describe('streamgate start, devices add and tail: the README walk-through', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-cli-'))
  const env = { STREAMGATE_DATA_DIR: dataDir, STREAMGATE_LOG_LEVEL: 'warn' }
  let gw: ChildGateway | null = null

  beforeAll(() => ensureBuilt(), 180_000)
  afterAll(async () => {
    await gw?.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('starts, prints where it listens and how to add a device, and prints a generated admin token once', { timeout: 90_000 }, async () => {
    gw = await startChildGateway(dataDir, { STREAMGATE_ADMIN_TOKEN: '' })
    const out = gw.output()
    expect(out).toMatch(/MQTT \(TCP\)\s+mqtt:\/\/127\.0\.0\.1:\d+/)
    expect(out).toMatch(/MQTT over WebSocket ws:\/\/127\.0\.0\.1:\d+\/mqtt/)
    expect(out).toMatch(/streamgate devices add/)
    const token = /shown this once: (\S+)/.exec(out)?.[1]
    expect(token).toBeDefined()
    expect(existsSync(join(dataDir, 'admin-token'))).toBe(true)
    expect(existsSync(join(dataDir, 'gateway.json'))).toBe(true)
  })

  it('adds a device whose connection string lets an MQTT device publish, and tail shows the record', async () => {
    const added = await cli(['devices', 'add', 'walk-1'], env)
    expect(added.code).toBe(0)
    const cs = /HostName=[^\s]+/.exec(added.stdout)?.[0]
    expect(cs).toBeDefined()
    const parsed = parseConnectionString(cs!)
    expect(parsed.hostName).toBe('localhost')
    expect(parsed.deviceId).toBe('walk-1')
    const token = generateSasToken({ host: parsed.hostName!, deviceId: 'walk-1', key: parsed.sharedAccessKey!, expiresAt: Math.floor(Date.now() / 1000) + 600 })
    const client = await connectAsync(`mqtt://127.0.0.1:${gw!.mqttPort}`, deviceOptions('walk-1', token))
    await client.publishAsync('devices/walk-1/messages/events/%24.mid=walk&unit=C', '{"temp":21}', { qos: 1 })
    await client.publishAsync('devices/walk-1/messages/events/', Buffer.from([0xff, 0x00, 0x10]), { qos: 1 })
    await client.endAsync()

    const tail = await cli(['tail', 'telemetry', '--from-beginning'], env)
    expect(tail.code).toBe(0)
    const records = tail.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(records).toHaveLength(2)
    expect(records[0]).toMatchObject({ topic: 'telemetry', key: 'walk-1', value: '{"temp":21}', encoding: 'utf8', headers: { 'message-id': 'walk', unit: 'C', 'device-id': 'walk-1' } })
    expect(records[1]).toMatchObject({ value: Buffer.from([0xff, 0x00, 0x10]).toString('base64'), encoding: 'base64' })
  })

  it('tails by consumer group: a second read of the same group prints nothing new', async () => {
    const first = await cli(['tail', 'telemetry', '--group', 'g1', '--from-beginning'], env)
    expect(first.code).toBe(0)
    expect(first.stdout.trim().split('\n')).toHaveLength(2)
    const again = await cli(['tail', 'telemetry', '--group', 'g1'], env)
    expect(again.code).toBe(0)
    expect(again.stdout.trim()).toBe('')
  })

  it('tails one partition, and the device-events topic', async () => {
    const all = (await cli(['tail', 'telemetry', '--from-beginning'], env)).stdout.trim().split('\n').map((l) => JSON.parse(l) as { partition: number })
    const p = all[0]!.partition
    const one = await cli(['tail', 'telemetry', '--from-beginning', '--partition', String(p)], env)
    expect(one.stdout.trim().split('\n').length).toBe(all.filter((r) => r.partition === p).length)
    const events = (await cli(['tail', 'device-events', '--from-beginning'], env)).stdout.trim().split('\n').map((l) => JSON.parse(JSON.parse(l).value as string) as { type: string })
    // `devices add` went through the running gateway's API, which records the creation too.
    expect(events.map((e) => e.type)).toEqual(['created', 'connected', 'disconnected'])
  })

  it('follows new records until interrupted', { timeout: 90_000 }, async () => {
    const child = execFile(process.execPath, [CLI, 'tail', 'telemetry', '--follow', '--lines', '0'], { env: { PATH: process.env.PATH ?? '', ...env } })
    let out = ''
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    const values = (): string[] => out.split('\n').filter((l) => l.trim() !== '').map((l) => (JSON.parse(l) as { value: string }).value)
    // `devices token` prints a SAS token, as the README's walk-through uses it with the mqtt CLI.
    const token = await cli(['devices', 'token', 'walk-1', '--ttl', '600'], env)
    expect(token.code).toBe(0)
    expect(token.stdout).toMatch(/^SharedAccessSignature sr=localhost%2Fdevices%2Fwalk-1&sig=[^&]+&se=\d+\n$/)
    const client = await connectAsync(`mqtt://127.0.0.1:${gw!.mqttPort}`, deviceOptions('walk-1', token.stdout.trim()))
    // The tail prints nothing until it follows, and how long a loaded machine takes to start it
    // varies: publish probes until one shows up, so that 'followed' is sent once it surely follows.
    const probes: string[] = []
    const deadline = Date.now() + 30_000
    while (!out.includes('probe-') && Date.now() < deadline) {
      probes.push(`probe-${probes.length}`)
      await client.publishAsync('devices/walk-1/messages/events/', probes[probes.length - 1]!, { qos: 1 })
      const waitUntil = Date.now() + 500
      while (!out.includes('probe-') && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 50))
    }
    await client.publishAsync('devices/walk-1/messages/events/', 'followed', { qos: 1 })
    await client.endAsync()
    const followDeadline = Date.now() + 20_000
    while (!out.includes('followed') && Date.now() < followDeadline) await new Promise((r) => setTimeout(r, 50))
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    child.kill('SIGINT')
    expect(await exited).toBe(0)
    // --lines 0: nothing from before it started (not the walk-through's records, not the probes
    // published before it followed), then every record published since, in order.
    const printed = values()
    const first = probes.indexOf(printed[0] ?? '')
    expect(first, `first printed record: ${printed[0]}`).toBeGreaterThanOrEqual(0)
    expect(printed).toEqual([...probes.slice(first), 'followed'])
  })

  it('refuses an unknown topic with a clear error', async () => {
    const r = await cli(['tail', 'nope'], env)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/E_STREAM_TOPIC_UNKNOWN/)
  })
})

describe('streamgate start with a bad configuration', () => {
  // A build when dist is older than src (never in CI, which builds first) takes long on a loaded machine.
  beforeAll(() => ensureBuilt(), 180_000)

  it('exits non-zero and lists every problem', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'streamgate-badcfg-'))
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, 'mqtt:\n  port: 70000\nlimits:\n  maxPayloadBytes: 0\nnonsense: true\n')
    const r = await cli(['start', '--config', file], { STREAMGATE_DATA_DIR: dir, STREAMGATE_HTTP_PORT: 'abc' })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/E_CONFIG_INVALID/)
    for (const key of ['mqtt.port', 'limits.maxPayloadBytes', 'nonsense', 'http.port']) expect(r.stderr).toContain(key)
    rmSync(dir, { recursive: true, force: true })
  })
})
