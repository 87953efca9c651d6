import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { SqliteCommandStore } from '../../../src/commands/sqlite-command-store.js'
import { COMMAND_STORE_SCHEMA_VERSION } from '../../../src/commands/sqlite-command-schema.js'
import { commandQueueContract } from './command-queue.contract.js'

commandQueueContract('SqliteCommandStore', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cmd-store-'))
  const store = new SqliteCommandStore(join(dir, 'commands.db'))
  store.start()
  return {
    queue: store,
    close: async () => {
      store.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
})

describe('SqliteCommandStore on a file', () => {
  it('keeps queued messages and subscriptions across reopen; clear drops a session', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmd-store-'))
    const file = join(dir, 'commands.db')
    try {
      const store = new SqliteCommandStore(file)
      store.start()
      store.addSubscription('d1', '$iothub/methods/POST/#', 0)
      store.addSubscription('d1', 'devices/d1/messages/devicebound/#', 1)
      await store.enqueue({ messageId: 'm', deviceId: 'd1', payload: Buffer.from('p'), properties: {}, ack: 'none', enqueuedAt: 1, expiresAt: 2 }, 5)
      store.stop()

      const reopened = new SqliteCommandStore(file)
      reopened.start()
      expect([...reopened.subscriptions('d1')]).toEqual([['$iothub/methods/POST/#', 0], ['devices/d1/messages/devicebound/#', 1]])
      expect((await reopened.list('d1')).map((m) => m.messageId)).toEqual(['m'])
      reopened.removeSubscriptions('d1', ['$iothub/methods/POST/#'])
      expect([...reopened.subscriptions('d1').keys()]).toEqual(['devices/d1/messages/devicebound/#'])
      reopened.clearSubscriptions('d1')
      reopened.stop()

      const third = new SqliteCommandStore(file)
      third.start()
      expect(third.subscriptions('d1').size).toBe(0)
      third.stop()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('sees another instance’s subscriptions after loadSubscriptions (two gateways on one file)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmd-store-'))
    const file = join(dir, 'commands.db')
    const a = new SqliteCommandStore(file)
    const b = new SqliteCommandStore(file)
    try {
      a.start()
      b.start()
      a.addSubscription('d1', '$iothub/twin/res/#', 0)
      expect(b.subscriptions('d1').size).toBe(0)
      b.loadSubscriptions('d1')
      expect([...b.subscriptions('d1').keys()]).toEqual(['$iothub/twin/res/#'])
    } finally {
      a.stop()
      b.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('upgrades a v1 file: queued messages stay; position-only source refs (which no new ref can equal) go', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cmd-store-'))
    const file = join(dir, 'commands.db')
    try {
      const v1 = new SqliteCommandStore(file)
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
      const store = new SqliteCommandStore(file)
      store.start()
      expect((await store.list('d1')).map((m) => m.messageId)).toEqual(['kept'])
      expect(await store.enqueue({ messageId: 'n', deviceId: 'd1', payload: Buffer.from('p'), properties: {}, ack: 'none', enqueuedAt: 1, expiresAt: 9, sourceRef: 'stream:commands/0/0#ab' }, 5)).not.toBeNull()
      store.stop()
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
