import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { waitFor } from '../helpers/gateway.js'
import { CLI, ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'

interface Result {
  code: number
  stdout: string
  stderr: string
}

const TOKEN = 'child-admin-token-0123456789'

function cliEnv(dataDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STREAMGATE_')))
  return Object.assign(env, { STREAMGATE_DATA_DIR: dataDir, STREAMGATE_ADMIN_TOKEN: TOKEN })
}

function cli(dataDir: string, args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: cliEnv(dataDir), timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

type DemoEvent = { kind: string } & Record<string, unknown>

/** The README's walk-through of commands, with `streamgate device-demo` as the device that answers. */
describe('streamgate device-demo', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-demo-'))
  let gw: ChildGateway
  let demo: ChildProcess
  const events: DemoEvent[] = []
  let demoErr = ''

  beforeAll(async () => {
    ensureBuilt()
    const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
    await registry.start()
    await registry.create({ deviceId: 'demo-dev' })
    await registry.create({ deviceId: 'demo-pw', authMethod: 'password', password: 'correct horse battery' })
    await registry.stop()
    gw = await startChildGateway(dataDir)
    demo = spawn(process.execPath, [CLI, 'device-demo', 'demo-dev', '--json', '--every', '0.2', '--method-status', '201'], { env: cliEnv(dataDir), stdio: ['ignore', 'pipe', 'pipe'] })
    let buffered = ''
    demo.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) events.push(JSON.parse(line) as DemoEvent)
    })
    demo.stderr!.on('data', (chunk: Buffer) => (demoErr += chunk.toString()))
    await waitFor(() => events.find((e) => e.kind === 'desired' && e.initial === true), 15_000, `device-demo connected (stderr: ${demoErr})`)
  })
  afterAll(async () => {
    if (demo && demo.exitCode === null) demo.kill('SIGKILL')
    await gw?.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('connects and prints the desired properties it starts with', () => {
    expect(events[0]).toMatchObject({ kind: 'connected', deviceId: 'demo-dev', url: `mqtt://127.0.0.1:${gw.mqttPort}` })
    expect(events.find((e) => e.kind === 'desired')).toMatchObject({ initial: true, version: 1, desired: { $version: 1 } })
  })

  it('prints a cloud-to-device message with its properties and completes it', async () => {
    const sent = await cli(dataDir, ['send', 'demo-dev', '{"led":"on"}', '--prop', 'colour=red', '--message-id', 'demo-1', '--ack', 'full'])
    expect(sent).toMatchObject({ code: 0, stdout: 'demo-1\n' })
    const c2d = await waitFor(() => events.find((e) => e.kind === 'c2d'), 15_000, 'C2D printed')
    expect(c2d).toMatchObject({ messageId: 'demo-1', body: '{"led":"on"}', properties: { colour: 'red', $messageId: 'demo-1' } })
    // Completed: the queue is empty and the feedback says so.
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${gw.httpPort}/api/devices/demo-dev/messages`, { headers: { authorization: `Bearer ${TOKEN}` } })
      const body = (await res.json()) as { messages: unknown[] }
      return body.messages.length === 0 ? true : undefined
    }, 15_000, 'queue drained')
    const feedback = await waitFor(async () => {
      const res = await cli(dataDir, ['tail', 'command-feedback', '--from-beginning'])
      return res.stdout.split('\n').filter(Boolean).map((l) => JSON.parse((JSON.parse(l) as { value: string }).value) as { messageId: string; status: string }).find((f) => f.messageId === 'demo-1')
    }, 15_000, 'feedback of demo-1')
    expect(feedback.status).toBe('completed')
  })

  it('answers a direct method with the status asked for and what the call carried', async () => {
    const res = await cli(dataDir, ['invoke', 'demo-dev', 'reboot', '{"delay":3}', '--timeout', '10'])
    expect(res.code).toBe(0)
    expect(JSON.parse(res.stdout)).toEqual({ status: 201, payload: { method: 'reboot', payload: { delay: 3 } } })
    expect(events.find((e) => e.kind === 'method')).toEqual({ kind: 'method', name: 'reboot', payload: { delay: 3 }, status: 201 })
  })

  it('prints a desired change', async () => {
    const res = await cli(dataDir, ['twin', 'demo-dev', '--set', 'fan=high'])
    expect(res.code).toBe(0)
    const change = await waitFor(() => events.find((e) => e.kind === 'desired' && e.initial === false), 15_000, 'desired change printed')
    expect(change).toMatchObject({ version: 2, desired: { fan: 'high', $version: 2 } })
  })

  it('sends telemetry with --every, which reaches the stream', async () => {
    await waitFor(() => (events.filter((e) => e.kind === 'telemetry').length >= 3 ? true : undefined), 15_000, 'telemetry sent')
    const tail = await cli(dataDir, ['tail', 'telemetry', '--from-beginning'])
    const records = tail.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; value: string })
    expect(records.length).toBeGreaterThanOrEqual(3)
    expect(records.every((r) => r.key === 'demo-dev')).toBe(true)
    expect(JSON.parse(records[0]!.value)).toMatchObject({ seq: 1 })
  })

  it('stops on SIGINT with exit 0', async () => {
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)))
    demo.kill('SIGINT')
    expect(await exited).toBe(0)
  })

  it('refuses clearly: no password for a password device, an unknown device, a bad flag', async () => {
    const pw = await cli(dataDir, ['device-demo', 'demo-pw'])
    expect(pw.code).toBe(2)
    expect(pw.stderr).toContain('device demo-pw authenticates with a password: pass --password')
    const unknown = await cli(dataDir, ['device-demo', 'nobody'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('error E_DEVICE_NOT_FOUND')
    const flag = await cli(dataDir, ['device-demo', 'demo-dev', '--every', '0'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain('--every expects seconds between 0.1 and 3600')
    const elsewhere = await cli(join(dataDir, 'no-gateway-here'), ['device-demo', 'demo-dev'])
    expect(elsewhere.code).toBe(1)
    expect(elsewhere.stderr).toContain('error E_GATEWAY_NOT_RUNNING')
  })
})
