import type { X509Certificate } from 'node:crypto'
import { isIPv6 } from 'node:net'
import type { GatewayConfig } from '../config/schema.js'
import { GatewayError, toGatewayError, type ErrorCode } from '../errors/catalogue.js'
import { hostsMatch, parseUsername, type ParsedUsername } from '../protocol/username.js'
import type { Device, DeviceRegistry } from '../registry/types.js'
import { verifyPassword } from './password.js'
import { FailureLimiter } from './rate-limit.js'
import { parseSasToken, SAS_PREFIX, verifySasToken, type SasToken } from './sas.js'
import { verifyDeviceCertificate } from './x509.js'

/**
 * The CONNECT flow (STYLE.md 2: flows are data): CONNECT_STEPS below, run in order, each a
 * small named function over one state object. A failure ends the flow with a GatewayError whose
 * `returnCode` is the CONNACK code; identity and credential failures are also counted on both
 * failure limiters.
 *
 * Not revealing which devices exist (docs/iothub-mqtt.md section 1; IoT Hub answers an unknown
 * device like a bad token): the log gets distinct codes, and the steps are ordered so that the
 * CONNACK 4 outcomes that do not need the registry (no credentials, malformed token, bad user
 * name) are decided before the device is looked up. For SAS tokens every registry-dependent
 * outcome is then CONNACK 5. For passwords the catalogue maps E_AUTH_PASSWORD to 4 but
 * E_DEVICE_NOT_FOUND to 5, so a password guesser can still tell the two apart until that
 * mapping changes (MQTT 3.1.1 section 3.2.2.3 reserves 4 for malformed credentials). A password
 * attempt on an unknown, disabled or password-less device still runs one scrypt, so at least
 * the timing does not tell.
 */

export interface ConnectInput {
  clientId: string
  username?: string | undefined
  password?: Buffer | undefined
  remoteAddress: string
  /** The client certificate of a TLS connection (mqtts or wss), when the device sent one. */
  peerCertificate?: X509Certificate | undefined
  /** The certificates the device sent after its own (intermediate CAs); used for x509-ca devices. */
  peerChain?: readonly X509Certificate[] | undefined
}

export interface AuthenticatorDeps {
  /** Only `get` is used. */
  registry: Pick<DeviceRegistry, 'get'>
  /** Configured gateway host name (config `hostname`). */
  hostname: string
  clockSkewSeconds: number
  limiters: { address: FailureLimiter; device: FailureLimiter }
  /** Clock in milliseconds. */
  now?: () => number
  /** CAs registered with `streamgate ca add`, for `x509-ca` devices (default: none). */
  trustedCas?: () => readonly X509Certificate[]
  /** Intermediate CAs followed to a registered one (default 4). */
  x509MaxIntermediates?: number
}

export type AuthMethodUsed = 'sas-primary' | 'sas-secondary' | 'password' | 'x509-thumbprint' | 'x509-ca'

export interface AuthResult {
  device: Device
  deviceId: string
  method: AuthMethodUsed
  /** SAS expiry (seconds since the epoch); IoT Hub disconnects a device when its token expires. */
  tokenExpiresAt?: number
}

type Credentials = { kind: 'sas'; token: SasToken } | { kind: 'password'; password: string } | { kind: 'x509'; cert: X509Certificate }

export interface ConnectState {
  readonly input: ConnectInput
  username?: ParsedUsername
  credentials?: Credentials
  device?: Device
  result?: AuthResult
  /** Set once the attempt has been counted against the device limiter (see checkRateLimits). */
  deviceCharged?: boolean
}

export interface ConnectStep {
  readonly name: string
  run(state: ConnectState, deps: Required<AuthenticatorDeps>): void | Promise<void>
}

/** A scrypt record of a random password nobody knows: verifying against it only costs time. */
const DUMMY_PASSWORD_HASH = 'scrypt$16384$8$1$coTZmN36B/TcL4jYHkXrUQ==$mVCHLoNZKYXeyUMbSGpyKXD5oIpjgwqg/XkWFrw3cao='

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new GatewayError('E_INTERNAL', `connect flow ran out of order: no ${what}`)
  return value
}

/**
 * Failed attempts are counted per source address and per claimed device. The device key is the
 * client id: the flow refuses any client id other than the user name's device id before
 * credentials are checked, so every guess that reaches a credential check is counted under the
 * device it targets. IPv4-mapped IPv6 addresses count as IPv4; IPv6 addresses count per /64,
 * the block one subscriber normally holds, or changing address would reset the count.
 */
export function addressKey(remoteAddress: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remoteAddress)
  if (mapped) return mapped[1]!
  if (!isIPv6(remoteAddress)) return remoteAddress
  const [head = '', tail] = remoteAddress.split('%')[0]!.split('::')
  // An embedded IPv4 tail (`::ffff:1.2.3.4` forms) stands for two groups.
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])))
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`
}

/**
 * Refuse a limited address or device; otherwise charge the attempt to the device up front.
 * Charging first means N parallel guesses at one device cannot all pass `check` while the first
 * scrypt runs; a success is forgiven afterwards. The address is charged only on failure: many
 * legitimate devices may connect at once from one NAT address, so its limit is approximate
 * under concurrency, the per-device one is exact.
 */
function checkRateLimits(state: ConnectState, deps: Required<AuthenticatorDeps>): void {
  const { address, device } = deps.limiters
  if (!address.check(addressKey(state.input.remoteAddress))) {
    throw new GatewayError('E_AUTH_RATE_LIMITED', 'Too many failed attempts from this address; retry later', { limiter: 'address' })
  }
  if (!device.check(state.input.clientId)) {
    throw new GatewayError('E_AUTH_RATE_LIMITED', 'Too many failed attempts for this device; retry later', { limiter: 'device' })
  }
  device.recordFailure(state.input.clientId)
  state.deviceCharged = true
}

function parseUsernameStep(state: ConnectState): void {
  const username = parseUsername(state.input.username)
  if (username.moduleId !== undefined) {
    throw new GatewayError('E_AUTH_USERNAME_INVALID', 'Module identities are not supported', { reason: 'module' })
  }
  state.username = username
}

/** The SDK sends clientId = deviceId (docs/iothub-mqtt.md section 1); IoT Hub requires it. */
function checkClientId(state: ConnectState): void {
  const { deviceId } = need(state.username, 'user name')
  if (state.input.clientId !== deviceId) {
    throw new GatewayError('E_AUTH_CLIENT_ID_MISMATCH', 'The MQTT client id must equal the device id of the user name')
  }
}

/** A bare-device-id user name names no host; otherwise it must name this gateway (ports: hostsMatch). */
function checkHostname(state: ConnectState, deps: Required<AuthenticatorDeps>): void {
  const { host } = need(state.username, 'user name')
  if (host !== null && !hostsMatch(host, deps.hostname)) {
    throw new GatewayError('E_AUTH_USERNAME_INVALID', 'The user name names another host', { reason: 'host', host })
  }
}

/** Decided before the device lookup: its outcomes (CONNACK 4) must not depend on the registry. */
function readCredentials(state: ConnectState): void {
  const { password, peerCertificate } = state.input
  if ((password === undefined || password.length === 0) && peerCertificate !== undefined) {
    // X.509 mode: the SDK sends no password; the identity is the TLS client certificate (§1).
    state.credentials = { kind: 'x509', cert: peerCertificate }
    return
  }
  if (password === undefined || password.length === 0) {
    throw new GatewayError('E_AUTH_CREDENTIALS_MISSING', 'The CONNECT carried no password or SAS token')
  }
  const text = password.toString('utf8')
  state.credentials = text.startsWith(SAS_PREFIX) ? { kind: 'sas', token: parseSasToken(text) } : { kind: 'password', password: text }
}

async function loadDevice(state: ConnectState, deps: Required<AuthenticatorDeps>): Promise<void> {
  const credentials = need(state.credentials, 'credentials')
  const device = await deps.registry.get(need(state.username, 'user name').deviceId)
  if (device !== null && device.status === 'enabled') {
    state.device = device
    return
  }
  if (credentials.kind === 'password') await verifyPassword(credentials.password, DUMMY_PASSWORD_HASH)
  // Messages go to the log only; the device sees nothing but the CONNACK code.
  if (device === null) throw new GatewayError('E_DEVICE_NOT_FOUND', 'No device with this id is registered')
  throw new GatewayError('E_DEVICE_DISABLED', 'The device is disabled')
}

async function verifyCredentials(state: ConnectState, deps: Required<AuthenticatorDeps>): Promise<void> {
  const device = need(state.device, 'device')
  const credentials = need(state.credentials, 'credentials')
  if (device.authMethod === 'x509-thumbprint' || device.authMethod === 'x509-ca') {
    // An X.509 device proves itself with its certificate only; a password beside it is ignored.
    const cert = state.input.peerCertificate
    if (cert === undefined) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'This device authenticates with an X.509 certificate over TLS and sent none')
    verifyDeviceCertificate(cert, device, deps.trustedCas(), deps.now(), state.input.peerChain ?? [], deps.x509MaxIntermediates)
    state.result = { device, deviceId: device.deviceId, method: device.authMethod }
    return
  }
  if (credentials.kind === 'x509') {
    // A SAS or password device that also sent a certificate (and no password): nothing to check.
    throw new GatewayError('E_AUTH_CREDENTIALS_MISSING', 'The CONNECT carried no password or SAS token')
  }
  if (credentials.kind === 'sas') {
    // A device registered for password authentication takes only its password; a SAS device
    // takes tokens and, if one was set, its password too.
    if (device.authMethod !== 'sas') throw new GatewayError('E_AUTH_METHOD', 'This device authenticates with a password, not a SAS token')
    const match = verifySasToken(credentials.token, {
      host: need(state.username, 'user name').host ?? deps.hostname,
      deviceId: device.deviceId,
      keys: [device.primaryKey, device.secondaryKey],
      nowSeconds: Math.floor(deps.now() / 1000),
      clockSkewSeconds: deps.clockSkewSeconds,
    })
    const method = match.keyIndex === 0 ? 'sas-primary' : 'sas-secondary'
    state.result = { device, deviceId: device.deviceId, method, tokenExpiresAt: match.expiresAt }
    return
  }
  const ok = await verifyPassword(credentials.password, device.passwordHash ?? DUMMY_PASSWORD_HASH)
  if (!ok || device.passwordHash === null) {
    throw new GatewayError('E_AUTH_PASSWORD', 'Bad user name or password')
  }
  state.result = { device, deviceId: device.deviceId, method: 'password' }
}

export const CONNECT_STEPS: readonly ConnectStep[] = Object.freeze([
  { name: 'rate-limit', run: checkRateLimits },
  { name: 'parse-username', run: parseUsernameStep },
  { name: 'client-id', run: checkClientId },
  { name: 'hostname', run: checkHostname },
  { name: 'read-credentials', run: readCredentials },
  { name: 'load-device', run: loadDevice },
  { name: 'verify-credentials', run: verifyCredentials },
])

/** Failures that count against the limiters: the client's fault, not the gateway's. */
function countsAsFailure(code: ErrorCode): boolean {
  return code !== 'E_AUTH_RATE_LIMITED' && (code.startsWith('E_AUTH_') || code.startsWith('E_DEVICE_'))
}

export class Authenticator {
  private readonly deps: Required<AuthenticatorDeps>

  constructor(deps: AuthenticatorDeps, private readonly steps: readonly ConnectStep[] = CONNECT_STEPS) {
    this.deps = { ...deps, now: deps.now ?? Date.now, trustedCas: deps.trustedCas ?? (() => []), x509MaxIntermediates: deps.x509MaxIntermediates ?? 4 }
  }

  async authenticate(input: ConnectInput): Promise<AuthResult> {
    const state: ConnectState = { input }
    const { address, device } = this.deps.limiters
    try {
      for (const step of this.steps) await step.run(state, this.deps)
      const result = need(state.result, 'result')
      if (state.deviceCharged === true) device.forgive(input.clientId)
      return result
    } catch (err) {
      const error = toGatewayError(err)
      if (countsAsFailure(error.code)) {
        address.recordFailure(addressKey(input.remoteAddress))
        if (state.deviceCharged !== true) device.recordFailure(input.clientId)
      } else if (state.deviceCharged === true) {
        device.forgive(input.clientId)
      }
      throw error
    }
  }
}

/** The Authenticator as configured by `hostname` and `auth.*`. */
export function createAuthenticator(
  config: Pick<GatewayConfig, 'hostname' | 'auth'>,
  registry: Pick<DeviceRegistry, 'get'>,
  now?: () => number,
): Authenticator {
  const { auth } = config
  const windowMs = auth.failureWindowSeconds * 1000
  const limiterClock = now === undefined ? {} : { now }
  return new Authenticator({
    registry,
    hostname: config.hostname,
    clockSkewSeconds: auth.clockSkewSeconds,
    limiters: {
      address: new FailureLimiter({ maxFailures: auth.maxFailuresPerAddress, windowMs, ...limiterClock }),
      device: new FailureLimiter({ maxFailures: auth.maxFailuresPerDevice, windowMs, ...limiterClock }),
    },
    ...(now === undefined ? {} : { now }),
  })
}
