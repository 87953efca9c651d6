import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { PostgresCommandQueue } from '../../src/commands/postgres-command-queue.js'
import { SqliteCommandQueue } from '../../src/commands/sqlite-command-queue.js'
import { COMMAND_STORE_SCHEMA_VERSION } from '../../src/commands/sqlite-command-schema.js'
import { createPostgresState, type PostgresState } from '../../src/postgres/pool.js'
import { postgresTestsEnabled, testSchema } from '../helpers/postgres.js'
import { commandQueueContract } from './command-queue.contract.js'

commandQueueContract('SqliteCommandQueue', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cmd-queue-'))
  const file = join(dir, 'commands.db')
  const queues = [new SqliteCommandQueue(file)]
  queues[0]!.start()
  return {
    queue: queues[0]!,
    async another() {
      const queue = new SqliteCommandQueue(file)
      queue.start()
      queues.push(queue)
      return queue
    },
    close: async () => {
      for (const queue of queues) queue.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
})

describe.runIf(postgresTestsEnabled('test/contract/command-queue.test.ts'))('on PostgreSQL', () => {
  commandQueueContract('PostgresCommandQueue', async () => {
    const schema = testSchema()
    const queues = [new PostgresCommandQueue(schema.state)]
    await queues[0]!.start()
    // `another` is a second gateway: a pool of its own on the same schema.
    const pools: PostgresState[] = []
    return {
      queue: queues[0]!,
      async another() {
        const state = createPostgresState({ url: schema.url, schema: schema.schema, poolSize: 4, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 })
        pools.push(state)
        const queue = new PostgresCommandQueue(state)
        await queue.start()
        queues.push(queue)
        return queue
      },
      close: async () => {
        for (const queue of queues) await queue.stop()
        for (const state of pools) await state.end()
        await schema.drop()
      },
    }
  })

  it('answers a PostgreSQL it cannot reach with E_REGISTRY_UNAVAILABLE, naming the server and never the password', async () => {
    const unreachable = createPostgresState({ url: 'postgres://streamgate:s3cret-pw@127.0.0.1:1/none', schema: 'public', poolSize: 1, statementTimeoutMs: 1000, connectTimeoutMs: 1000 })
    try {
      const err = await new PostgresCommandQueue(unreachable).start().then(() => null, (e: unknown) => e as { code: string; message: string })
      expect(err).toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
      expect(err!.message).toContain('127.0.0.1:1')
      expect(err!.message).not.toContain('s3cret-pw')
    } finally {
      await unreachable.end()
    }
  })
})

describe('SqliteCommandQueue on a file', () => {
  it('keeps queued messages across reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmd-queue-'))
    const file = join(dir, 'commands.db')
    try {
      const queue = new SqliteCommandQueue(file)
      queue.start()
      await queue.enqueue({ messageId: 'm', deviceId: 'd1', payload: Buffer.from('p'), properties: {}, ack: 'none', enqueuedAt: 1, expiresAt: 2 }, 5)
      queue.stop()
      const reopened = new SqliteCommandQueue(file)
      reopened.start()
      expect((await reopened.list('d1')).map((m) => m.messageId)).toEqual(['m'])
      reopened.stop()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('upgrades a v1 file: queued messages stay; position-only source refs (which no new ref can equal) go', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmd-queue-'))
    const file = join(dir, 'commands.db')
    try {
      const v1 = new SqliteCommandQueue(file)
      v1.start()
      await v1.enqueue({ messageId: 'kept', deviceId: 'd1', payload: Buffer.from('p'), properties: {}, ack: 'none', enqueuedAt: 1, expiresAt: 2 }, 5)
      v1.stop()
      // Turn the file back into what a v1 build wrote.
      const db = new BetterSqlite3(file)
      db.exec(`DROP TABLE c2d_sources;
               CREATE TABLE c2d_sources (source_ref TEXT PRIMARY KEY NOT NULL, taken_at INTEGER NOT NULL) STRICT;
               INSERT INTO c2d_sources VALUES ('stream:commands/0/0', 1), ('stream:commands/0/1', 2);`)
      db.pragma('user_version = 1')
      db.close()
      const queue = new SqliteCommandQueue(file)
      queue.start()
      expect((await queue.list('d1')).map((m) => m.messageId)).toEqual(['kept'])
      expect(await queue.enqueue({ messageId: 'n', deviceId: 'd1', payload: Buffer.from('p'), properties: {}, ack: 'none', enqueuedAt: 1, expiresAt: 9, sourceRef: 'stream:commands/0/0#ab' }, 5)).not.toBeNull()
      queue.stop()
      const after = new BetterSqlite3(file, { readonly: true })
      try {
        expect(after.pragma('user_version', { simple: true })).toBe(COMMAND_STORE_SCHEMA_VERSION)
        expect(after.prepare('SELECT source_ref, keep_until FROM c2d_sources').all()).toEqual([{ source_ref: 'stream:commands/0/0#ab', keep_until: 9 }])
      } finally {
        after.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
