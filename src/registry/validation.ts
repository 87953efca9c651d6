import { randomBytes } from 'node:crypto'
import { GatewayError } from '../errors/catalogue.js'
import { DEVICE_ID_PATTERN, type AuthMethod, type DeviceStatus } from './types.js'

/**
 * Input rules every DeviceRegistry backend applies the same way (the contract suite checks them),
 * kept apart from SQLite so the PostgreSQL backend reuses them unchanged.
 */

export const DEFAULT_LIST_LIMIT = 100
export const MAX_LIST_LIMIT = 1000
/** Bytes of a generated key: 32, as IoT Hub generates. */
const GENERATED_KEY_BYTES = 32
const MIN_KEY_BYTES = 16
const MAX_KEY_BYTES = 64
/** A password is hashed with scrypt; a bound keeps a hostile request from making that costly. */
export const MAX_PASSWORD_LENGTH = 1024
/** Canonical base64 with padding, as IoT Hub keys are written. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

export interface ListOptions {
  limit?: number
  /** Exclusive cursor: only devices whose id sorts after this one. */
  after?: string
  /** Only devices whose id starts with this (case-sensitive, as ids compare). */
  prefix?: string
}

/**
 * `.` and `..` fit the character rule but are path segments to every URL client (RFC 3986
 * section 5.2.4 removes them before the request is sent), so `/api/devices/..` never reaches the
 * device: such a device could be registered but never managed. They are refused at registration;
 * the broker's user-name check keeps the character rule only, so a device registered by an older
 * build can still connect (and be removed with the CLI).
 */
const DOT_SEGMENTS: ReadonlySet<string> = new Set(['.', '..'])
/** The id rule as people read it, in every E_DEVICE_ID_INVALID message. */
export const DEVICE_ID_RULE = `use 1 to 128 characters of A-Z a-z 0-9 - . % _ * ? ! ( ) , : = @ $ ', other than "." and ".."`
/** Longest id echoed back in an error message (a hostile id may be megabytes). */
const MAX_ECHOED_ID = 140

export function isValidDeviceId(deviceId: unknown): deviceId is string {
  return typeof deviceId === 'string' && DEVICE_ID_PATTERN.test(deviceId) && !DOT_SEGMENTS.has(deviceId)
}

export function assertDeviceId(deviceId: unknown): asserts deviceId is string {
  if (!isValidDeviceId(deviceId)) {
    const shown = typeof deviceId === 'string' && deviceId.length > MAX_ECHOED_ID ? `of ${deviceId.length} characters` : JSON.stringify(deviceId)
    throw new GatewayError('E_DEVICE_ID_INVALID', `device id ${shown} is invalid: ${DEVICE_ID_RULE}`)
  }
}


export function generateKey(): string {
  return randomBytes(GENERATED_KEY_BYTES).toString('base64')
}

/** A caller-chosen key must be base64 of 16..64 bytes (the HMAC key of SAS tokens). */
export function validateKey(key: unknown, field: string): string {
  if (typeof key === 'string' && BASE64.test(key)) {
    const bytes = Buffer.from(key, 'base64').length
    if (bytes >= MIN_KEY_BYTES && bytes <= MAX_KEY_BYTES) return key
  }
  throw new GatewayError('E_BAD_REQUEST', `${field} must be base64 of ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes`)
}

export function validatePassword(password: unknown): string {
  if (typeof password !== 'string' || password.length === 0 || password.length > MAX_PASSWORD_LENGTH) {
    throw new GatewayError('E_BAD_REQUEST', `password must be 1 to ${MAX_PASSWORD_LENGTH} characters`)
  }
  return password
}

export function validateStatus(status: unknown): DeviceStatus {
  if (status === 'enabled' || status === 'disabled') return status
  throw new GatewayError('E_BAD_REQUEST', `status must be "enabled" or "disabled", got ${JSON.stringify(status)}`)
}

export function validateAuthMethod(method: unknown): AuthMethod {
  if (method === 'sas' || method === 'password' || method === 'x509-thumbprint' || method === 'x509-ca') return method
  throw new GatewayError('E_BAD_REQUEST', `authMethod must be "sas", "password", "x509-thumbprint" or "x509-ca", got ${JSON.stringify(method)}`)
}

/**
 * The SHA-256 thumbprint of an `x509-thumbprint` device: 64 hex digits, colons allowed (as
 * `openssl x509 -fingerprint -sha256` prints it), stored upper-case without colons. Other
 * methods take none.
 */
export function validateThumbprintFor(method: AuthMethod, thumbprint: unknown): string | null {
  if (method !== 'x509-thumbprint') {
    if (thumbprint !== undefined) throw new GatewayError('E_BAD_REQUEST', 'a thumbprint is only taken by authMethod "x509-thumbprint"')
    return null
  }
  const normalised = typeof thumbprint === 'string' ? thumbprint.replace(/:/g, '').toUpperCase() : ''
  if (!/^[0-9A-F]{64}$/.test(normalised)) throw new GatewayError('E_BAD_REQUEST', 'authMethod "x509-thumbprint" needs a SHA-256 thumbprint (64 hex digits)')
  return normalised
}

export function resolveListOptions(options: ListOptions | undefined): { limit: number; after: string | undefined; prefix: string | undefined } {
  const limit = options?.limit ?? DEFAULT_LIST_LIMIT
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new GatewayError('E_BAD_REQUEST', `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
  }
  const prefix = options?.prefix === '' ? undefined : options?.prefix
  return { limit, after: options?.after, prefix }
}

/** The one E_DEVICE_NOT_FOUND every backend answers for a device that is not registered. */
export function notFound(deviceId: string): GatewayError {
  return new GatewayError('E_DEVICE_NOT_FOUND', `device "${deviceId}" not found`, { deviceId })
}
