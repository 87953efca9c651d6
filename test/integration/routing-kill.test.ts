import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDevice, sasFor, waitFor } from '../helpers/gateway.js'
import { api, sleep } from '../helpers/commands.js'
import { ensureBuilt, startChildGateway, type ChildGateway } from '../helpers/child-gateway.js'
import { publishJson, startWebhookReceiver, type WebhookReceiver } from '../helpers/routing.js'
import type { Device } from '../../src/registry/types.js'

/**
 * SIGKILL mid-routing: the gateway process dies while a webhook endpoint is behind. After the
 * restart every message still reaches the webhook, in order per device, and what is sent twice is
 * at most one read batch (readBatch records: the batch that was delivered but not yet committed).
 */
const TOKEN = 'child-admin-token-0123456789'
const READ_BATCH = 10
const PER_DEVICE = 100

describe('routing through a SIGKILL', () => {
  let dataDir: string
  let hook: WebhookReceiver
  let gateway: ChildGateway | null = null

  beforeAll(async () => {
    ensureBuilt()
    dataDir = mkdtempSync(join(tmpdir(), 'streamgate-routing-kill-'))
    hook = await startWebhookReceiver()
  })

  afterAll(async () => {
    await gateway?.kill()
    await hook.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('loses nothing and resends at most the uncommitted batch', async () => {
    const call = (g: ChildGateway, method: string, path: string, body?: unknown) => api(`http://127.0.0.1:${g.httpPort}`, method, path, body, { token: TOKEN })
    // Slow: the kill comes while the endpoint is far behind.
    hook.respond = async () => {
      await sleep(20)
      return 200
    }
    gateway = await startChildGateway(dataDir, { STREAMGATE_LOG_LEVEL: 'error' })
    expect((await call(gateway, 'PUT', '/api/endpoints/hook', { type: 'webhook', url: hook.url, maxBatch: READ_BATCH, readBatch: READ_BATCH })).status).toBe(201)
    expect((await call(gateway, 'PUT', '/api/routes/all', { condition: 'true', endpoints: ['hook'] })).status).toBe(201)
    const ids = ['rk-a', 'rk-b']
    await Promise.all(
      ids.map(async (id) => {
        const created = await call(gateway!, 'POST', '/api/devices', { deviceId: id })
        const client = await connectDevice(`mqtt://127.0.0.1:${gateway!.mqttPort}`, id, sasFor(created.body as Device))
        for (let seq = 0; seq < PER_DEVICE; seq++) await publishJson(client, id, { seq })
        await client.endAsync(true)
      }),
    )
    await waitFor(() => hook.delivered().length >= 40, 20_000, 'some deliveries before the kill')
    await gateway.kill('SIGKILL')
    const beforeKill = hook.delivered().length
    expect(beforeKill).toBeLessThan(ids.length * PER_DEVICE)

    gateway = await startChildGateway(dataDir, { STREAMGATE_LOG_LEVEL: 'error' })
    const key = (m: { deviceId: string; body: string }): string => `${m.deviceId}/${m.body}`
    await waitFor(() => new Set(hook.delivered().map(key)).size >= ids.length * PER_DEVICE, 30_000, 'every message after the restart')
    await sleep(300)
    const all = hook.delivered()
    const duplicates = all.length - new Set(all.map(key)).size
    console.log(`SIGKILL mid-routing: ${beforeKill} delivered before, ${all.length - beforeKill} after, ${duplicates} sent twice (readBatch ${READ_BATCH})`)
    expect(duplicates).toBeLessThanOrEqual(READ_BATCH)
    for (const id of ids) {
      const seqs = all.filter((m) => m.deviceId === id).map((m) => (JSON.parse(m.body) as { seq: number }).seq)
      expect([...new Set(seqs)]).toEqual([...Array(PER_DEVICE).keys()])
    }
  }, 90_000)
})
