import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectAsync, type MqttClient } from 'mqtt'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import type { Device } from '../../src/registry/types.js'
import { deviceOptions, sasFor, waitFor } from '../helpers/gateway.js'
import { CLI, ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'
import { collect, type Received } from '../helpers/commands.js'

interface Result {
  code: number
  stdout: string
  stderr: string
}

function cli(dataDir: string, args: string[]): Promise<Result> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STREAMGATE_')))
  Object.assign(env, { STREAMGATE_DATA_DIR: dataDir, STREAMGATE_ADMIN_TOKEN: 'child-admin-token-0123456789' })
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
}

/** `streamgate send`, `invoke` and `twin` against a running gateway, with a real device on the other end. */
describe('streamgate send, invoke, twin', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-cli-cmd-'))
  let gw: ChildGateway
  let device: Device
  let client: MqttClient
  let got: Received[]

  beforeAll(async () => {
    ensureBuilt()
    const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
    await registry.start()
    device = await registry.create({ deviceId: 'cli-dev' })
    await registry.stop()
    gw = await startChildGateway(dataDir)
    client = await connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, deviceOptions(device.deviceId, sasFor(device)))
    got = collect(client)
    client.on('message', (topic, payload) => {
      const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic)
      if (m) client.publish(`$iothub/methods/res/201/?$rid=${m[2]}`, JSON.stringify({ got: JSON.parse(payload.toString()) }))
    })
    await client.subscribeAsync(`devices/${device.deviceId}/messages/devicebound/#`, { qos: 1 })
    await client.subscribeAsync('$iothub/methods/POST/#', { qos: 0 })
    await client.subscribeAsync('$iothub/twin/PATCH/properties/desired/#', { qos: 0 })
  })
  afterAll(async () => {
    await client?.endAsync(true)
    await gw?.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('send queues a message the device receives with its properties', async () => {
    const res = await cli(dataDir, ['send', device.deviceId, 'hello', '--prop', 'colour=red', '--ttl', '120', '--message-id', 'cli-1'])
    expect(res).toMatchObject({ code: 0, stdout: 'cli-1\n' })
    const msg = await waitFor(() => got.find((m) => m.topic.startsWith('devices/')), 15_000, 'C2D message')
    expect(msg.payload).toBe('hello')
    expect(msg.topic).toContain('colour=red')
  })

  it('invoke prints the device answer', async () => {
    const res = await cli(dataDir, ['invoke', device.deviceId, 'ping', '{"n":1}', '--timeout', '5'])
    expect(res.code).toBe(0)
    expect(JSON.parse(res.stdout)).toEqual({ status: 201, payload: { got: { n: 1 } } })
  })

  it('twin --set patches desired properties and the device is notified; twin prints it', async () => {
    const res = await cli(dataDir, ['twin', device.deviceId, '--set', 'telemetry.interval=10', '--set', 'mode=eco', '--if-match', '1'])
    expect(res.code).toBe(0)
    const note = await waitFor(() => got.find((m) => m.topic.startsWith('$iothub/twin/PATCH/')), 15_000, 'desired patch')
    expect(JSON.parse(note.payload)).toEqual({ telemetry: { interval: 10 }, mode: 'eco', $version: 2 })
    const show = await cli(dataDir, ['twin', device.deviceId])
    expect(JSON.parse(show.stdout)).toMatchObject({ desired: { telemetry: { interval: 10 }, mode: 'eco', $version: 2 } })
    const stale = await cli(dataDir, ['twin', device.deviceId, '--set', 'mode=off', '--if-match', '1'])
    expect(stale.code).toBe(1)
    expect(stale.stderr).toContain('E_TWIN_VERSION_MISMATCH')
  })

  it('reports usage errors with exit 2 and a missing gateway with E_GATEWAY_NOT_RUNNING', async () => {
    expect((await cli(dataDir, ['send', device.deviceId])).code).toBe(2)
    expect((await cli(dataDir, ['invoke', device.deviceId, 'm', '--timeout', 'soon'])).code).toBe(2)
    const empty = mkdtempSync(join(tmpdir(), 'streamgate-cli-none-'))
    try {
      const res = await cli(empty, ['send', 'x', 'y'])
      expect(res.code).toBe(1)
      expect(res.stderr).toContain('E_GATEWAY_NOT_RUNNING')
    } finally {
      rmSync(empty, { recursive: true, force: true })
    }
  })
})
