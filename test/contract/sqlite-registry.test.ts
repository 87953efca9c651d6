import { mkdirSync, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'
import { REGISTRY_SCHEMA_VERSION } from '../../src/registry/sqlite-schema.js'
import { deviceRegistryContract } from './device-registry.contract.js'

deviceRegistryContract('SqliteDeviceRegistry', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'streamgate-registry-'))
  const registry = new SqliteDeviceRegistry({ file: join(dir, 'registry.db') })
  return {
    registry,
    async cleanup() {
      await registry.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

describe('SqliteDeviceRegistry on a file', () => {
  let dir: string
  let file: string
  const opened: SqliteDeviceRegistry[] = []

  async function open(): Promise<SqliteDeviceRegistry> {
    const registry = new SqliteDeviceRegistry({ file })
    opened.push(registry)
    await registry.start()
    return registry
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'streamgate-registry-'))
    // A nested path: start() creates the data dir the way a first `streamgate devices add` needs.
    file = join(dir, 'data', 'registry.db')
  })

  afterEach(async () => {
    for (const registry of opened.splice(0)) await registry.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps its data across close and reopen', async () => {
    const first = await open()
    const created = await first.create({ deviceId: 'persist', authMethod: 'password', password: 'pw-123' })
    await first.recordConnection('persist', 'connected', new Date('2030-01-01T00:00:00.000Z'))
    await first.stop()
    const second = await open()
    expect(await second.get('persist')).toEqual({
      ...created,
      connectionState: 'connected',
      connectionStateUpdatedAt: '2030-01-01T00:00:00.000Z',
      lastActivityAt: '2030-01-01T00:00:00.000Z',
      connectionSeq: 1,
    })
  })

  it('lets two instances on one file see each other’s writes at once (no stale cache)', async () => {
    const gateway = await open()
    const cli = await open()
    await cli.create({ deviceId: 'shared' })
    expect((await gateway.get('shared'))?.status).toBe('enabled')
    await gateway.setStatus('shared', 'disabled')
    expect((await cli.get('shared'))?.status).toBe('disabled')
    const rotated = await cli.rotateKey('shared', 'primary')
    expect((await gateway.get('shared'))?.primaryKey).toBe(rotated.primaryKey)
    expect(await gateway.recordConnection('shared', 'connected', new Date())).toBe(1)
    expect(await cli.recordConnection('shared', 'disconnected', new Date())).toBe(2)
    await cli.remove('shared')
    expect(await gateway.get('shared')).toBeNull()
  })

  it('writes the file in WAL mode with the current schema version, readable by its owner only', async () => {
    const registry = await open()
    await registry.create({ deviceId: 'secret-keys' })
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(`${file}-wal`).mode & 0o777).toBe(0o600)
    await registry.stop()
    const db = new BetterSqlite3(file, { readonly: true })
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(db.pragma('user_version', { simple: true })).toBe(REGISTRY_SCHEMA_VERSION)
    } finally {
      db.close()
    }
  })

  it('upgrades a v1 file (before twins) in place: devices keep their keys and get empty twins', async () => {
    mkdirSync(dirname(file), { recursive: true })
    const db = new BetterSqlite3(file)
    db.exec(`CREATE TABLE devices (
       device_id TEXT PRIMARY KEY NOT NULL, status TEXT NOT NULL, auth_method TEXT NOT NULL,
       primary_key TEXT NOT NULL, secondary_key TEXT NOT NULL, password_hash TEXT,
       created_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_activity_at TEXT,
       connection_state TEXT NOT NULL DEFAULT 'disconnected', connection_state_updated_at TEXT,
       connection_seq INTEGER NOT NULL DEFAULT 0) STRICT`)
    db.prepare(`INSERT INTO devices (device_id, status, auth_method, primary_key, secondary_key, created_at, updated_at)
                VALUES ('old', 'enabled', 'sas', 'cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi', 'c2Vjb25kYXJ5LWtleS0wMTIzNDU2Nzg5', 'x', 'x')`).run()
    db.pragma('user_version = 1')
    db.close()
    const registry = await open()
    expect((await registry.get('old'))?.primaryKey).toBe('cHJpbWFyeS1rZXktMDEyMzQ1Njc4OWFi')
    expect(await registry.getTwin('old')).toEqual({ deviceId: 'old', desired: { version: 1, properties: {} }, reported: { version: 1, properties: {} }, tags: { version: 1, properties: {} } })
    expect((await registry.get('old'))?.x509Thumbprint).toBeNull()
    // v3 widened the auth_method CHECK (table rebuilt): X.509 devices fit in the upgraded file.
    expect((await registry.create({ deviceId: 'cam', authMethod: 'x509-ca' })).authMethod).toBe('x509-ca')
  })

  it('writes the device event in the transaction of its change: when the event cannot be written, the change is undone', async () => {
    const registry = await open()
    await registry.create({ deviceId: 'tx' })
    await registry.recordConnection('tx', 'connected', new Date('2030-01-01T00:00:00.000Z'))
    const before = await registry.get('tx')
    const twinBefore = await registry.getTwin('tx')
    const pendingBefore = await registry.pendingEventCount()
    // Another connection makes every outbox insert fail, as a full disk would halfway through.
    const other = new BetterSqlite3(file)
    other.exec("CREATE TRIGGER no_events BEFORE INSERT ON device_event_outbox BEGIN SELECT RAISE(ABORT, 'outbox refused'); END")
    try {
      await expect(registry.create({ deviceId: 'tx-2' })).rejects.toThrow('outbox refused')
      await expect(registry.recordConnection('tx', 'disconnected', new Date())).rejects.toThrow('outbox refused')
      await expect(registry.resetConnections(new Date())).rejects.toThrow('outbox refused')
      await expect(registry.patchTwin('tx', 'reported', { a: 1 }, { maxBytes: 1024, maxDepth: 10 })).rejects.toThrow('outbox refused')
      await expect(registry.remove('tx')).rejects.toThrow('outbox refused')
    } finally {
      other.exec('DROP TRIGGER no_events')
      other.close()
    }
    expect(await registry.get('tx-2')).toBeNull()
    expect(await registry.get('tx')).toEqual(before)
    expect(await registry.getTwin('tx')).toEqual(twinBefore)
    expect(await registry.pendingEventCount()).toBe(pendingBefore)
    // And with the outbox writable again the next change and its event commit together.
    expect(await registry.recordConnection('tx', 'disconnected', new Date())).toBe(2)
    expect(await registry.pendingEventCount()).toBe(pendingBefore + 1)
  })

  it('keeps unwritten events across close and reopen, as the CLI leaves them for the next gateway start', async () => {
    const cli = await open()
    await cli.create({ deviceId: 'offline-add' })
    await cli.remove('offline-add')
    await cli.stop()
    const gateway = await open()
    const pending = await gateway.pendingEvents(10)
    expect(pending.map((p) => [p.event.deviceId, p.event.type])).toEqual([['offline-add', 'created'], ['offline-add', 'deleted']])
  })

  it('refuses a file written by a newer schema with E_REGISTRY_UNAVAILABLE', async () => {
    await (await open()).stop()
    const db = new BetterSqlite3(file)
    db.pragma(`user_version = ${REGISTRY_SCHEMA_VERSION + 1}`)
    db.close()
    await expect(new SqliteDeviceRegistry({ file }).start()).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
  })

  it('answers E_REGISTRY_UNAVAILABLE when used before start', async () => {
    const registry = new SqliteDeviceRegistry({ file })
    await expect(registry.get('x')).rejects.toMatchObject({ code: 'E_REGISTRY_UNAVAILABLE' })
  })

  describe('connection changes written together (group commit)', () => {
    /** Rows of the outbox as [device, type, sequence], in outbox order. */
    const outbox = (): Array<[string, string, number | null]> => {
      const db = new BetterSqlite3(file, { readonly: true })
      try {
        return (db.prepare('SELECT body FROM device_event_outbox ORDER BY id').all() as Array<{ body: string }>)
          .map((r) => JSON.parse(r.body) as { deviceId: string; type: string; sequence: number | null })
          .filter((e) => e.type === 'connected' || e.type === 'disconnected')
          .map((e) => [e.deviceId, e.type, e.sequence])
      } finally {
        db.close()
      }
    }

    it('writes the changes of one turn in one transaction, in call order, each with its sequence and event', async () => {
      const registry = await open()
      for (const id of ['a', 'b', 'c']) await registry.create({ deviceId: id })
      const calls: Array<[string, 'connected' | 'disconnected']> = [['a', 'connected'], ['b', 'connected'], ['a', 'disconnected'], ['c', 'connected'], ['a', 'connected'], ['b', 'disconnected']]
      // All in one turn: they share one transaction.
      const sequences = await Promise.all(calls.map(([id, state]) => registry.recordConnection(id, state, new Date())))
      expect(sequences).toEqual([1, 1, 2, 1, 3, 2])
      expect(outbox()).toEqual(calls.map(([id, state], i) => [id, state, sequences[i]]))
      expect((await registry.get('a'))!.connectionState).toBe('connected')
      expect((await registry.get('b'))!.connectionState).toBe('disconnected')
    })

    it('fails only the change at fault when the shared transaction fails, and writes the rest', async () => {
      const registry = await open()
      for (const id of ['ok-1', 'bad', 'ok-2']) await registry.create({ deviceId: id })
      const other = new BetterSqlite3(file)
      other.exec(`CREATE TRIGGER refuse_bad BEFORE INSERT ON device_event_outbox WHEN NEW.device_id = 'bad' BEGIN SELECT RAISE(ABORT, 'outbox refused'); END`)
      other.close()
      const results = await Promise.allSettled(['ok-1', 'bad', 'ok-2'].map((id) => registry.recordConnection(id, 'connected', new Date())))
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
      expect(String((results[1] as PromiseRejectedResult).reason)).toContain('outbox refused')
      expect(outbox()).toEqual([
        ['ok-1', 'connected', 1],
        ['ok-2', 'connected', 1],
      ])
      // The refused change left nothing behind: no state, no sequence.
      expect(await registry.get('bad')).toMatchObject({ connectionState: 'disconnected', connectionSeq: 0 })
    })

    it('gathers changes of several turns (a storm brings one per turn) into one transaction after 5 ms, and writes at once at 500', async () => {
      const registry = await open()
      const ids = Array.from({ length: 500 }, (_, i) => `g-${i}`)
      for (const id of ids) await registry.create({ deviceId: id })
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
      try {
        const first = registry.recordConnection('g-0', 'connected', new Date())
        await new Promise((r) => setImmediate(r))
        const second = registry.recordConnection('g-1', 'connected', new Date())
        await new Promise((r) => setImmediate(r))
        // Two turns later, neither is in the file yet: they wait for the shared transaction.
        expect(outbox()).toEqual([])
        vi.advanceTimersByTime(5)
        expect(await Promise.all([first, second])).toEqual([1, 1])
        expect(outbox()).toEqual([
          ['g-0', 'connected', 1],
          ['g-1', 'connected', 1],
        ])
        // 500 waiting: written without waiting for the timer.
        const storm = ids.map((id) => registry.recordConnection(id, 'disconnected', new Date()))
        expect(await Promise.all(storm)).toEqual(ids.map((_, i) => (i < 2 ? 2 : 1)))
        expect(outbox()).toHaveLength(502)
      } finally {
        vi.useRealTimers()
      }
    })

    it('writes changes still waiting for their turn when the registry stops', async () => {
      const registry = await open()
      await registry.create({ deviceId: 'late' })
      const pending = registry.recordConnection('late', 'connected', new Date())
      await registry.stop()
      expect(await pending).toBe(1)
      const again = await open()
      expect((await again.get('late'))!.connectionState).toBe('connected')
    })
  })
})
