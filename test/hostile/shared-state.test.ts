import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connackCode, deviceOptions } from '../helpers/gateway.js'
import { ADMIN_TOKEN, MiB, expectSurvived, startHostileGateway, underAttack, type HostileGateway } from '../helpers/hostile.js'
import { postgresTestsEnabled, postgresUrl, testSchema, type TestSchema } from '../helpers/postgres.js'

/**
 * A gateway on PostgreSQL state (the embedded stream: one instance), attacked where scale-out
 * added surface: GET /api/instances (unauthenticated, malformed and flooded requests), and the
 * shared state stalling under it (a table locked by someone else): connects are refused with
 * CONNACK 3 within the statement timeout instead of hanging, nothing crashes, and everything
 * works again once the lock is gone.
 */
describe.runIf(postgresTestsEnabled('test/hostile/shared-state.test.ts'))('hostile: instances API and a stalled PostgreSQL state', () => {
  let gw: HostileGateway
  let schema: TestSchema
  let canary: { deviceId: string; token: string }
  const password = new URL(postgresUrl()).password

  beforeAll(async () => {
    schema = testSchema()
    gw = await startHostileGateway({
      env: { STREAMGATE_STATE_BACKEND: 'postgres', STREAMGATE_POSTGRES_URL: postgresUrl() },
      args: ['--set', `state.postgres.schema=${schema.schema}`, '--set', 'state.postgres.statementTimeoutMs=1000', '--set', 'cluster.instanceId=hostile-pg'],
    })
    canary = await gw.addSasDevice('canary')
  }, 120_000)

  afterAll(async () => {
    await gw?.stop()
    await schema?.drop()
  })

  it('refuses connects with CONNACK 3 while the ownership table is locked, within the statement timeout, and recovers', async () => {
    const held = await schema.state.pool.connect()
    try {
      await held.query('BEGIN')
      await held.query('LOCK TABLE device_owners IN ACCESS EXCLUSIVE MODE')
      const started = Date.now()
      const codes = await Promise.all(Array.from({ length: 20 }, () => connackCode(gw.mqttUrl, deviceOptions(canary.deviceId, canary.token, { connectTimeout: 10_000 }))))
      const tookMs = Date.now() - started
      console.log(`[hostile] 20 connects against a locked ownership table: CONNACK ${[...new Set(codes)].join(',')} within ${tookMs} ms (statement timeout 1000 ms)`)
      expect(new Set(codes)).toEqual(new Set([3]))
      expect(tookMs).toBeLessThan(8000)
      expect(await gw.alive()).toBe(true)
      // The readiness probe still answers (the stream is fine; the state is the one stalled).
      expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200)
    } finally {
      await held.query('ROLLBACK').catch(() => undefined)
      held.release()
    }
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/streamgate_auth_failures_total\{code="E_REGISTRY_UNAVAILABLE"\} [1-9]/)
    // Once the lock is gone, devices connect and publish as before.
    const outcome = await underAttack(gw, canary, async () => new Promise((r) => setTimeout(r, 1500)))
    await expectSurvived(gw, 'ownership table locked then released', outcome, { rssGrowthBytes: 64 * MiB })
  })

  it('GET /api/instances: refused without the token, never shows the database password, and survives a flood', async () => {
    const url = `${gw.httpUrl}/api/instances`
    expect((await fetch(url)).status).toBe(401)
    expect((await fetch(url, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(url, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{"instanceId":"x"}' })
      expect(res.status, method).toBe(404)
    }
    const outcome = await underAttack(gw, canary, async () => {
      // 400 requests at once from one address: past http.maxConnections (128) the edge closes
      // connections (idle ones first), so some are cut; every one answered is a 200.
      const answers = await Promise.all(
        Array.from({ length: 400 }, (_, i) =>
          fetch(`${url}?${'q'.repeat(i % 50)}=${'%00'.repeat(i % 7)}&limit=-1`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).then(
            async (r) => ({ status: r.status, text: await r.text() }),
            () => ({ status: 0, text: '' }),
          ),
        ),
      )
      return answers
    })
    const answered = outcome.result.filter((a) => a.status !== 0)
    console.log(`[hostile] 400 concurrent GET /api/instances: ${answered.length} answered, ${400 - answered.length} connections cut by the edge`)
    expect(new Set(answered.map((a) => a.status))).toEqual(new Set([200]))
    expect(answered.length).toBeGreaterThanOrEqual(100)
    const body = JSON.parse(answered[0]!.text) as { instanceId: string; instances: Array<{ instanceId: string; alive: boolean; self: boolean; streamBackend: string }> }
    expect(body.instanceId).toBe('hostile-pg')
    expect(body.instances).toEqual([expect.objectContaining({ instanceId: 'hostile-pg', alive: true, self: true, streamBackend: 'embedded' })])
    if (password) expect(answered.some((a) => a.text.includes(password))).toBe(false)
    await expectSurvived(gw, 'instances API flood', outcome, { rssGrowthBytes: 64 * MiB })
  })
})
