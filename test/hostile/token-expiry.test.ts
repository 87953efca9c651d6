import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectAsync } from 'mqtt'
import { readTopic } from '../../bench/lib/sim-bench.js'
import { deviceOptions } from '../helpers/gateway.js'
import { expectSurvived, sasToken, startHostileGateway, underAttack, MiB, type HostileGateway } from '../helpers/hostile.js'

/**
 * Issue item 10: the authenticator computed a SAS token's expiry, but the live connection was
 * never closed at it (IoT Hub disconnects; the Azure SDK renews before). Here auth.clockSkewSeconds
 * is 0, so a connection ends when its token does, with the reason `token-expired`.
 */
async function disconnectReasons(gw: HostileGateway, deviceId: string): Promise<string[]> {
  return (await readTopic(gw.dataDir, 'device-events'))
    .map((r) => JSON.parse(r.value.toString()) as { type: string; deviceId: string; reason?: string })
    .filter((e) => e.deviceId === deviceId && e.type === 'disconnected')
    .map((e) => e.reason ?? '')
}

describe('hostile: a connection outliving its SAS token', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  let dev: { deviceId: string; primaryKey: string }

  beforeAll(async () => {
    gw = await startHostileGateway({ env: { STREAMGATE_AUTH__CLOCK_SKEW_SECONDS: '0' } })
    canary = await gw.addSasDevice('canary-expiry')
    dev = await gw.addSasDevice('expiring-dev')
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('is closed when the token expires; one that renews in time keeps working', async () => {
    const outcome = await underAttack(gw, canary, async () => {
      // 20 devices' worth of connections, each with a token that ends in 3 s.
      const started = Date.now()
      const clients = await Promise.all(Array.from({ length: 20 }, () => connectAsync(gw.mqttUrl, deviceOptions(dev.deviceId, sasToken(dev.deviceId, dev.primaryKey, 3), { clientId: dev.deviceId }))))
      // Only the last of the same device id stays (the others are replaced); it must be closed at expiry.
      const last = clients[clients.length - 1]!
      const closedAfter = await new Promise<number>((resolve) => last.once('close', () => resolve((Date.now() - started) / 1000)))
      for (const c of clients) c.end(true)

      // Renewal: a new connection with a fresh token before the old one expires, as the SDK does.
      const renewing = await connectAsync(gw.mqttUrl, deviceOptions(dev.deviceId, sasToken(dev.deviceId, dev.primaryKey, 4)))
      await new Promise((r) => setTimeout(r, 2000))
      const renewed = await connectAsync(gw.mqttUrl, deviceOptions(dev.deviceId, sasToken(dev.deviceId, dev.primaryKey, 3600)))
      renewing.end(true)
      await new Promise((r) => setTimeout(r, 3500))
      const stillConnected = renewed.connected
      await renewed.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=after-renewal`, 'x', { qos: 1 })
      await renewed.endAsync()
      return { closedAfter, stillConnected }
    })
    expect(outcome.result.closedAfter).toBeGreaterThanOrEqual(1.5)
    expect(outcome.result.closedAfter).toBeLessThan(6)
    expect(outcome.result.stillConnected).toBe(true)
    const reasons = await disconnectReasons(gw, dev.deviceId)
    expect(reasons).toContain('token-expired')
    // Exactly the one connection that outlived its token; the renewed one ended by the device.
    expect(reasons.filter((r) => r === 'token-expired')).toHaveLength(1)
    await expectSurvived(gw, 'SAS tokens expiring on live connections', outcome, { rssGrowthBytes: 64 * MiB }, ['after-renewal'])
  }, 60_000)
})
