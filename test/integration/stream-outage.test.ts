import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Device } from '../../src/registry/types.js'
import { connectDevice, readAll, sasFor, startTestGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * The stream refusing writes: another process holds SQLite's write lock on the stream file
 * (as a stuck writer or a full disk would make commits fail). The gateway must not acknowledge,
 * must report not-ready, keep the publish, and deliver it by itself once the stream is back.
 */
function holdWriteLock(file: string, ms: number): Promise<{ released: Promise<void> }> {
  const script = `
    const Database = require('better-sqlite3')
    const db = new Database(process.argv[1])
    db.exec('BEGIN IMMEDIATE')
    process.stdout.write('locked\\n')
    setTimeout(() => { db.exec('ROLLBACK'); db.close(); process.stdout.write('released\\n') }, Number(process.argv[2]))
  `
  const child = spawn(process.execPath, ['-e', script, file, String(ms)], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve({ released: new Promise((r) => child.once('exit', () => r())) }))
    child.once('error', reject)
  })
}

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
    const lock = await holdWriteLock(join(gw.dataDir, 'stream.db'), 1500)
    let ackedAt = 0
    const published = Date.now()
    const acked = client.publishAsync(`devices/${dev.deviceId}/messages/events/%24.mid=held`, 'held', { qos: 1 }).then(() => (ackedAt = Date.now()))
    await new Promise((r) => setTimeout(r, 700))
    expect(ackedAt).toBe(0)
    const during = await ready(gw)
    expect(during.status).toBe(503)
    expect(during.body).toMatch(/stream unavailable/)
    await lock.released
    await acked
    expect(ackedAt - published).toBeGreaterThanOrEqual(1000)
    expect((await readAll(gw.gateway, 'telemetry')).filter((r) => r.headers['message-id'] === 'held')).toHaveLength(1)
    expect((await ready(gw)).status).toBe(200)
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/streamgate_stream_append_errors_total\{code="E_STREAM_UNAVAILABLE"\} [1-9]/)
    await client.endAsync()
  })

  it('is ready again once no publish is held, even if the held one was given up (its device left) and no traffic follows', async () => {
    const client = await connectDevice(gw.mqttUrl, dev.deviceId, sasFor(dev))
    const lock = await holdWriteLock(join(gw.dataDir, 'stream.db'), 2500)
    client.publish(`devices/${dev.deviceId}/messages/events/%24.mid=abandoned`, 'x', { qos: 1 })
    await new Promise((r) => setTimeout(r, 500))
    expect((await ready(gw)).status).toBe(503)
    // The device goes away without its PUBACK: the gateway stops holding the publish (the
    // device would resend it) and readiness no longer depends on a later success.
    client.end(true)
    const deadline = Date.now() + 5000
    while ((await ready(gw)).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect((await ready(gw)).status).toBe(200)
    await lock.released
  })
})
