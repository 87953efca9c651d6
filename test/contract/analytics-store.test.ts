import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe } from 'vitest'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'
import { PostgresAnalyticsStore } from '../../src/registry/postgres-analytics-store.js'
import { SqliteAnalyticsStore } from '../../src/registry/sqlite-analytics-store.js'
import type { AnalyticsStore } from '../../src/analytics/types.js'
import { postgresTestsEnabled, testSchema } from '../helpers/postgres.js'
import { analyticsStoreContract } from './analytics-store.contract.js'

analyticsStoreContract('SqliteAnalyticsStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'streamgate-analytics-'))
  const file = join(dir, 'registry.db')
  const stores: AnalyticsStore[] = [new SqliteAnalyticsStore({ file })]
  return {
    store: stores[0]!,
    async another() {
      const store = new SqliteAnalyticsStore({ file })
      stores.push(store)
      return store
    },
    async cleanup() {
      for (const store of stores) await store.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

describe.runIf(postgresTestsEnabled('test/contract/analytics-store.test.ts'))('on PostgreSQL', () => {
  analyticsStoreContract('PostgresAnalyticsStore', async () => {
    const schema = testSchema()
    const stores: AnalyticsStore[] = [new PostgresAnalyticsStore({ state: schema.state })]
    // `another` is a second gateway: a pool of its own on the same schema.
    const pools: PostgresState[] = []
    return {
      store: stores[0]!,
      async another() {
        const state = createPostgresState({ url: schema.url, schema: schema.schema, poolSize: 2, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 })
        pools.push(state)
        const store = new PostgresAnalyticsStore({ state })
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
