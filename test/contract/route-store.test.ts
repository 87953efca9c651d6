import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe } from 'vitest'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'
import { PostgresRouteStore } from '../../src/registry/postgres-route-store.js'
import { SqliteRouteStore } from '../../src/registry/sqlite-route-store.js'
import type { RouteStore } from '../../src/routing/types.js'
import { postgresTestsEnabled, testSchema } from '../helpers/postgres.js'
import { routeStoreContract } from './route-store.contract.js'

routeStoreContract('SqliteRouteStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'streamgate-routes-'))
  const file = join(dir, 'registry.db')
  const stores: RouteStore[] = [new SqliteRouteStore({ file })]
  return {
    store: stores[0]!,
    async another() {
      const store = new SqliteRouteStore({ file })
      stores.push(store)
      return store
    },
    async cleanup() {
      for (const store of stores) await store.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

describe.runIf(postgresTestsEnabled('test/contract/route-store.test.ts'))('on PostgreSQL', () => {
  routeStoreContract('PostgresRouteStore', async () => {
    const schema = testSchema()
    const stores: RouteStore[] = [new PostgresRouteStore({ state: schema.state })]
    // `another` is a second gateway: a pool of its own on the same schema.
    const pools: PostgresState[] = []
    return {
      store: stores[0]!,
      async another() {
        const state = createPostgresState({ url: schema.url, schema: schema.schema, poolSize: 2, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 })
        pools.push(state)
        const store = new PostgresRouteStore({ state })
        stores.push(store)
        return store
      },
      async cleanup() {
        for (const store of stores) await store.stop()
        for (const state of pools) await state.end()
        await schema.drop()
      },
    }
  })
})
