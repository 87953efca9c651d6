import { afterEach, describe, expect, it } from 'vitest'
import { PostgresCluster } from '../../src/cluster/postgres-cluster.js'
import type { Signal } from '../../src/cluster/types.js'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'
import { createLogger } from '../../src/observability/logger.js'
import { postgresTestsEnabled, testSchema, type TestSchema } from '../helpers/postgres.js'

const enabled = postgresTestsEnabled('test/contract/postgres-cluster.test.ts')
const logger = createLogger('silent')

async function until(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.runIf(enabled)('PostgresCluster: instances, ownership, signals', () => {
  let schema: TestSchema
  const states: PostgresState[] = []
  const nodes: PostgresCluster[] = []

  function node(instanceId: string, over: Partial<ConstructorParameters<typeof PostgresCluster>[0]> = {}): PostgresCluster {
    schema ??= testSchema()
    const state = createPostgresState({ url: schema.url, schema: schema.schema, poolSize: 3, statementTimeoutMs: 5000, connectTimeoutMs: 5000 })
    states.push(state)
    const n = new PostgresCluster({
      state, url: schema.url, instanceId, advertiseUrl: `http://127.0.0.1:1/${instanceId}`, streamBackend: 'kafka',
      heartbeatIntervalMs: 100, heartbeatTimeoutMs: 600, signalPollMs: 2000, connections: () => 7, logger, ...over,
    })
    nodes.push(n)
    return n
  }

  afterEach(async () => {
    for (const n of nodes.splice(0)) await n.stop()
    for (const s of states.splice(0)) await s.end()
    await schema?.drop()
    schema = undefined as unknown as TestSchema
  })

  it('lists instances with heartbeat and connection count; a stopped one is not alive', async () => {
    const a = node('a')
    const b = node('b')
    await a.start()
    await b.start()
    await until(async () => (await a.instances()).every((i) => i.connections === 7))
    const list = await a.instances()
    expect(list.map((i) => [i.instanceId, i.alive, i.self, i.streamBackend])).toEqual([['a', true, true, 'kafka'], ['b', true, false, 'kafka']])
    expect(list[1]!.advertiseUrl).toBe('http://127.0.0.1:1/b')
    await b.stop()
    expect((await a.instances()).find((i) => i.instanceId === 'b')?.alive).toBe(false)
  })

  it('keeps its heartbeat while every connection of its pool is held (a connect storm)', async () => {
    const a = node('a')
    const b = node('b')
    await a.start()
    await b.start()
    expect(await a.claim('dev-a', 'c1')).toMatchObject({ epoch: 1 })
    // Take all of a's pool (3 connections) for longer than the heartbeat timeout (600 ms).
    const held = await Promise.all([0, 1, 2].map(() => states[0]!.pool.connect()))
    try {
      await new Promise((r) => setTimeout(r, 1500))
      expect((await b.instances()).find((i) => i.instanceId === 'a')?.alive).toBe(true)
      // b's reaper finds a alive: its device stays its own.
      expect(await b.reapOwnerships()).not.toContain('dev-a')
      expect(await b.ownerOf('dev-a')).toEqual({ instanceId: 'a', epoch: 1 })
    } finally {
      for (const c of held) c.release()
    }
  })

  it('refuses a second instance when either runs on the embedded stream, with a clear error', async () => {
    await node('a', { streamBackend: 'embedded' }).start()
    await expect(node('b').start()).rejects.toMatchObject({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('need stream.backend kafka: instance a runs on the embedded stream') })
    await expect(node('c', { streamBackend: 'embedded' }).start()).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' })
  })

  it('lets one embedded instance restart under its own id', async () => {
    const first = node('solo', { streamBackend: 'embedded' })
    await first.start()
    // A SIGKILL leaves the row alive for the heartbeat timeout; the same id may come back at once.
    await node('solo', { streamBackend: 'embedded' }).start()
  })

  it('raises the epoch at every claim and tells the previous live owner to let go', async () => {
    const a = node('a')
    const b = node('b')
    const heard: Signal[] = []
    a.onSignal('replace', (s) => void heard.push(s))
    await a.start()
    await b.start()
    expect(await a.claim('dev1', 'c1')).toEqual({ epoch: 1, replaced: null })
    expect(await a.ownerOf('dev1')).toEqual({ instanceId: 'a', epoch: 1 })
    const started = Date.now()
    expect(await b.claim('dev1', 'c2')).toEqual({ epoch: 2, replaced: 'a' })
    // By NOTIFY, well before the 2 s poll.
    await until(() => heard.length === 1, 1500)
    expect(Date.now() - started).toBeLessThan(1000)
    expect(heard[0]).toEqual({ kind: 'replace', deviceId: 'dev1', body: { epoch: 2 } })
    expect(await b.ownerOf('dev1')).toEqual({ instanceId: 'b', epoch: 2 })
    // A's late release (its connection of epoch 1 closing) does not take the device from B.
    await a.release('dev1', 1)
    expect(await a.ownerOf('dev1')).toEqual({ instanceId: 'b', epoch: 2 })
    // B's release of its own epoch does; the next claim still gets a larger epoch.
    await b.release('dev1', 2)
    expect(await a.ownerOf('dev1')).toBeNull()
    expect((await a.claim('dev1', 'c3')).epoch).toBe(3)
  })

  it('serialises concurrent claims of one device: distinct epochs, the last one owns it', async () => {
    const a = node('a')
    const b = node('b')
    await a.start()
    await b.start()
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).claim('dev1', `c${i}`)))
    const epochs = results.map((r) => r.epoch).sort((x, y) => x - y)
    expect(epochs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    const owner = await a.ownerOf('dev1')
    expect(owner?.epoch).toBe(10)
  })

  it('ignores the ownerships of an instance whose heartbeat lapsed, and reaps them with a raised epoch', async () => {
    const a = node('a')
    const b = node('b', { heartbeatIntervalMs: 60_000 })
    await a.start()
    await b.start()
    await b.claim('dev1', 'c1')
    await b.claim('dev2', 'c2')
    expect((await a.ownerOf('dev1'))?.instanceId).toBe('b')
    // b writes no heartbeat (interval of a minute): after 600 ms it counts as dead.
    await until(async () => (await a.ownerOf('dev1')) === null, 3000)
    expect(await a.reapOwnerships()).toEqual(['dev1', 'dev2'])
    expect(await a.reapOwnerships()).toEqual([])
    // Its late release cannot take the device back, and a new claim is not told to replace it.
    await b.release('dev1', 1)
    expect(await a.claim('dev1', 'c3')).toEqual({ epoch: 3, replaced: null })
  })

  it('delivers signals in order by NOTIFY, and by the poll when no notification came', async () => {
    const a = node('a', { signalPollMs: 300 })
    const b = node('b')
    const heard: Signal[] = []
    a.onSignal('kick', (s) => void heard.push(s))
    a.onSignal('deliver', (s) => void heard.push(s))
    await a.start()
    await b.start()
    await b.signal('a', 'kick', 'd1', { reason: 'disabled' })
    await b.signal('a', 'deliver', 'd1')
    await until(() => heard.length === 2, 1500)
    expect(heard.map((s) => s.kind)).toEqual(['kick', 'deliver'])
    // A row written without NOTIFY (a lost notification) is found by the poll.
    await schema.state.pool.query(`INSERT INTO ${schema.schema}.cluster_signals (instance_id, kind, device_id, body) VALUES ('a', 'kick', 'd2', '{}')`)
    await until(() => heard.length === 3, 1500)
    expect(heard[2]).toMatchObject({ kind: 'kick', deviceId: 'd2' })
    // Handled signals are gone.
    expect((await schema.state.pool.query(`SELECT count(*)::int AS n FROM ${schema.schema}.cluster_signals`)).rows[0].n).toBe(0)
  })
})
