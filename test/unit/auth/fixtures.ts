import { randomBytes } from 'node:crypto'
import { expect } from 'vitest'
import type { Authenticator, ConnectInput } from '../../../src/auth/authenticator.js'
import { PasswordGuard, type PasswordGuardOptions, type PasswordRefusal } from '../../../src/auth/password-guard.js'
import { generateSasToken } from '../../../src/auth/sas.js'
import { GatewayError } from '../../../src/errors/catalogue.js'
import type { Device, DeviceRegistry } from '../../../src/registry/types.js'

/** What the CONNECT flow unit tests share: an in-memory registry, attempts, a guard that reports. */

export const HOST = 'gw.example.com'
export const UA = encodeURIComponent('azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)')
export const T0 = 1_900_000_000_000
export const WINDOW_MS = 60_000
export const PASSWORD = 'correct horse battery'

/** In-memory stand-in for the DeviceRegistry port; only `get` is used by the flow. */
export class FakeRegistry implements Pick<DeviceRegistry, 'get'> {
  readonly devices = new Map<string, Device>()
  lookups = 0
  failWith: Error | null = null

  async get(deviceId: string): Promise<Device | null> {
    this.lookups += 1
    if (this.failWith) throw this.failWith
    return this.devices.get(deviceId) ?? null
  }

  add(deviceId: string, extra: Partial<Device> = {}): Device {
    const at = new Date(0).toISOString()
    const device: Device = {
      deviceId,
      status: 'enabled',
      authMethod: 'sas',
      primaryKey: randomBytes(32).toString('base64'),
      secondaryKey: randomBytes(32).toString('base64'),
      passwordHash: null,
      x509Thumbprint: null,
      createdAt: at,
      updatedAt: at,
      lastActivityAt: null,
      connectionState: 'disconnected',
      connectionStateUpdatedAt: null,
      connectionSeq: 0,
      ...extra,
    }
    this.devices.set(deviceId, device)
    return device
  }
}

export function attempt(deviceId: string, password: string | undefined, o: Partial<ConnectInput> = {}): ConnectInput {
  return {
    clientId: deviceId,
    username: `${HOST}/${deviceId}/?api-version=2021-04-12&DeviceClientType=${UA}`,
    password: password === undefined ? undefined : Buffer.from(password),
    remoteAddress: '192.0.2.10',
    ...o,
  }
}

export function sasFor(device: Pick<Device, 'deviceId' | 'primaryKey'>, nowMs: number, o: { host?: string; deviceId?: string; key?: string; ttl?: number } = {}): string {
  return generateSasToken({
    host: o.host ?? HOST,
    deviceId: o.deviceId ?? device.deviceId,
    key: o.key ?? device.primaryKey,
    expiresAt: Math.floor(nowMs / 1000) + (o.ttl ?? 3600),
  })
}

/** A PasswordGuard (small budgets by default) that records what it refused and how many checks ran. */
export function reportingGuard(now: () => number, options: Partial<PasswordGuardOptions> = {}): { guard: PasswordGuard; refused: PasswordRefusal[]; checks: () => number } {
  const refused: PasswordRefusal[] = []
  let checks = 0
  const guard = new PasswordGuard({
    maxFailuresPerPair: 3,
    maxFailuresPerAddress: 5,
    windowMs: WINDOW_MS,
    maxConcurrentHashes: 2,
    maxQueuedHashes: 64,
    maxQueuedHashesPerAddress: 8,
    now,
    observer: { refused: (r) => refused.push(r), started: () => (checks += 1) },
    ...options,
  })
  return { guard, refused, checks: () => checks }
}

/** The GatewayError an attempt is refused with (fails the test if it is accepted). */
export async function refusal(auth: Authenticator, input: ConnectInput): Promise<GatewayError> {
  const err = await auth.authenticate(input).then(
    () => new Error('expected a refusal'),
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(GatewayError)
  return err as GatewayError
}

/** The outcome of an attempt as a string: the method on success, else the error code. */
export async function outcome(auth: Authenticator, input: ConnectInput): Promise<string> {
  return auth.authenticate(input).then(
    (r) => r.method,
    (e: GatewayError) => e.code,
  )
}
