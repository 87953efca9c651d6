import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseConnectionString } from '../src/auth/sas.js'
import { SimError } from './errors.js'

/**
 * Fleet identities: created through the gateway's HTTP API or read from a credentials file.
 * The API has no bulk route, so devices are created one request each with bounded concurrency;
 * a 409 (id taken, e.g. by an earlier run) is tolerated by reading that device's key instead.
 */

export interface DeviceCredential {
  deviceId: string
  /** Base64 symmetric key (primary). */
  key: string
  /** HostName from a connection string; else the scenario's hubHost applies. */
  hubHost?: string
}

export interface ApiTarget {
  api: string
  token: string
}

export function fleetIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(6, '0')}`)
}

export async function apiRequest(target: ApiTarget, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  let response: Response
  try {
    response = await fetch(`${target.api.replace(/\/$/, '')}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${target.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
  } catch (err) {
    throw new SimError('E_SIM_API', `cannot reach the API at ${target.api}: ${(err as Error).message}`)
  }
  const text = await response.text()
  let json: unknown = null
  try {
    json = text === '' ? null : JSON.parse(text)
  } catch {
    json = text
  }
  return { status: response.status, json }
}

export function apiError(what: string, status: number, json: unknown): SimError {
  const code = (json as { error?: { code?: string; message?: string } } | null)?.error
  return new SimError('E_SIM_API', `${what}: HTTP ${status} ${code?.code ?? ''} ${code?.message ?? ''}`.trim(), { status, code: code?.code })
}

function keyOf(json: unknown): string {
  const key = (json as { primaryKey?: unknown } | null)?.primaryKey
  if (typeof key !== 'string' || key === '') throw new SimError('E_SIM_API', 'the API answered without a primaryKey (is it a password device?)')
  return key
}

async function createOne(target: ApiTarget, deviceId: string): Promise<{ credential: DeviceCredential; created: boolean }> {
  // The key is ours, so a run can be repeated against a credentials file written from it.
  const created = await apiRequest(target, 'POST', '/devices', { deviceId, primaryKey: randomBytes(32).toString('base64') })
  if (created.status === 201) return { credential: { deviceId, key: keyOf(created.json) }, created: true }
  if (created.status !== 409) throw apiError(`creating ${deviceId}`, created.status, created.json)
  const existing = await apiRequest(target, 'GET', `/devices/${encodeURIComponent(deviceId)}`)
  if (existing.status !== 200) throw apiError(`reading ${deviceId}`, existing.status, existing.json)
  return { credential: { deviceId, key: keyOf(existing.json) }, created: false }
}

/** Run `task` over `items` with at most `limit` in flight; results in input order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      results[index] = await task(items[index]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return results
}

export async function provisionFleet(target: ApiTarget, ids: readonly string[], concurrency = 16): Promise<{ devices: DeviceCredential[]; created: number }> {
  const results = await mapBounded(ids, concurrency, (id) => createOne(target, id))
  return { devices: results.map((r) => r.credential), created: results.filter((r) => r.created).length }
}

/** Delete the fleet; a device already gone (404) is fine. Returns how many were deleted. */
export async function cleanupFleet(target: ApiTarget, ids: readonly string[], concurrency = 16): Promise<number> {
  const statuses = await mapBounded(ids, concurrency, async (id) => {
    const res = await apiRequest(target, 'DELETE', `/devices/${encodeURIComponent(id)}`)
    if (res.status !== 204 && res.status !== 404) throw apiError(`deleting ${id}`, res.status, res.json)
    return res.status
  })
  return statuses.filter((s) => s === 204).length
}

/**
 * A credentials file: either a JSON array of `{deviceId, key}` (what --credentials-out writes)
 * or one IoT Hub device connection string per line (`HostName=...;DeviceId=...;SharedAccessKey=...`).
 */
export function readCredentialsFile(file: string): DeviceCredential[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SimError('E_SIM_CREDENTIALS', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (text.trimStart().startsWith('[')) return parseJsonCredentials(text, file)
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line, i) => {
      try {
        const cs = parseConnectionString(line)
        if (!cs.sharedAccessKey) throw new Error('no SharedAccessKey')
        return { deviceId: cs.deviceId, key: cs.sharedAccessKey, hubHost: cs.hostName }
      } catch (err) {
        throw new SimError('E_SIM_CREDENTIALS', `${file} line ${i + 1}: ${(err as Error).message}`)
      }
    })
}

function parseJsonCredentials(text: string, file: string): DeviceCredential[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new SimError('E_SIM_CREDENTIALS', `${file} is not valid JSON`)
  }
  if (!Array.isArray(value)) throw new SimError('E_SIM_CREDENTIALS', `${file} must hold an array`)
  return value.map((item: unknown, i) => {
    const { deviceId, key } = (item ?? {}) as { deviceId?: unknown; key?: unknown }
    if (typeof deviceId !== 'string' || typeof key !== 'string') throw new SimError('E_SIM_CREDENTIALS', `${file}[${i}] needs deviceId and key strings`)
    return { deviceId, key }
  })
}
