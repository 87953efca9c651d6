import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { resolveAdminToken } from '../api/admin-token.js'
import type { DeviceList, DeviceWithConnectionString } from '../api/devices.js'
import { findRunningGateway, isProcessAlive, readRuntimeFile } from '../app/runtime-file.js'
import type { GatewayConfig } from '../config/schema.js'
import { ERROR_CODES, GatewayError, type ErrorCode } from '../errors/catalogue.js'
import { deviceConnectionString } from '../registry/connection-string.js'
import { openStateStores, type StateStores } from '../app/backends.js'
import {
  toDeviceView,
  type CreateDeviceInput,
  type Device,
  type DeviceRegistry,
  type DeviceStatus,
  type DeviceView,
  type KeyName,
} from '../registry/types.js'

/** A device as just created or re-keyed: its view and the connection string to hand out. */
export interface IssuedDevice {
  device: DeviceView
  /** null for password devices. */
  connectionString: string | null
}

export interface DevicePage {
  devices: DeviceView[]
  next: string | null
}

/**
 * What `streamgate devices` needs, in two implementations: through a running gateway's HTTP API
 * (so the gateway disconnects a removed, disabled or re-keyed device at once), or on the registry
 * file directly when no gateway runs on the data dir. Both raise GatewayError with catalogue codes.
 */
export interface DeviceAdmin {
  readonly mode: 'http' | 'local'
  /** Where the devices are read and written, for the user: the gateway's API or the registry's place. */
  readonly source: string
  add(input: CreateDeviceInput): Promise<IssuedDevice>
  list(page: { limit: number; after?: string }): Promise<DevicePage>
  /** Rejects E_DEVICE_NOT_FOUND. */
  show(deviceId: string): Promise<DeviceView>
  remove(deviceId: string): Promise<void>
  setStatus(deviceId: string, status: DeviceStatus): Promise<DeviceView>
  rotateKey(deviceId: string, which: KeyName): Promise<IssuedDevice>
  setPassword(deviceId: string, password: string | null): Promise<DeviceView>
  close(): Promise<void>
}

export class LocalDeviceAdmin implements DeviceAdmin {
  readonly mode = 'local'

  constructor(
    private readonly registry: DeviceRegistry,
    private readonly hostname: string,
    /** The state this CLI process opened; a removed device's queue and session go with it. */
    private readonly stores: StateStores,
    readonly source: string,
  ) {}

  /**
   * Open the registry on state.backend (SQLite: `<dataDir>/registry.db`, created on first use as
   * the gateway would; PostgreSQL: the shared schema, migrated as the gateway would).
   */
  static async open(config: GatewayConfig, access: 'read' | 'write' = 'write'): Promise<LocalDeviceAdmin> {
    const source = config.state.backend === 'postgres' ? 'the PostgreSQL registry (state.backend postgres)' : `the registry file ${registryFile(config)}`
    if (access === 'read') requireRegistry(config)
    const stores = openStateStores(config, 'tool')
    const registry = stores.registry()
    try {
      await registry.start()
    } catch (err) {
      await stores.end()
      throw err
    }
    return new LocalDeviceAdmin(registry, config.hostname, stores, source)
  }

  async add(input: CreateDeviceInput): Promise<IssuedDevice> {
    return this.issued(await this.registry.create(input))
  }

  async list(page: { limit: number; after?: string }): Promise<DevicePage> {
    const devices = await this.registry.list(page)
    return { devices: devices.map(toDeviceView), next: devices.length === page.limit ? devices[devices.length - 1]!.deviceId : null }
  }

  async show(deviceId: string): Promise<DeviceView> {
    const device = await this.registry.get(deviceId)
    if (!device) throw new GatewayError('E_DEVICE_NOT_FOUND', `device "${deviceId}" not found`, { deviceId })
    return toDeviceView(device)
  }

  /**
   * Remove the device and, as the gateway does, end its queued cloud-to-device messages as
   * `purged` and drop its stored session; the purged feedback waits in the queue's outbox and is
   * written to `command-feedback` by the next gateway that runs.
   */
  async remove(deviceId: string): Promise<void> {
    await this.registry.remove(deviceId)
    // A data dir where no gateway ever ran has no commands.db, and none is made for this.
    if (!this.stores.hasCommandState()) return
    const queue = this.stores.commandQueue()
    const sessions = this.stores.sessions()
    await queue.start()
    await sessions.start()
    try {
      await queue.purge(deviceId, Date.now())
      await sessions.discard(deviceId)
    } finally {
      await sessions.stop()
      await queue.stop()
    }
  }

  async setStatus(deviceId: string, status: DeviceStatus): Promise<DeviceView> {
    return toDeviceView(await this.registry.setStatus(deviceId, status))
  }

  async rotateKey(deviceId: string, which: KeyName): Promise<IssuedDevice> {
    return this.issued(await this.registry.rotateKey(deviceId, which))
  }

  async setPassword(deviceId: string, password: string | null): Promise<DeviceView> {
    return toDeviceView(await this.registry.setPassword(deviceId, password))
  }

  async close(): Promise<void> {
    try {
      await this.registry.stop()
    } finally {
      await this.stores.end()
    }
  }

  private issued(device: Device): IssuedDevice {
    return { device: toDeviceView(device), connectionString: deviceConnectionString(this.hostname, device) }
  }
}

const REQUEST_TIMEOUT_MS = 15_000

export class HttpDeviceAdmin implements DeviceAdmin {
  readonly mode = 'http'
  readonly source: string

  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {
    this.source = `the gateway at ${baseUrl}`
  }

  async add(input: CreateDeviceInput): Promise<IssuedDevice> {
    return issued(await this.request<DeviceWithConnectionString>('POST', '/api/devices', input))
  }

  list(page: { limit: number; after?: string }): Promise<DevicePage> {
    const query = new URLSearchParams({ limit: String(page.limit) })
    if (page.after !== undefined) query.set('after', page.after)
    return this.request<DeviceList>('GET', `/api/devices?${query.toString()}`)
  }

  show(deviceId: string): Promise<DeviceView> {
    return this.request<DeviceView>('GET', devicePath(deviceId))
  }

  async remove(deviceId: string): Promise<void> {
    await this.request<unknown>('DELETE', devicePath(deviceId))
  }

  setStatus(deviceId: string, status: DeviceStatus): Promise<DeviceView> {
    return this.request<DeviceView>('PATCH', devicePath(deviceId), { status })
  }

  async rotateKey(deviceId: string, which: KeyName): Promise<IssuedDevice> {
    return issued(await this.request<DeviceWithConnectionString>('POST', `${devicePath(deviceId)}/keys/rotate`, { key: which }))
  }

  setPassword(deviceId: string, password: string | null): Promise<DeviceView> {
    return this.request<DeviceView>('PATCH', devicePath(deviceId), { password })
  }

  async close(): Promise<void> {}

  private request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return apiRequest<T>(this.baseUrl, this.token, method, path, body, REQUEST_TIMEOUT_MS)
  }
}

/** One API call; an error reply becomes the GatewayError it describes. */
export async function apiRequest<T>(baseUrl: string, token: string, method: string, path: string, body: unknown, timeoutMs: number, extraHeaders: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = { ...extraHeaders, authorization: `Bearer ${token}` }
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (err) {
    throw new GatewayError('E_INTERNAL', `cannot reach the gateway at ${baseUrl}: ${(err as Error).message}`, undefined, { cause: err })
  }
  const text = await res.text()
  if (res.ok) return (text ? JSON.parse(text) : undefined) as T
  throw replyError(baseUrl, res.status, text)
}

function replyError(baseUrl: string, status: number, text: string): GatewayError {
  let code: ErrorCode = 'E_INTERNAL'
  let message = `the gateway answered HTTP ${status}`
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } }
    // A code this build does not know (a newer gateway) still shows as E_INTERNAL with its text.
    if (parsed.error?.code && Object.hasOwn(ERROR_CODES, parsed.error.code)) code = parsed.error.code as ErrorCode
    if (parsed.error?.message) message = parsed.error.message
  } catch {
    // not JSON: keep the generic message
  }
  if (code === 'E_UNAUTHORIZED') {
    message += `; the gateway at ${baseUrl} uses another admin token: pass it with --admin-token or STREAMGATE_ADMIN_TOKEN`
  }
  return new GatewayError(code, message, { httpStatus: status })
}

export function devicePath(deviceId: string): string {
  return `/api/devices/${encodeURIComponent(deviceId)}`
}

function issued(reply: DeviceWithConnectionString): IssuedDevice {
  const { connectionString, ...device } = reply
  return { device, connectionString }
}

/**
 * The gateway serving this data dir, or null. `warn` hears when one seems to run but does not
 * answer (then the caller changes the registry file, and `directly` says what that means).
 */
export async function runningGateway(config: GatewayConfig, warn: (message: string) => void, directly: string): Promise<{ httpUrl: string; token: string } | null> {
  const dataDir = resolve(config.dataDir)
  const running = await findRunningGateway(dataDir)
  if (running) return { httpUrl: running.httpUrl, token: resolveAdminToken(config).token }
  const stale = readRuntimeFile(dataDir)
  if (stale && isProcessAlive(stale.pid)) {
    warn(`a gateway (pid ${stale.pid}) seems to run on ${dataDir} but ${stale.httpUrl}/healthz did not answer; changing the registry file directly (${directly})`)
  }
  return null
}

/** Through the gateway's API when one serves this data dir (it must learn of every change), otherwise on the registry file. */
export async function openDeviceAdmin(config: GatewayConfig, warn: (message: string) => void, access: 'read' | 'write' = 'write'): Promise<DeviceAdmin> {
  const running = await runningGateway(config, warn, 'its connected devices are not disconnected')
  return running ? new HttpDeviceAdmin(running.httpUrl, running.token) : LocalDeviceAdmin.open(config, access)
}

/**
 * A read never creates a data directory: a mistyped --data-dir (or the wrong working directory)
 * must not answer "no devices" from an empty registry it just made. Where no registry file is,
 * no gateway has run (a gateway creates it at start), so none can be asked either.
 */
export function requireRegistry(config: GatewayConfig): void {
  if (config.state.backend === 'sqlite' && !existsSync(registryFile(config))) {
    throw new GatewayError('E_NO_DATA', `no device registry in the data directory ${resolve(config.dataDir)} (no gateway has run there): pass --data-dir, or run the command where the gateway runs`)
  }
}

function registryFile(config: GatewayConfig): string {
  return join(resolve(config.dataDir), 'registry.db')
}
