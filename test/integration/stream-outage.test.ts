import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, readAll, sasFor, startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { holdWriteLock } from '../helpers/sqlite-lock.js'

/**
 * The stream refusing writes: another process holds SQLite's write lock on the stream file
 * (as a stuck writer or a full disk would make commits fail). The gateway must not acknowledge,
 * must report not-ready, keep the publish, and deliver it by itself once the stream is back.
 */
async function ready(gw: TestGateway): Promise<{ status: number; body: string }> {
  const res = await fetch(`${gw.httpUrl}/readyz`)
  return { status: res.status, body: await res.text() }
}

describe('embedded stream refusing writes', () => {
  let gw: TestGateway
  let dev: Device

  beforeAll(async () => {
    gw = await startTestGateway({ 'stream.embedded.busyTimeoutMs': '20' })
    dev = await gw.gateway.registry.create({ deviceId: 'outage-1' })
  })
  afterAll(async () => {
    await gw.stop()
  })

  it('holds the PUBACK while commits fail, reports not ready, then delivers exactly once when the stream is back', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    expect((await ready(gw)).status).toBe(200)
    const lock = await holdWriteLock(join(gw.dataDir, 'stream.db'))
    let ackedAt = 0
    const acked = client.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=held`, 'held', { qos: 1 }).then(() => (ackedAt = Date.now()))
    const during = await waitFor(async () => {
      const r = await ready(gw)
      return r.status === 503 ? r : null
    }, 15_000, 'not ready while the commit fails')
    expect(during.body).toMatch(/stream unavailable/)
    // A few retries against the held lock: still no PUBACK.
    await new Promise((r) => setTimeout(r, 700))
    expect(ackedAt).toBe(0)
    expect((await ready(gw)).status).toBe(503)
    const releasedAt = await lock.release()
    await acked
    expect(ackedAt).toBeGreaterThanOrEqual(releasedAt)
    expect((await readAll(gw.gateway, 'telemetry')).filter((r) => r.headers['message-id'] === 'held')).toHaveLength(1)
    expect((await ready(gw)).status).toBe(200)
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/streamgate_stream_append_errors_total\{code="E_STREAM_UNAVAILABLE"\} [1-9]/)
    await client.endAsync()
  })

  it('is ready again once no publish is held, even if the held one was given up (its device left) and no traffic follows', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    const lock = await holdWriteLock(join(gw.dataDir, 'stream.db'))
    try {
      client.publish(`devices/${dev.deviceId}/messages/events/%24.mid=abandoned`, 'x', { qos: 1 })
      await waitFor(async () => (await ready(gw)).status === 503, 15_000, 'not ready while the publish is held')
      // The device goes away without its PUBACK: the gateway stops holding the publish (the
      // device would resend it) and readiness no longer depends on a later success: it comes back
      // while the stream still refuses writes.
      client.end(true)
      await waitFor(async () => (await ready(gw)).status === 200, 15_000, 'ready again with the lock still held')
    } finally {
      await lock.release()
    }
  })
})
