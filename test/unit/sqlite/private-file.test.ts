import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPrivateFile } from '../../../src/sqlite/private-file.js'
import { SqliteCommandQueue } from '../../../src/commands/sqlite-command-queue.js'
import { SqliteSessionStore } from '../../../src/commands/sqlite-session-store.js'
import { SqliteDeviceRegistry } from '../../../src/registry/sqlite-registry.js'
import { SqliteEventStream } from '../../../src/stream/embedded/sqlite-event-stream.js'

const mode = (file: string): number => statSync(file).mode & 0o777

/** Every SQLite file of the data dir, and the -wal and -shm files SQLite makes beside them, is 0600. */
describe('private SQLite files', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'streamgate-private-'))
  })
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('creates a missing directory 0700 and the file 0600, and leaves an existing file as it is', () => {
    const file = join(dir, 'data', 'x.db')
    createPrivateFile(file)
    expect(mode(join(dir, 'data'))).toBe(0o700)
    expect(mode(file)).toBe(0o600)
    const chosen = join(dir, 'chosen.db')
    writeFileSync(chosen, '', { mode: 0o640 })
    createPrivateFile(chosen)
    expect(mode(chosen)).toBe(0o640)
  })

  it('stream.db, registry.db and commands.db with their -wal and -shm files are 0600', async () => {
    const data = join(dir, 'data')
    const stream = new SqliteEventStream({
      file: join(data, 'stream.db'), synchronous: 'NORMAL', maxBatchRecords: 100, lingerMs: 0, retentionHours: 0,
      retentionMaxMiBPerPartition: 0, retentionIntervalSeconds: 0, pollIntervalMs: 50,
    })
    const registry = new SqliteDeviceRegistry({ file: join(data, 'registry.db') })
    const commands = new SqliteCommandQueue(join(data, 'commands.db'))
    const sessions = new SqliteSessionStore(join(data, 'commands.db'))
    try {
      await stream.start([{ name: 't', partitions: 1 }])
      await stream.append('t', [{ key: 'd', value: Buffer.from('v') }])
      await registry.start()
      await registry.create({ deviceId: 'd' })
      commands.start()
      sessions.start()
      await sessions.restore('d', false)
      sessions.addSubscription('d', 'devices/d/messages/devicebound/#', 1)
      await sessions.flush()
      expect(mode(data)).toBe(0o700)
      for (const name of ['stream.db', 'registry.db', 'commands.db']) {
        for (const suffix of ['', '-wal', '-shm']) {
          const file = join(data, name + suffix)
          expect(existsSync(file), `${name + suffix} exists`).toBe(true)
          expect(mode(file), `mode of ${name + suffix}`).toBe(0o600)
        }
      }
    } finally {
      await sessions.stop()
      commands.stop()
      await registry.stop()
      await stream.stop()
    }
  })
})
