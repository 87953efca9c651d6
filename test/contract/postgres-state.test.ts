import { createServer } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { appliedVersion, migratePostgres } from '../../src/postgres/migrate.js'
import { createPostgresState, describeUrl, guardPostgres } from '../../src/postgres/pool.js'
import { postgresTestsEnabled, testSchema, type TestSchema } from '../helpers/postgres.js'

const enabled = postgresTestsEnabled('test/contract/postgres-state.test.ts')

describe.runIf(enabled)('PostgreSQL state: migrations, failures', () => {
  const schemas: TestSchema[] = []
  const open = (options: Parameters<typeof testSchema>[0] = {}): TestSchema => {
    const s = testSchema(options)
    schemas.push(s)
    return s
  }
  afterEach(async () => {
    await Promise.all(schemas.splice(0).map((s) => s.drop()))
  })

  it('applies each migration once when several instances start at the same moment', async () => {
    const first = open()
    // Five pools on the same schema, as five gateway processes starting together.
    const others = Array.from({ length: 4 }, () => createPostgresState({ url: first.url, schema: first.schema, poolSize: 2, statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 }))
    const migrations = [
      'CREATE TABLE things (id INTEGER PRIMARY KEY)',
      'ALTER TABLE things ADD COLUMN name TEXT',
      "INSERT INTO things (id, name) VALUES (1, 'only once')",
    ]
    try {
      await Promise.all([first.state, ...others].map((s) => migratePostgres(s, 'test', migrations)))
      expect(await appliedVersion(first.state, 'test')).toBe(3)
      const { rows } = await first.state.pool.query('SELECT id, name FROM things')
      expect(rows).toEqual([{ id: 1, name: 'only once' }])
      // Appending a migration later applies only the new one.
      await migratePostgres(first.state, 'test', [...migrations, "INSERT INTO things (id, name) VALUES (2, 'v4')"])
      expect((await first.state.pool.query('SELECT count(*)::int AS n FROM things')).rows[0].n).toBe(2)
      // A schema written by a newer build is refused, with the versions in the message.
      await expect(migratePostgres(first.state, 'test', migrations)).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE', message: expect.stringContaining('newer than this build knows (3)') })
    } finally {
      await Promise.all(others.map((s) => s.end()))
    }
  })

  it('keeps schemas apart: the same component migrates in each', async () => {
    const a = open()
    const b = open()
    await migratePostgres(a.state, 'test', ['CREATE TABLE things (id INTEGER)'])
    expect(await appliedVersion(a.state, 'test')).toBe(1)
    expect(await appliedVersion(b.state, 'test')).toBe(0)
    await migratePostgres(b.state, 'test', ['CREATE TABLE things (id INTEGER)'])
    await a.state.pool.query('INSERT INTO things VALUES (1)')
    expect((await b.state.pool.query('SELECT count(*)::int AS n FROM things')).rows[0].n).toBe(0)
  })

  it('turns a statement past its timeout into E_REGISTRY_UNAVAILABLE', async () => {
    const s = open({ statementTimeoutMs: 200 })
    await expect(guardPostgres(s.state, () => s.state.pool.query('SELECT pg_sleep(2)'))).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE', details: { sqlState: '57014' } })
  })

  it('turns a server that is not there into E_REGISTRY_UNAVAILABLE without the password', async () => {
    // A port nothing listens on: bind one, note it, close it.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const p = (server.address() as { port: number }).port
        server.close(() => resolve(p))
      })
    })
    const url = `postgres://someone:hunter2-secret@127.0.0.1:${port}/nowhere`
    const state = createPostgresState({ url, schema: 'public', poolSize: 1, statementTimeoutMs: 1000, connectTimeoutMs: 1000 })
    try {
      const err = (await guardPostgres(state, () => state.pool.query("SELECT 1")).then(() => new Error("connected"), (e: unknown) => e)) as Error & { code: string }
      expect(err).toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
      expect(err.message).toContain(`127.0.0.1:${port}/nowhere`)
      expect(err.message).not.toContain('hunter2')
      expect(JSON.stringify((err as { details?: unknown }).details)).not.toContain('hunter2')
    } finally {
      await state.end()
    }
  })

  it('describes a URL without its password and refuses an empty URL or a bad schema', () => {
    expect(describeUrl('postgres://u:p%40ss@db.example:5432/sg?sslmode=require')).toBe('postgres://u@db.example:5432/sg')
    expect(() => createPostgresState({ url: '', schema: 'public', poolSize: 1, statementTimeoutMs: 1000, connectTimeoutMs: 1000 })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }))
    expect(() => createPostgresState({ url: 'postgres://x', schema: 'a; DROP TABLE x', poolSize: 1, statementTimeoutMs: 1000, connectTimeoutMs: 1000 })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }))
  })
})
