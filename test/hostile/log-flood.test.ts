import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectSurvived, startHostileGateway, underAttack, MiB, type HostileGateway, metric, metricTotal } from '../helpers/hostile.js'
import { deviceConnect, RawPeer } from '../helpers/raw-mqtt.js'

/**
 * Issue item 12, last point: every refused publish wrote a warn line (16,645 in one fuzz run).
 * Warnings a client can cause at will are now logged once per code per log.repeatIntervalSeconds
 * (the next line says how many were left out); the metrics still count every one.
 */
describe('hostile: a client making the gateway refuse it, over and over', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  const devs: Array<{ deviceId: string; token: string }> = []

  beforeAll(async () => {
    gw = await startHostileGateway()
    canary = await gw.addSasDevice('canary-logs')
    // One device per parallel lane: connections of one device id replace each other.
    for (let i = 0; i < 20; i++) devs.push(await gw.addSasDevice(`noisy-${i}`))
  }, 180_000)
  afterAll(async () => {
    await gw?.stop()
  })

  it('logs a few lines for 400 refused publishes and 400 refused connects, and counts all of them', async () => {
    const denialsBefore = await metric(gw, 'streamgate_acl_denials_total{action="publish",code="E_TOPIC_FORBIDDEN"}')
    const refusedBefore = await metricTotal(gw, 'streamgate_auth_failures_total')
    const outcome = await underAttack(gw, canary, async () => {
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(
          devs.map(async (dev, i) => {
            const forbidden = await RawPeer.tcp(gw.mqttPort)
            forbidden.write(deviceConnect(dev.deviceId, dev.token))
            await forbidden.next('connack')
            forbidden.write({ cmd: 'publish', topic: `devices/someone-else/messages/events/n=${batch}-${i}`, payload: Buffer.from('x'), qos: 1, messageId: 1, dup: false, retain: false })
            await forbidden.closedWithin(5000)
            // A broken token for a device id nobody registered (its failures are the limiter's
            // business, not this test's: they must not touch the devices above).
            const wrong = await RawPeer.tcp(gw.mqttPort, `127.0.4.${i + 1}`)
            wrong.write(deviceConnect(`ghost-${i}`, `${dev.token.slice(0, -8)}AAAAAAAA`))
            await wrong.next('connack')
            wrong.destroy()
          }),
        )
      }
    })
    expect(await metric(gw, 'streamgate_acl_denials_total{action="publish",code="E_TOPIC_FORBIDDEN"}')).toBe(denialsBefore + 400)
    expect(await metricTotal(gw, 'streamgate_auth_failures_total')).toBe(refusedBefore + 400)
    const lines = gw.output().split('\n')
    const denialLines = lines.filter((l) => l.includes('"code":"E_TOPIC_FORBIDDEN"'))
    const connectLines = lines.filter((l) => l.includes('connect refused'))
    console.log(`[hostile] log lines: ${denialLines.length} for 400 refused publishes, ${connectLines.length} for 400 refused connects`)
    expect(denialLines.length).toBeGreaterThanOrEqual(1)
    expect(denialLines.length).toBeLessThanOrEqual(5)
    expect(connectLines.length).toBeGreaterThanOrEqual(1)
    // One line per code (a wrong signature, and the limiter's refusals if it steps in).
    expect(connectLines.length).toBeLessThanOrEqual(10)
    // What was left out is counted, and said in the next line logged for that code.
    expect(await metric(gw, 'streamgate_log_lines_left_out_total{code="E_TOPIC_FORBIDDEN"}')).toBeGreaterThanOrEqual(395)
    await expectSurvived(gw, '800 refusals', outcome, { rssGrowthBytes: 48 * MiB })
  }, 60_000)
})
