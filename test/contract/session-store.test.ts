import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe } from 'vitest'
import type { CachedSessionStore } from '../../src/commands/cached-session-store.js'
import { PostgresSessionStore } from '../../src/commands/postgres-session-store.js'
import { SqliteSessionStore } from '../../src/commands/sqlite-session-store.js'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'
import { postgresTestsEnabled, testSchema } from '../helpers/postgres.js'
import { sessionStoreContract, type SessionsUnderTest } from './session-store.contract.js'

function errorSink(): { errors: SessionsUnderTest['writeErrors']; report: (deviceId: string, err: unknown) => void } {
  const errors: SessionsUnderTest['writeErrors'] = []
  return { errors, report: (deviceId, err) => errors.push({ deviceId, code: (err as { code?: string }).code ?? String(err) }) }
}

sessionStoreContract('SqliteSessionStore', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sessions-'))
  const file = join(dir, 'commands.db')
  const sink = errorSink()
  const first = new SqliteSessionStore(file, sink.report)
  first.start()
  const stores: SqliteSessionStore[] = [first]
  return {
    sessions: first,
    writeErrors: sink.errors,
    async another(): Promise<CachedSessionStore> {
      const store = new SqliteSessionStore(file)
      store.start()
      stores.push(store)
      return store
    },
    stopFirst: () => first.stop(),
    async close() {
      for (const store of stores) await store.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
})

describe.runIf(postgresTestsEnabled('test/contract/session-store.test.ts'))('on PostgreSQL', () => {
  sessionStoreContract('PostgresSessionStore', async () => {
    const schema = testSchema()
    const sink = errorSink()
    const first = new PostgresSessionStore(schema.state, sink.report)
    await first.start()
    const stores: PostgresSessionStore[] = [first]
    // `another` is a second gateway: a pool of its own on the same schema.
    const pools: PostgresState[] = []
    return {
      sessions: first,
      writeErrors: sink.errors,
      async another(): Promise<CachedSessionStore> {
        const state = createPostgresState({ url: schema.url, schema: schema.schema, poolSize: 2, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 })
        pools.push(state)
        const store = new PostgresSessionStore(state)
        await store.start()
        stores.push(store)
        return store
      },
      stopFirst: () => first.stop(),
      async close() {
        for (const store of stores) await store.stop()
        for (const state of pools) await state.end()
        await schema.drop()
      },
    }
  })
})
