import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * Create a SQLite database file (and its directory) readable by the owner only, before SQLite
 * opens it. registry.db holds every device key, commands.db the queued payloads, stream.db all
 * telemetry: none is for other local users. SQLite creates a database's -wal and -shm files with
 * the database file's permissions, so they follow. A directory or file that already exists keeps
 * whatever mode its operator chose.
 */
export function createPrivateFile(file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  try {
    closeSync(openSync(file, 'wx', 0o600))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
}
