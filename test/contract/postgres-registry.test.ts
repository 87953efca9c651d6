import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { appliedVersion } from '../../src/postgres/migrate.js'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'
import { PostgresAnalyticsStore } from '../../src/registry/postgres-analytics-store.js'
import { ANALYTICS_MIGRATIONS } from '../../src/registry/postgres-analytics-schema.js'
import { PostgresDeviceRegistry } from '../../src/registry/postgres-registry.js'
import { PostgresRouteStore } from '../../src/registry/postgres-route-store.js'
import { ROUTING_MIGRATIONS } from '../../src/registry/postgres-routing-schema.js'
import { REGISTRY_MIGRATIONS } from '../../src/registry/postgres-schema.js'
import type { AggregateDefinition } from '../../src/analytics/types.js'
import type { EndpointDefinition } from '../../src/routing/types.js'
import { postgresTestsEnabled, testSchema, type TestSchema } from '../helpers/postgres.js'
import { deviceRegistryContract } from './device-registry.contract.js'

const enabled = postgresTestsEnabled('test/contract/postgres-registry.test.ts')

describe.runIf(enabled)('on PostgreSQL', () => {
  deviceRegistryContract('PostgresDeviceRegistry', async () => {
    const schema = testSchema()
    const registry = new PostgresDeviceRegistry({ state: schema.state })
    return {
      registry,
      async cleanup() {
        await registry.stop()
        await schema.drop()
      },
    }
  })

  describe('PostgresDeviceRegistry with several gateways on one schema', () => {
    const schemas: TestSchema[] = []
    const pools: PostgresState[] = []
    /** A fresh schema, and `count` started registries on it, each with a pool of its own (a gateway each). */
    const gateways = async (count: number, options: Parameters<typeof testSchema>[0] = {}): Promise<{ schema: TestSchema; registries: PostgresDeviceRegistry[] }> => {
      const schema = testSchema(options)
      schemas.push(schema)
      const registries = [new PostgresDeviceRegistry({ state: schema.state })]
      for (let i = 1; i < count; i++) registries.push(new PostgresDeviceRegistry({ state: secondPool(schema) }))
      for (const r of registries) await r.start()
      return { schema, registries }
    }
    const secondPool = (schema: TestSchema, poolSize = 4): PostgresState => {
      const state = createPostgresState({ url: schema.url, schema: schema.schema, poolSize, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 })
      pools.push(state)
      return state
    }
    afterEach(async () => {
      await Promise.all(pools.splice(0).map((p) => p.end()))
      await Promise.all(schemas.splice(0).map((s) => s.drop()))
    })

    it('hands each outbox row to one of several concurrent claimers and keeps every device in order', async () => {
      const { registries } = await gateways(2)
      const [a] = registries as [PostgresDeviceRegistry, PostgresDeviceRegistry]
      const devices = Array.from({ length: 8 }, (_, i) => `dev-${i}`)
      for (const id of devices) await a.create({ deviceId: id })
      const rounds = 15
      for (let round = 0; round < rounds; round++) {
        await Promise.all(devices.map((id) => a.recordConnection(id, round % 2 === 0 ? 'connected' : 'disconnected', new Date())))
      }
      const total = devices.length * (rounds + 1)
      expect(await a.pendingEventCount()).toBe(total)
      // What reached "the stream", per device, in the order the writers appended it.
      const written = new Map<string, string[]>()
      const held = new Set<number>()
      let claims = 0
      const writer = async (registry: PostgresDeviceRegistry): Promise<void> => {
        for (let idle = 0; idle < 200 && (await registry.pendingEventCount()) > 0; ) {
          const batch = await registry.pendingEvents(5)
          claims++
          if (batch.length === 0) {
            idle++
            await sleep(1)
            continue
          }
          for (const p of batch) {
            expect(held.has(p.id)).toBe(false)
            held.add(p.id)
          }
          await sleep(Math.random() * 3)
          for (const p of batch) held.delete(p.id)
          // Now and then the stream is down: the claim goes back and another writer may take it.
          if (Math.random() < 0.2) {
            await registry.releaseEvents(batch.map((p) => p.id))
            continue
          }
          for (const p of batch) written.set(p.event.deviceId, [...(written.get(p.event.deviceId) ?? []), `${p.event.type}:${p.event.sequence ?? ''}`])
          await registry.removeEvents(batch.map((p) => p.id))
        }
      }
      await Promise.all(registries.flatMap((r) => [writer(r), writer(r)]))
      expect(await a.pendingEventCount()).toBe(0)
      const expected = ['created:', ...Array.from({ length: rounds }, (_, i) => `${i % 2 === 0 ? 'connected' : 'disconnected'}:${i + 1}`)]
      for (const id of devices) expect(written.get(id)).toEqual(expected)
      expect(claims).toBeGreaterThan(total / 5)
    })

    it('holds back the later events of a device whose older event is locked by a claim still in flight', async () => {
      const { schema, registries } = await gateways(1)
      const registry = registries[0]!
      await registry.create({ deviceId: 'a' })
      await registry.recordConnection('a', 'connected', new Date())
      await registry.create({ deviceId: 'b' })
      const { rows } = await schema.state.pool.query<{ id: string }>("SELECT id FROM device_event_outbox WHERE device_id = 'a' ORDER BY id LIMIT 1")
      // Another gateway's claim of a's first event, locked and not yet committed: invisible as a claim.
      const other = await schema.state.pool.connect()
      try {
        await other.query('BEGIN')
        await other.query('SELECT 1 FROM device_event_outbox WHERE id = $1 FOR UPDATE', [rows[0]!.id])
        const claimed = await registry.pendingEvents(10)
        expect(claimed.map((p) => [p.event.deviceId, p.event.type])).toEqual([['b', 'created']])
        await other.query('ROLLBACK')
      } finally {
        other.release()
      }
      // That claim never committed: a's events come out, in order.
      expect((await registry.pendingEvents(10)).map((p) => [p.event.deviceId, p.event.type])).toEqual([['a', 'created'], ['a', 'connected']])
    })

    it('loses no twin update when two gateways patch one twin at the same moment', async () => {
      const { registries } = await gateways(2)
      const [a, b] = registries as [PostgresDeviceRegistry, PostgresDeviceRegistry]
      await a.create({ deviceId: 'tw' })
      const limits = { maxBytes: 32 * 1024, maxDepth: 10 }
      await Promise.all(Array.from({ length: 20 }, (_, i) => [a.patchTwin('tw', 'reported', { [`a${i}`]: i }, limits), b.patchTwin('tw', 'reported', { [`b${i}`]: i }, limits)]).flat())
      const twin = await b.getTwin('tw')
      expect(twin?.reported.version).toBe(41)
      expect(Object.keys(twin!.reported.properties)).toHaveLength(40)
      const events = (await a.pendingEvents(100)).filter((p) => p.event.type === 'twin-reported')
      expect(events.map((p) => (p.event.details as { version: number }).version)).toEqual(Array.from({ length: 40 }, (_, i) => i + 2))
      // Optimistic concurrency holds across gateways too: of ten patches at version 41, one wins.
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).patchTwin('tw', 'desired', { n: i }, { ...limits, ifVersion: 1 })))
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
      expect(results.filter((r) => r.status === 'rejected').map((r) => (r.reason as { code: string }).code)).toEqual(Array(9).fill('E_TWIN_VERSION_MISMATCH'))
    })

    it('applies each component’s migrations once when several gateways start at the same moment', async () => {
      const schema = testSchema()
      schemas.push(schema)
      const states = [schema.state, secondPool(schema, 2), secondPool(schema, 2), secondPool(schema, 2)]
      const components = states.flatMap((state) => [new PostgresDeviceRegistry({ state }), new PostgresRouteStore({ state }), new PostgresAnalyticsStore({ state })])
      await Promise.all(components.map((c) => c.start()))
      expect(await appliedVersion(schema.state, 'registry')).toBe(REGISTRY_MIGRATIONS.length)
      expect(await appliedVersion(schema.state, 'routing')).toBe(ROUTING_MIGRATIONS.length)
      expect(await appliedVersion(schema.state, 'analytics')).toBe(ANALYTICS_MIGRATIONS.length)
      const { rows } = await schema.state.pool.query('SELECT component, count(*)::int AS n FROM streamgate_migrations GROUP BY component ORDER BY component')
      expect(rows).toEqual([
        { component: 'analytics', n: ANALYTICS_MIGRATIONS.length },
        { component: 'registry', n: REGISTRY_MIGRATIONS.length },
        { component: 'routing', n: ROUTING_MIGRATIONS.length },
      ])
      // One set of tables: what one gateway writes, the others read.
      await (components[0] as PostgresDeviceRegistry).create({ deviceId: 'shared' })
      expect((await (components[9] as PostgresDeviceRegistry).get('shared'))?.deviceId).toBe('shared')
      expect(await (components[1] as PostgresRouteStore).version()).toBe(await (components[10] as PostgresRouteStore).version())
    })

    it('writes the device event in the transaction of its change: when the event cannot be written, the change is undone', async () => {
      const { schema, registries } = await gateways(1)
      const registry = registries[0]!
      await registry.create({ deviceId: 'tx' })
      await registry.recordConnection('tx', 'connected', new Date('2030-01-01T00:00:00.000Z'))
      const before = await registry.get('tx')
      const twinBefore = await registry.getTwin('tx')
      const pendingBefore = await registry.pendingEventCount()
      await schema.state.pool.query(`CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$;
        CREATE TRIGGER no_events BEFORE INSERT ON device_event_outbox FOR EACH ROW EXECUTE FUNCTION refuse_events()`)
      await expect(registry.create({ deviceId: 'tx-2' })).rejects.toThrow('outbox refused')
      await expect(registry.recordConnection('tx', 'disconnected', new Date())).rejects.toThrow('outbox refused')
      await expect(registry.resetConnections(new Date())).rejects.toThrow('outbox refused')
      await expect(registry.patchTwin('tx', 'reported', { a: 1 }, { maxBytes: 1024, maxDepth: 10 })).rejects.toThrow('outbox refused')
      await expect(registry.remove('tx')).rejects.toThrow('outbox refused')
      await schema.state.pool.query('DROP TRIGGER no_events ON device_event_outbox')
      expect(await registry.get('tx-2')).toBeNull()
      expect(await registry.get('tx')).toEqual(before)
      expect(await registry.getTwin('tx')).toEqual(twinBefore)
      expect(await registry.pendingEventCount()).toBe(pendingBefore)
      expect(await registry.recordConnection('tx', 'disconnected', new Date())).toBe(2)
      expect(await registry.pendingEventCount()).toBe(pendingBefore + 1)
    })

    it('answers E_REGISTRY_UNAVAILABLE for a lock held past its timeout, before start, and on an ended pool; stop leaves the pool open', async () => {
      const { schema, registries } = await gateways(1, { statementTimeoutMs: 300 })
      const registry = registries[0]!
      await registry.create({ deviceId: 'x' })
      const admin = await schema.state.pool.connect()
      try {
        await admin.query('BEGIN')
        await admin.query('LOCK TABLE devices, device_event_outbox IN ACCESS EXCLUSIVE MODE')
        // lock_timeout equals statement_timeout here: either may fire first (55P03 or 57014).
        await expect(registry.get('x')).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE', details: { sqlState: expect.stringMatching(/^(55P03|57014)$/) } })
        await expect(registry.recordConnection('x', 'connected', new Date())).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
        await expect(registry.pendingEvents(10)).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
        await admin.query('ROLLBACK')
      } finally {
        admin.release()
      }
      await registry.stop()
      await expect(registry.get('x')).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
      // The pool is the caller's: still open, and a registry started on it again works.
      expect((await schema.state.pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
      await registry.start()
      expect((await registry.get('x'))?.connectionSeq).toBe(0)
      const gone = secondPool(schema)
      const late = new PostgresDeviceRegistry({ state: gone })
      await late.start()
      await gone.end()
      await expect(late.get('x')).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
    })
  })

  it('lists ids and names in byte order in a database whose default collation is not C', async (ctx) => {
    const admin = testSchema()
    const database = `t_icu_${randomBytes(4).toString('hex')}`
    const client = new pg.Client({ connectionString: admin.url })
    await client.connect()
    try {
      try {
        await client.query(`CREATE DATABASE ${database} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`)
      } catch (err) {
        ctx.skip(`no ICU database here: ${(err as Error).message}`)
      }
      const url = new URL(admin.url)
      url.pathname = `/${database}`
      const state = createPostgresState({ url: url.toString(), schema: 'sg', poolSize: 2, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 })
      try {
        // en-US would sort these a, a_1, a-1, b, B.
        const ids = ['b', 'B', 'a_1', 'a-1', 'a']
        const byteOrder = ['B', 'a', 'a-1', 'a_1', 'b']
        const registry = new PostgresDeviceRegistry({ state })
        const routes = new PostgresRouteStore({ state })
        const analytics = new PostgresAnalyticsStore({ state })
        await Promise.all([registry.start(), routes.start(), analytics.start()])
        for (const id of ids) {
          await registry.create({ deviceId: id })
          await routes.putEndpoint({ name: id, type: 'stream', topic: 'out' } as EndpointDefinition)
          await analytics.putAggregate({ name: id, window: { sizeMs: 1000 }, functions: [{ fn: 'count', path: '$body.v' }] } as AggregateDefinition)
        }
        expect((await registry.list()).map((d) => d.deviceId)).toEqual(byteOrder)
        expect((await registry.list({ after: 'a' })).map((d) => d.deviceId)).toEqual(['a-1', 'a_1', 'b'])
        expect((await routes.load()).endpoints.map((e) => e.name)).toEqual(byteOrder)
        expect((await analytics.load()).aggregates.map((a) => a.name)).toEqual(byteOrder)
      } finally {
        await state.end()
      }
    } finally {
      await client.query(`DROP DATABASE IF EXISTS ${database}`).catch(() => undefined)
      await client.end()
      await admin.drop()
    }
  })
})
