import type { X509Certificate } from 'node:crypto'
import { GatewayError, toGatewayError, type ErrorCode } from '../errors/catalogue.js'
import { hostsMatch, parseUsername, type ParsedUsername } from '../protocol/username.js'
import type { Device, DeviceRegistry } from '../registry/types.js'
import type { PasswordAttempt, PasswordGuard } from './password-guard.js'
import { parseSasToken, SAS_PREFIX, verifySasToken, type SasToken } from './sas.js'
import { verifyDeviceCertificate } from './x509.js'

/**
 * The CONNECT flow: CONNECT_STEPS below, run in order, each a small named function over one state
 * object. A failure ends the flow with a GatewayError whose `returnCode` is the CONNACK code.
 *
 * Not revealing which devices exist (IoT Hub answers an unknown device like a bad credential):
 * the log gets distinct codes, the device only the CONNACK code, and
 * - the outcomes that do not need the registry (CONNACK 2 for a client id other than the device
 *   id, 4 for a missing or unparsable credential or user name, 3 for a password attempt refused
 *   by the PasswordGuard) are decided before the device is looked up;
 * - every outcome that depends on the registry is CONNACK 5 (MQTT 3.1.1 section 3.2.2.3, "not
 *   authorized"), whatever the device's state or authentication method: unknown, disabled, wrong
 *   token, wrong password, or a credential of a kind the device does not use;
 * - every password attempt costs exactly one scrypt check through the same gate, real or dummy,
 *   so for passwords neither the answer nor its timing tells a registered device from another.
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
  /** Failed-password limits and the password check queue. */
  passwords: PasswordGuard
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
  /** Set for password credentials once the PasswordGuard admitted the attempt. */
  passwordAttempt?: PasswordAttempt
  device?: Device
  result?: AuthResult
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

function parseUsernameStep(state: ConnectState): void {
  const username = parseUsername(state.input.username)
  if (username.moduleId !== undefined) {
    throw new GatewayError('E_AUTH_USERNAME_INVALID', 'Module identities are not supported', { reason: 'module' })
  }
  state.username = username
}

/**
 * IoT Hub requires the client id to be the device id (IoT Hub docs, "Communicate with an IoT hub
 * using the MQTT protocol": ClientId is the deviceId). It also makes the claimed device id the
 * one every later step and counter sees.
 */
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
    // X.509 mode: the SDK sends no password; the identity is the TLS client certificate (IoT Hub
    // docs, "Communicate with an IoT hub using the MQTT protocol", X.509 authentication).
    state.credentials = { kind: 'x509', cert: peerCertificate }
    return
  }
  if (password === undefined || password.length === 0) {
    throw new GatewayError('E_AUTH_CREDENTIALS_MISSING', 'The CONNECT carried no password or SAS token')
  }
  const text = password.toString('utf8')
  state.credentials = text.startsWith(SAS_PREFIX) ? { kind: 'sas', token: parseSasToken(text) } : { kind: 'password', password: text }
}

/**
 * Password attempts only, before the lookup so that a refusal (CONNACK 3) does not depend on the
 * registry. CONNACK 3 is "server unavailable", which the Azure SDK retries with back-off
 * (ServiceUnavailableError is retryable in azure-iot-common), unlike 4 and 5.
 */
function admitPassword(state: ConnectState, deps: Required<AuthenticatorDeps>): void {
  if (need(state.credentials, 'credentials').kind !== 'password') return
  state.passwordAttempt = deps.passwords.admit(state.input.clientId, state.input.remoteAddress)
}

async function loadDevice(state: ConnectState, deps: Required<AuthenticatorDeps>): Promise<void> {
  const credentials = need(state.credentials, 'credentials')
  const device = await deps.registry.get(need(state.username, 'user name').deviceId)
  if (device !== null && device.status === 'enabled') {
    state.device = device
    return
  }
  if (credentials.kind === 'password') await need(state.passwordAttempt, 'password admission').check(credentials.password, DUMMY_PASSWORD_HASH)
  // Messages go to the log only; the device sees nothing but the CONNACK code.
  if (device === null) throw new GatewayError('E_DEVICE_NOT_FOUND', 'No device with this id is registered')
  throw new GatewayError('E_DEVICE_DISABLED', 'The device is disabled')
}

async function verifyCredentials(state: ConnectState, deps: Required<AuthenticatorDeps>): Promise<void> {
  const device = need(state.device, 'device')
  const credentials = need(state.credentials, 'credentials')
  if (device.authMethod === 'x509-thumbprint' || device.authMethod === 'x509-ca') {
    await verifyX509Device(state, device, deps)
  } else if (credentials.kind === 'x509') {
    // A SAS or password device that sent a certificate and no password: answered like an unknown
    // device (CONNACK 5), or the answer would tell which ids are registered.
    throw new GatewayError('E_AUTH_METHOD', 'This device authenticates with a SAS token or password, not a certificate')
  } else if (credentials.kind === 'sas') {
    verifySas(state, device, credentials.token, deps)
  } else {
    // A SAS device takes its password too if one was set; without one the check runs on the dummy.
    const ok = await need(state.passwordAttempt, 'password admission').check(credentials.password, device.passwordHash ?? DUMMY_PASSWORD_HASH)
    if (!ok || device.passwordHash === null) throw new GatewayError('E_AUTH_PASSWORD', 'Bad user name or password')
    state.result = { device, deviceId: device.deviceId, method: 'password' }
  }
}

/**
 * An X.509 device proves itself with its certificate only; a password beside it is ignored, but
 * still costs the dummy check an unknown device's password costs, so that timing does not tell a
 * registered X.509 device from an unknown one.
 */
async function verifyX509Device(state: ConnectState, device: Device, deps: Required<AuthenticatorDeps>): Promise<void> {
  if (state.credentials?.kind === 'password') await need(state.passwordAttempt, 'password admission').check(state.credentials.password, DUMMY_PASSWORD_HASH)
  const cert = state.input.peerCertificate
  if (cert === undefined) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'This device authenticates with an X.509 certificate over TLS and sent none')
  verifyDeviceCertificate(cert, device, deps.trustedCas(), deps.now(), state.input.peerChain ?? [], deps.x509MaxIntermediates)
  state.result = { device, deviceId: device.deviceId, method: device.authMethod as 'x509-thumbprint' | 'x509-ca' }
}

/** A password device takes only its password, so a SAS token for it fails even if made with its keys. */
function verifySas(state: ConnectState, device: Device, token: SasToken, deps: Required<AuthenticatorDeps>): void {
  if (device.authMethod !== 'sas') throw new GatewayError('E_AUTH_METHOD', 'This device authenticates with a password, not a SAS token')
  const match = verifySasToken(token, {
    host: need(state.username, 'user name').host ?? deps.hostname,
    deviceId: device.deviceId,
    keys: [device.primaryKey, device.secondaryKey],
    nowSeconds: Math.floor(deps.now() / 1000),
    clockSkewSeconds: deps.clockSkewSeconds,
  })
  const method = match.keyIndex === 0 ? 'sas-primary' : 'sas-secondary'
  state.result = { device, deviceId: device.deviceId, method, tokenExpiresAt: match.expiresAt }
}

export const CONNECT_STEPS: readonly ConnectStep[] = Object.freeze([
  { name: 'parse-username', run: parseUsernameStep },
  { name: 'client-id', run: checkClientId },
  { name: 'hostname', run: checkHostname },
  { name: 'read-credentials', run: readCredentials },
  { name: 'password-admission', run: admitPassword },
  { name: 'load-device', run: loadDevice },
  { name: 'verify-credentials', run: verifyCredentials },
])

/** Failures that count against the password limits: the client's fault, not the gateway's. */
function countsAsFailure(code: ErrorCode): boolean {
  return code !== 'E_AUTH_RATE_LIMITED' && code !== 'E_AUTH_BUSY' && (code.startsWith('E_AUTH_') || code.startsWith('E_DEVICE_'))
}

export class Authenticator {
  private readonly deps: Required<AuthenticatorDeps>

  constructor(deps: AuthenticatorDeps, private readonly steps: readonly ConnectStep[] = CONNECT_STEPS) {
    this.deps = { ...deps, now: deps.now ?? Date.now, trustedCas: deps.trustedCas ?? (() => []), x509MaxIntermediates: deps.x509MaxIntermediates ?? 4 }
  }

  async authenticate(input: ConnectInput): Promise<AuthResult> {
    const state: ConnectState = { input }
    try {
      for (const step of this.steps) await step.run(state, this.deps)
      const result = need(state.result, 'result')
      state.passwordAttempt?.settle('accepted')
      return result
    } catch (err) {
      const error = toGatewayError(err)
      state.passwordAttempt?.settle(countsAsFailure(error.code) ? 'failed' : 'not-counted')
      throw error
    }
  }
}
