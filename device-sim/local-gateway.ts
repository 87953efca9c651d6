import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/**
 * The gateway `npm start` runs in this directory: `./data` holds its admin token, its runtime
 * file (gateway.json, with the URL its API answers on) and its embedded stream. When the run
 * targets that gateway, the simulator takes the token from there as the CLI does, and counts
 * loss by reading the embedded stream back, without --token or --data-dir.
 */
export interface LocalGateway {
  dataDir: string
  /** The API URL gateway.json names, if a gateway ran here. */
  httpUrl: string | null
  token: string | null
  hasStream: boolean
}

export function findLocalGateway(cwd: string = process.cwd()): LocalGateway | null {
  const dataDir = resolve(cwd, 'data')
  if (!existsSync(dataDir)) return null
  return { dataDir, httpUrl: runtimeUrl(dataDir), token: tokenIn(dataDir), hasStream: existsSync(join(dataDir, 'stream.db')) }
}

/** Same API? `localhost` and `127.0.0.1` count as one host. */
export function sameApi(a: string, b: string): boolean {
  try {
    const [x, y] = [new URL(a), new URL(b)]
    const host = (u: URL): string => (u.hostname === 'localhost' ? '127.0.0.1' : u.hostname)
    return x.protocol === y.protocol && host(x) === host(y) && x.port === y.port
  } catch {
    return false
  }
}

function runtimeUrl(dataDir: string): string | null {
  try {
    const info = JSON.parse(readFileSync(join(dataDir, 'gateway.json'), 'utf8')) as { httpUrl?: unknown }
    return typeof info.httpUrl === 'string' ? info.httpUrl : null
  } catch {
    return null
  }
}

function tokenIn(dataDir: string): string | null {
  try {
    const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim()
    return token === '' ? null : token
  } catch {
    return null
  }
}
