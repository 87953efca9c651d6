import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectAsync, type MqttClient } from 'mqtt'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { deviceOptions, sasFor, waitFor } from '../helpers/gateway.js'
import { ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'
import { api, connectCollecting } from '../helpers/commands.js'
import type { Device } from '../../src/registry/types.js'

const TOKEN = 'child-admin-token-0123456789'

/**
 * Persistent sessions and the durable queue across a SIGKILLed gateway: the device subscribed
 * once (clean session 0), like the Azure SDK it never subscribes again, and still gets its queued
 * cloud-to-device messages and desired-property patches from the restarted gateway.
 */
describe('command channel across a gateway restart', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'streamgate-cmd-restart-'))
  let device: Device
  let gw: ChildGateway | null = null
  const clients: MqttClient[] = []

  beforeAll(async () => {
    ensureBuilt()
    const registry = new SqliteDeviceRegistry({ file: join(dataDir, 'registry.db') })
    await registry.start()
    device = await registry.create({ deviceId: 'restart-dev' })
    await registry.stop()
  }, 180_000) // ensureBuilt: a build when dist is older than src takes long on a loaded machine
  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined)
    await gw?.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  const connect = async (): Promise<MqttClient> => {
    const c = await connectAsync(`mqtt://127.0.0.1:${gw!.mqttPort}`, deviceOptions(device.deviceId, sasFor(device)))
    c.on('error', () => undefined)
    clients.push(c)
    return c
  }
  const http = (): string => `http://127.0.0.1:${gw!.httpPort}`

  it('keeps subscriptions and queued messages through kill -9', { timeout: 120_000 }, async () => {
    gw = await startChildGateway(dataDir)
    const first = await connect()
    await first.subscribeAsync(`devices/${device.deviceId}/messages/devicebound/#`, { qos: 1 })
    await first.subscribeAsync('$iothub/twin/PATCH/properties/desired/#', { qos: 0 })
    await first.endAsync()
    for (const payload of ['one', 'two', 'three']) {
      const res = await api(http(), 'POST', `/api/devices/${device.deviceId}/messages`, { payload }, { token: TOKEN })
      expect(res.status).toBe(202)
    }
    await gw.kill()

    gw = await startChildGateway(dataDir)
    const { client: again, got } = await connectCollecting(`mqtt://127.0.0.1:${gw.mqttPort}`, deviceOptions(device.deviceId, sasFor(device)))
    again.on('error', () => undefined)
    clients.push(again)
    await waitFor(() => got.length === 3, 10_000, 'queued messages after restart')
    expect(got.map((m) => m.payload)).toEqual(['one', 'two', 'three'])

    const patch = await api(http(), 'PATCH', `/api/devices/${device.deviceId}/twin`, { desired: { mode: 'eco' } }, { token: TOKEN })
    expect(patch.status).toBe(200)
    const note = await waitFor(() => got.find((m) => m.topic.startsWith('$iothub/twin/PATCH/properties/desired/')), 15_000, 'desired patch')
    expect(JSON.parse(note.payload)).toEqual({ mode: 'eco', $version: 2 })
    // Completed: nothing left in the queue.
    await waitFor(async () => {
      const list = await api(http(), 'GET', `/api/devices/${device.deviceId}/messages`, undefined, { token: TOKEN })
      return (list.body as { messages: unknown[] }).messages.length === 0
    })
  })
})
