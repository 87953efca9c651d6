import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { GatewayConfig } from '../config/schema.js'
import { GatewayError } from '../errors/catalogue.js'

export type AdminTokenSource = 'config' | 'file' | 'generated'

export const ADMIN_TOKEN_FILE = 'admin-token'

export function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE)
}

/**
 * The bearer token of /api. Order: `adminToken` from config (file, STREAMGATE_ADMIN_TOKEN or
 * --admin-token) wins; else `<dataDir>/admin-token`; else a new one (32 random bytes, base64url)
 * written there with mode 0600, reported as 'generated' so the caller prints it once.
 *
 * The file lets `streamgate devices` on the same machine reach a running gateway without the
 * token being typed anywhere. Synchronous: it runs once at start-up, before anything listens.
 */
export function resolveAdminToken(config: GatewayConfig): { token: string; source: AdminTokenSource } {
  if (config.adminToken) return { token: config.adminToken, source: 'config' }
  const file = adminTokenPath(config.dataDir)
  const existing = readTokenFile(file)
  if (existing) return { token: existing, source: 'file' }

  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  const token = randomBytes(32).toString('base64url')
  try {
    // 'wx': create only. Two processes generating at once (gateway and CLI) must not overwrite
    // each other; the loser reads the winner's token.
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const winner = readTokenFile(file)
    if (winner) return { token: winner, source: 'file' }
    throw new GatewayError('E_CONFIG_INVALID', `${file} is empty: delete it to have a token generated, or set adminToken`)
  }
  return { token, source: 'generated' }
}

/** The trimmed token, or null when the file is missing or blank. */
function readTokenFile(file: string): string | null {
  try {
    const token = readFileSync(file, 'utf8').trim()
    return token.length > 0 ? token : null
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}
