import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ErrorCode } from '../../src/errors/catalogue.js'
import { checkEndpoint, checkRoute, type EndpointInput, type RouteInput } from '../../src/routing/definitions.js'
import type { EndpointDefinition, RouteDefinition, RouteStore } from '../../src/routing/types.js'

/**
 * The one contract every RouteStore backend passes unchanged (SQLite, PostgreSQL), as
 * device-registry.contract.ts is for the registry. The factory returns an empty store, not
 * necessarily started; `another()` opens a second store on the same storage, as a second gateway
 * or the CLI would (not started); `cleanup` stops both and removes whatever was created.
 */
export type RouteStoreFactory = () => Promise<{ store: RouteStore; another(): Promise<RouteStore>; cleanup(): Promise<void> }>

async function expectCode(promise: Promise<unknown>, code: ErrorCode, details?: Record<string, unknown>): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name: 'GatewayError', code, ...(details ? { details } : {}) })
}

/** Inputs as the API hands them over: unchecked, defaults not filled (the store checks them). */
const endpoint = (input: Partial<EndpointInput> & { name: string }): EndpointDefinition => ({ type: 'stream', topic: 'out', ...input }) as EndpointDefinition
const route = (input: Partial<RouteInput> & { name: string; endpoints: string[] }): RouteDefinition => input as RouteDefinition

export function routeStoreContract(name: string, factory: RouteStoreFactory): void {
  describe(`RouteStore contract: ${name}`, () => {
    let store: RouteStore
    let another: () => Promise<RouteStore>
    let cleanup: () => Promise<void>

    beforeEach(async () => {
      const made = await factory()
      store = made.store
      another = made.another
      cleanup = made.cleanup
      await store.start()
      await store.start()
    })

    afterEach(async () => {
      await cleanup()
    })

    it('starts empty, with a version that load() and version() agree on', async () => {
      const loaded = await store.load()
      expect(loaded).toMatchObject({ endpoints: [], routes: [] })
      expect(Number.isInteger(loaded.version) && loaded.version >= 0).toBe(true)
      expect(await store.version()).toBe(loaded.version)
    })

    describe('endpoints', () => {
      it('creates an endpoint, then replaces it; load returns it checked, defaults filled', async () => {
        expect(await store.putEndpoint(endpoint({ name: 'ep' }))).toEqual({ created: true })
        expect((await store.load()).endpoints).toEqual([checkEndpoint({ name: 'ep', type: 'stream', topic: 'out' })])
        expect(await store.putEndpoint(endpoint({ name: 'ep', topic: 'elsewhere', maxAttempts: 3 }))).toEqual({ created: false })
        const { endpoints } = await store.load()
        expect(endpoints).toEqual([checkEndpoint({ name: 'ep', type: 'stream', topic: 'elsewhere', maxAttempts: 3 })])
        expect(endpoints[0]).toMatchObject({ enrichments: [], backoffMs: 200, readBatch: 500 })
      })

      it('keeps a webhook endpoint whole, its authHeader and enrichments included', async () => {
        const input = { name: 'hook', type: 'webhook', url: 'https://example.test/in?x=1', authHeader: 'Bearer s3cret-ü', enrichments: [{ key: 'site', value: '$twin.tags.site' }, { key: 'hub', value: '$hubName' }] } as const
        await store.putEndpoint(input as unknown as EndpointDefinition)
        expect((await store.load()).endpoints).toEqual([checkEndpoint(input)])
      })

      it.each([
        ['a bad name', { name: 'bad name' }],
        ['the name ..', { name: '..' }],
        ['an unknown type', { name: 'e', type: 'ftp' }],
        ['an unknown field', { name: 'e', colour: 'red' }],
        ['maxBackoffMs below backoffMs', { name: 'e', backoffMs: 1000, maxBackoffMs: 10 }],
        ['a URL with credentials', { name: 'e', type: 'webhook', url: 'https://u:p@example.test/' }],
      ])('refuses an endpoint with %s (E_BAD_REQUEST) and changes nothing', async (_label, input) => {
        const before = await store.version()
        await expectCode(store.putEndpoint(endpoint(input as { name: string })), 'E_BAD_REQUEST')
        expect(await store.load()).toEqual({ version: before, endpoints: [], routes: [] })
      })

      it('removes an endpoint; an unknown one is E_ENDPOINT_NOT_FOUND', async () => {
        await store.putEndpoint(endpoint({ name: 'gone' }))
        await store.putEndpoint(endpoint({ name: 'stays' }))
        await store.removeEndpoint('gone')
        expect((await store.load()).endpoints.map((e) => e.name)).toEqual(['stays'])
        await expectCode(store.removeEndpoint('gone'), 'E_ENDPOINT_NOT_FOUND', { endpoint: 'gone' })
        await expectCode(store.removeEndpoint('never'), 'E_ENDPOINT_NOT_FOUND')
      })
    })

    describe('routes', () => {
      it('creates and replaces a route naming existing endpoints; load returns it checked', async () => {
        await store.putEndpoint(endpoint({ name: 'a' }))
        await store.putEndpoint(endpoint({ name: 'b' }))
        expect(await store.putRoute(route({ name: 'r', endpoints: ['a'] }))).toEqual({ created: true })
        expect((await store.load()).routes).toEqual([checkRoute({ name: 'r', endpoints: ['a'] })])
        const replacement = { name: 'r', source: 'device-events', condition: "type = 'connected'", endpoints: ['b', 'a'], enabled: false } as const
        expect(await store.putRoute(route({ ...replacement, endpoints: [...replacement.endpoints] }))).toEqual({ created: false })
        expect((await store.load()).routes).toEqual([checkRoute({ ...replacement, endpoints: ['b', 'a'] })])
      })

      it('refuses a route naming an endpoint that does not exist (E_ENDPOINT_NOT_FOUND) and stores nothing', async () => {
        await store.putEndpoint(endpoint({ name: 'a' }))
        const before = await store.version()
        await expectCode(store.putRoute(route({ name: 'r', endpoints: ['missing'] })), 'E_ENDPOINT_NOT_FOUND', { endpoint: 'missing', route: 'r' })
        await expectCode(store.putRoute(route({ name: 'r', endpoints: ['a', 'missing'] })), 'E_ENDPOINT_NOT_FOUND', { endpoint: 'missing', route: 'r' })
        expect((await store.load()).routes).toEqual([])
        expect(await store.version()).toBe(before)
        // Nor does a refused replacement touch the route it would have replaced.
        await store.putRoute(route({ name: 'r', endpoints: ['a'] }))
        await expectCode(store.putRoute(route({ name: 'r', endpoints: ['missing'] })), 'E_ENDPOINT_NOT_FOUND')
        expect((await store.load()).routes).toEqual([checkRoute({ name: 'r', endpoints: ['a'] })])
      })

      it('refuses a malformed route with E_BAD_REQUEST and a bad condition with E_ROUTE_QUERY_INVALID', async () => {
        await store.putEndpoint(endpoint({ name: 'a' }))
        await expectCode(store.putRoute(route({ name: 'r', endpoints: [] })), 'E_BAD_REQUEST')
        await expectCode(store.putRoute(route({ name: 'r', endpoints: ['a', 'a'] })), 'E_BAD_REQUEST')
        await expectCode(store.putRoute(route({ name: 'r', endpoints: ['a'], source: 'nowhere' as 'telemetry' })), 'E_BAD_REQUEST')
        await expectCode(store.putRoute(route({ name: 'r', endpoints: ['a'], condition: 'temp >' })), 'E_ROUTE_QUERY_INVALID')
        expect((await store.load()).routes).toEqual([])
      })

      it('removes a route; an unknown one is E_ROUTE_NOT_FOUND', async () => {
        await store.putEndpoint(endpoint({ name: 'a' }))
        await store.putRoute(route({ name: 'r1', endpoints: ['a'] }))
        await store.putRoute(route({ name: 'r2', endpoints: ['a'] }))
        await store.removeRoute('r1')
        expect((await store.load()).routes.map((r) => r.name)).toEqual(['r2'])
        await expectCode(store.removeRoute('r1'), 'E_ROUTE_NOT_FOUND', { route: 'r1' })
      })
    })

    describe('endpoints in use', () => {
      it('refuses to remove an endpoint a route names, enabled or not (E_ENDPOINT_IN_USE), until no route does', async () => {
        await store.putEndpoint(endpoint({ name: 'used' }))
        await store.putEndpoint(endpoint({ name: 'other' }))
        await store.putRoute(route({ name: 'r', endpoints: ['other', 'used'], enabled: false }))
        const before = await store.version()
        await expectCode(store.removeEndpoint('used'), 'E_ENDPOINT_IN_USE', { endpoint: 'used', route: 'r' })
        expect((await store.load()).endpoints.map((e) => e.name)).toEqual(['other', 'used'])
        expect(await store.version()).toBe(before)
        // Replacing the route so it no longer names the endpoint frees it.
        await store.putRoute(route({ name: 'r', endpoints: ['other'] }))
        await store.removeEndpoint('used')
        await expectCode(store.removeEndpoint('other'), 'E_ENDPOINT_IN_USE')
        await store.removeRoute('r')
        await store.removeEndpoint('other')
        expect(await store.load()).toMatchObject({ endpoints: [], routes: [] })
      })

      it('never lets a route name a missing endpoint when a write and a removal race from two stores', async () => {
        const other = await another()
        await other.start()
        for (let i = 0; i < 12; i++) {
          await store.putEndpoint(endpoint({ name: `e${i}` }))
          const [put, removed] = await Promise.allSettled([store.putRoute(route({ name: `r${i}`, endpoints: [`e${i}`] })), other.removeEndpoint(`e${i}`)])
          // Exactly one of the two wins: the route (and the removal is refused) or the removal.
          expect([put.status, removed.status].sort()).toEqual(['fulfilled', 'rejected'])
          const loser = (put.status === 'rejected' ? put.reason : (removed as PromiseRejectedResult).reason) as { code?: string }
          expect(loser.code).toBe(put.status === 'rejected' ? 'E_ENDPOINT_NOT_FOUND' : 'E_ENDPOINT_IN_USE')
        }
        const { endpoints, routes } = await store.load()
        const names = new Set(endpoints.map((e) => e.name))
        for (const r of routes) for (const e of r.endpoints) expect(names.has(e)).toBe(true)
      })
    })

    it('lists endpoints and routes by name in byte order', async () => {
      const names = ['b', 'B', 'a_1', 'a-1', 'a.1', 'A', '0', 'Z9']
      for (const n of names) await store.putEndpoint(endpoint({ name: n }))
      for (const n of names) await store.putRoute(route({ name: n, endpoints: [n] }))
      // '-' < '.' < digits < upper case < '_' < lower case: ASCII, whatever the database's locale.
      const sorted = ['0', 'A', 'B', 'Z9', 'a-1', 'a.1', 'a_1', 'b']
      const { endpoints, routes } = await store.load()
      expect(endpoints.map((e) => e.name)).toEqual(sorted)
      expect(routes.map((r) => r.name)).toEqual(sorted)
    })

    it('counts every change: the version grows with each write, never with a refused one', async () => {
      const seen = [await store.version()]
      const grew = async (): Promise<void> => {
        const v = await store.version()
        expect(v).toBeGreaterThan(seen.at(-1)!)
        expect((await store.load()).version).toBe(v)
        seen.push(v)
      }
      const same = async (): Promise<void> => expect(await store.version()).toBe(seen.at(-1))
      await store.putEndpoint(endpoint({ name: 'a' }))
      await grew()
      await store.putEndpoint(endpoint({ name: 'a', topic: 'again' }))
      await grew()
      await store.putRoute(route({ name: 'r', endpoints: ['a'] }))
      await grew()
      await store.putRoute(route({ name: 'r', endpoints: ['a'], enabled: false }))
      await grew()
      await store.putRoute(route({ name: 'x', endpoints: ['missing'] })).catch(() => undefined)
      await store.removeEndpoint('a').catch(() => undefined)
      await store.removeRoute('missing').catch(() => undefined)
      await store.removeEndpoint('missing').catch(() => undefined)
      await store.putEndpoint(endpoint({ name: 'bad name' })).catch(() => undefined)
      await same()
      await store.removeRoute('r')
      await grew()
      await store.removeEndpoint('a')
      await grew()
    })

    it('shows another store on the same storage every change at once (nothing cached)', async () => {
      const other = await another()
      await other.start()
      await store.putEndpoint(endpoint({ name: 'a' }))
      expect((await other.load()).endpoints.map((e) => e.name)).toEqual(['a'])
      expect(await other.version()).toBe(await store.version())
      // A route written by the other store may name the endpoint this one wrote.
      expect(await other.putRoute(route({ name: 'r', endpoints: ['a'] }))).toEqual({ created: true })
      expect(await store.putRoute(route({ name: 'r', endpoints: ['a'], condition: 'false' }))).toEqual({ created: false })
      expect((await other.load()).routes).toEqual([checkRoute({ name: 'r', endpoints: ['a'], condition: 'false' })])
      await expectCode(other.removeEndpoint('a'), 'E_ENDPOINT_IN_USE')
      await other.removeRoute('r')
      await store.removeEndpoint('a')
      expect(await other.load()).toEqual({ version: await store.version(), endpoints: [], routes: [] })
    })

    it('answers a name that cannot exist (a NUL, empty, too long) with not found', async () => {
      await expectCode(store.removeEndpoint('bad\u0000name'), 'E_ENDPOINT_NOT_FOUND')
      await expectCode(store.removeEndpoint(''), 'E_ENDPOINT_NOT_FOUND')
      await expectCode(store.removeRoute('\u0000'), 'E_ROUTE_NOT_FOUND')
      await expectCode(store.removeRoute('x'.repeat(10_000)), 'E_ROUTE_NOT_FOUND')
    })

    it('answers E_REGISTRY_UNAVAILABLE before start and after stop; stop is safe twice', async () => {
      const other = await another()
      await expectCode(other.load(), 'E_REGISTRY_UNAVAILABLE')
      await expectCode(other.version(), 'E_REGISTRY_UNAVAILABLE')
      await expectCode(other.putEndpoint(endpoint({ name: 'a' })), 'E_REGISTRY_UNAVAILABLE')
      await other.start()
      await other.putEndpoint(endpoint({ name: 'a' }))
      await other.stop()
      await other.stop()
      await expectCode(other.removeEndpoint('a'), 'E_REGISTRY_UNAVAILABLE')
      // Stopping one store leaves the storage to the others.
      expect((await store.load()).endpoints.map((e) => e.name)).toEqual(['a'])
      await store.stop()
      await store.stop()
    })
  })
}
