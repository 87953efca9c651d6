import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { connectAsync, type MqttClient } from 'mqtt'
import type { DeviceEvent } from '../../src/registry/types.js'
import { deviceOptions, waitFor } from '../helpers/gateway.js'
import { MiB, expectSurvived, startHostileGateway, underAttack, type HostileGateway, metric } from '../helpers/hostile.js'
import { holdWriteLock, readTopic, startHostileGatewayIn } from './gateway-restarts.js'

/**
 * Lifecycle events while the stream refuses writes, and a gateway killed meanwhile: devices
 * connect and disconnect while another process holds SQLite's write lock on stream.db; the
 * gateway is then killed with events still waiting and two devices still connected. After the
 * lock is released and a gateway started again (with devices churning and the canary running),
 * `device-events` holds every event of every device, each device's `sequence` without a gap.
 */
const DEVICES = 6
const ROUNDS = 3

describe('hostile: lifecycle events through a stream outage and a killed gateway', () => {
  let gw: HostileGateway | null = null
  let dataDir = ''
  afterAll(async () => {
    await gw?.stop()
  })

  const connect = (device: { deviceId: string; token: string }): Promise<MqttClient> =>
    connectAsync(gw!.mqttUrl, deviceOptions(device.deviceId, device.token, { connectTimeout: 10_000 }))

  it('loses no event and leaves no gap in any sequence', async () => {
    // A commit waits 20 ms for the lock, so a refused write costs the gateway little time.
    const options = { args: ['--set', 'stream.embedded.busyTimeoutMs=20'] }
    gw = await startHostileGateway(options)
    dataDir = gw.dataDir
    const canary = await gw.addSasDevice('canary')
    const devices = await Promise.all(Array.from({ length: DEVICES }, (_, i) => gw!.addSasDevice(`churn-${i}`)))
    await waitFor(async () => (await metric(gw!, 'streamgate_device_events_pending')) === 0, 20_000, 'created events written')

    const lock = await holdWriteLock(join(dataDir, 'stream.db'))
    let kept: MqttClient[] = []
    try {
      for (let round = 0; round < ROUNDS; round++) {
        await Promise.all(devices.map(async (d) => (await connect(d)).endAsync()))
      }
      // Two devices stay connected: the gateway dies under them.
      kept = await Promise.all(devices.slice(0, 2).map(connect))
      const waiting = DEVICES * ROUNDS * 2 + 2
      await waitFor(async () => (await metric(gw!, 'streamgate_device_events_pending')) === waiting, 20_000, `${waiting} events in the outbox`)
      expect(await metric(gw!, 'streamgate_device_events_total{type="connected"}'), 'nothing counted as written').toBe(0)
      await gw.kill('SIGKILL')
    } finally {
      await lock.release()
    }
    for (const c of kept) c.end(true)

    gw = await startHostileGatewayIn(dataDir, options)
    const outcome = await underAttack(gw, canary, async () => {
      // More churn while the backlog is written.
      for (let round = 0; round < 2; round++) await Promise.all(devices.map(async (d) => (await connect(d)).endAsync()))
      await waitFor(async () => (await metric(gw!, 'streamgate_device_events_pending')) === 0, 60_000, 'outbox written')
    })
    await expectSurvived(gw, 'lifecycle events through a stream outage and a kill', outcome, { rssGrowthBytes: 48 * MiB })

    const events = (await readTopic(dataDir, 'device-events')).map((r) => {
      const event = JSON.parse(r.value.toString()) as DeviceEvent
      expect(r.headers['event-type']).toBe(event.type)
      return event
    })
    for (const [i, d] of devices.entries()) {
      const mine = events.filter((e) => e.deviceId === d.deviceId && e.sequence !== undefined)
      const expected = ROUNDS * 2 + (i < 2 ? 2 : 0) + 4
      expect(mine.map((e) => e.sequence), `sequence of ${d.deviceId}`).toEqual(Array.from({ length: expected }, (_, n) => n + 1))
      expect(mine.map((e) => e.type)).toEqual(Array.from({ length: expected }, (_, n) => (n % 2 === 0 ? 'connected' : 'disconnected')))
      if (i < 2) expect(mine[ROUNDS * 2 + 1]).toMatchObject({ type: 'disconnected', reason: 'gateway-restart' })
      expect(events.filter((e) => e.deviceId === d.deviceId && e.type === 'created')).toHaveLength(1)
    }
    const canarySequences = events.filter((e) => e.deviceId === 'canary' && e.sequence !== undefined).map((e) => e.sequence)
    expect(canarySequences).toEqual(Array.from({ length: canarySequences.length }, (_, n) => n + 1))
    console.log(`[hostile] lifecycle outbox: ${events.length} device events, ${DEVICES * ROUNDS * 2 + 2} of them held through the outage and the kill`)
  }, 180_000)
})
