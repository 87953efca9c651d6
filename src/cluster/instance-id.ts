import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'

const ID = /^[A-Za-z0-9._-]{1,64}$/

/**
 * This process's instance id: `cluster.instanceId` when set, else the one kept in
 * `<dataDir>/instance-id`, made at the first start as `<hostname>-<6 hex>`. Kept per data dir so
 * that a restart (after a crash too) comes back as the same instance: it takes back its own
 * ownerships and signals at once instead of waiting for its old heartbeat to lapse.
 */
export function resolveInstanceId(configured: string, dataDir: string): string {
  if (configured) return configured
  const file = join(dataDir, 'instance-id')
  try {
    const kept = readFileSync(file, 'utf8').trim()
    if (ID.test(kept)) return kept
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 50) || 'gateway'
  const id = `${host}-${randomBytes(3).toString('hex')}`
  writeFileSync(file, `${id}\n`, { mode: 0o600 })
  return id
}
