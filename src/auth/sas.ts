import { createHmac, timingSafeEqual } from 'node:crypto'
import { GatewayError } from '../errors/catalogue.js'
import { hostsMatch } from '../protocol/username.js'

/**
 * IoT Hub SAS tokens for device keys (IoT Hub MQTT support, "Using the MQTT protocol directly (as a device)", security tokens):
 *   SharedAccessSignature sr=<strict-enc(host/devices/id)>&sig=<strict-enc(b64 hmac)>&se=<secs>
 * string-to-sign = <sr exactly as in the token> + "\n" + <se>, HMAC-SHA256 keyed with the
 * base64-decoded device key. Tokens and keys never enter error messages or details.
 */

export const SAS_PREFIX = 'SharedAccessSignature '
/** Real tokens are ~150 characters; the bound keeps a hostile CONNECT cheap to reject. */
const MAX_TOKEN_LENGTH = 4096
/** se: whole seconds since the epoch, decimal; 12 digits reach beyond year 30000. */
const SE_PATTERN = /^[0-9]{1,12}$/

export interface SasToken {
  /** Resource URI, percent-decoded (compare this). */
  sr: string
  /** Resource URI exactly as in the token (sign this). */
  srRaw: string
  /** Signature, percent-decoded: the base64 HMAC. */
  sig: string
  /** Expiry, seconds since the Unix epoch. */
  se: number
  /** Key name; only policy (hub-level) tokens carry it, never device tokens. */
  skn?: string
}

function malformed(reason: string): GatewayError {
  return new GatewayError('E_AUTH_TOKEN_MALFORMED', `Malformed SAS token: ${reason}`, { reason })
}

function decodeField(value: string, name: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    throw malformed(`${name} is not valid percent-encoding`)
  }
}

/** Split `k=v&...`, refusing duplicates: two `sr` or `sig` fields would make the token ambiguous. */
function tokenFields(body: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const pair of body.split('&')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw malformed('field without a name or value')
    const name = pair.slice(0, eq)
    if (fields.has(name)) throw malformed(`duplicate field ${name}`)
    fields.set(name, pair.slice(eq + 1))
  }
  return fields
}

/**
 * Parse a token. Field order is free (the SDK sends sr, sig, [skn], se) and unknown fields are
 * ignored, as the SDK's own parser does; sr, sig and se are required and non-empty.
 */
export function parseSasToken(token: string): SasToken {
  if (token.length > MAX_TOKEN_LENGTH) throw malformed('too long')
  if (!token.startsWith(SAS_PREFIX)) throw malformed(`does not start with "${SAS_PREFIX}"`)
  const body = token.slice(SAS_PREFIX.length)
  if (body === '' || /\s/.test(body)) throw malformed('empty or contains white space')
  const fields = tokenFields(body)
  const srRaw = fields.get('sr')
  const sigRaw = fields.get('sig')
  const seRaw = fields.get('se')
  if (!srRaw || !sigRaw || !seRaw) throw malformed('sr, sig and se are required')
  if (!SE_PATTERN.test(seRaw)) throw malformed('se is not a whole number of seconds')
  const parsed: SasToken = { sr: decodeField(srRaw, 'sr'), srRaw, sig: decodeField(sigRaw, 'sig'), se: Number(seRaw) }
  const skn = fields.get('skn')
  if (skn !== undefined) parsed.skn = decodeField(skn, 'skn')
  return parsed
}

/** encodeURIComponent plus `! ' ( ) *`, as azure-iot-common's encodeUriComponentStrict. */
export function encodeUriComponentStrict(text: string): string {
  // Lower-case hex like the SDK (`*` -> `%2a`), so generated tokens match it byte for byte.
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`)
}

/** Base64 HMAC-SHA256 of `<sr>\n<se>`; `sr` must already be encoded as it appears in the token. */
export function signSas(sr: string, se: number, keyB64: string): string {
  return createHmac('sha256', Buffer.from(keyB64, 'base64')).update(`${sr}\n${se}`).digest('base64')
}

export interface SasTokenInput {
  host: string
  deviceId: string
  /** Module identities sign `host/devices/<d>/modules/<m>`. */
  moduleId?: string
  /** Base64 device key. */
  key: string
  /** Expiry, seconds since the Unix epoch. */
  expiresAt: number
}

function resourceUri(host: string, deviceId: string, moduleId?: string): string {
  return moduleId === undefined ? `${host}/devices/${deviceId}` : `${host}/devices/${deviceId}/modules/${moduleId}`
}

/** The token the Azure device SDK produces for the same inputs, byte for byte. */
export function generateSasToken(input: SasTokenInput): string {
  if (!Number.isSafeInteger(input.expiresAt) || input.expiresAt <= 0) {
    throw new GatewayError('E_BAD_REQUEST', 'expiresAt must be a positive whole number of seconds')
  }
  const sr = encodeUriComponentStrict(resourceUri(input.host, input.deviceId, input.moduleId))
  const sig = encodeUriComponentStrict(signSas(sr, input.expiresAt, input.key))
  return `${SAS_PREFIX}sr=${sr}&sig=${sig}&se=${input.expiresAt}`
}

export interface SasVerifyOptions {
  /** The host the device named (user name), else the configured gateway host name. */
  host: string
  deviceId: string
  moduleId?: string
  /** Base64 keys to try in order (primary, secondary). */
  keys: readonly string[]
  nowSeconds: number
  clockSkewSeconds: number
}

export interface SasMatch {
  /** Index into `keys` of the key that signed the token (0 primary, 1 secondary). */
  keyIndex: number
  /** Token expiry (seconds), for disconnecting when it passes as IoT Hub does. */
  expiresAt: number
}

/**
 * Audience: the decoded `sr` must be `<host>/devices/<deviceId>[/modules/<moduleId>]`, compared
 * case-insensitively (IoT Hub MQTT support), with the host matched by hostsMatch (a port on one
 * side only is ignored). Decided: a trailing `/` and an sr naming only the hub are refused; no
 * SDK sends them, and a hub-wide sr belongs to policy tokens (skn), which devices do not use.
 */
function audienceMatches(sr: string, options: SasVerifyOptions): boolean {
  const suffix = asciiLower(resourceUri('', options.deviceId, options.moduleId))
  // ASCII-only case folding: String#toLowerCase maps some non-ASCII letters onto ASCII ones.
  if (sr.length <= suffix.length || asciiLower(sr.slice(-suffix.length)) !== suffix) return false
  return hostsMatch(sr.slice(0, -suffix.length), options.host)
}

function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase())
}

/**
 * Compares the base64 text, not decoded bytes: Buffer.from(..., 'base64') skips stray
 * characters, so a byte comparison would also accept altered spellings of a valid signature.
 */
function signatureMatches(expectedB64: string, presentedB64: string): boolean {
  const expected = Buffer.from(expectedB64)
  const presented = Buffer.from(presentedB64)
  // timingSafeEqual needs equal lengths; a length mismatch reveals only the public HMAC size.
  return expected.length === presented.length && timingSafeEqual(expected, presented)
}

/**
 * Verify a device token; checks run malformed, expired, audience, signature (all but malformed
 * give CONNACK 5, so the order shows in the log only). Valid while `se + skew > now`.
 */
export function verifySasToken(token: string | SasToken, options: SasVerifyOptions): SasMatch {
  const parsed = typeof token === 'string' ? parseSasToken(token) : token
  if (parsed.se + options.clockSkewSeconds <= options.nowSeconds) {
    throw new GatewayError('E_AUTH_EXPIRED', 'The SAS token has expired', { expiredAt: parsed.se, now: options.nowSeconds })
  }
  if (!audienceMatches(parsed.sr, options)) {
    throw new GatewayError('E_AUTH_AUDIENCE', 'The SAS token was issued for another host or device')
  }
  // Every key is tried (no early exit) so timing does not tell which one matched.
  let keyIndex = -1
  options.keys.forEach((key, index) => {
    if (key !== '' && signatureMatches(signSas(parsed.srRaw, parsed.se, key), parsed.sig) && keyIndex < 0) keyIndex = index
  })
  if (keyIndex < 0) throw new GatewayError('E_AUTH_SIGNATURE', 'The SAS token signature matches no device key')
  return { keyIndex, expiresAt: parsed.se }
}

export interface ConnectionStringInput {
  host: string
  deviceId: string
  key: string
  /** Where the socket goes when it is not `host` (IoT Hub MQTT support, "TLS/SSL configuration" and MQTT over WebSockets on port 443). */
  gatewayHost?: string
}

/** `HostName=...;DeviceId=...;SharedAccessKey=...[;GatewayHostName=...]`, as the SDK's parser reads it. */
export function buildConnectionString(input: ConnectionStringInput): string {
  const parts: Array<[string, string]> = [
    ['HostName', input.host],
    ['DeviceId', input.deviceId],
    ['SharedAccessKey', input.key],
  ]
  if (input.gatewayHost !== undefined) parts.push(['GatewayHostName', input.gatewayHost])
  for (const [name, value] of parts) {
    if (value === '' || value.includes(';')) throw new GatewayError('E_BAD_REQUEST', `${name} must be non-empty and contain no ";"`)
  }
  return parts.map(([name, value]) => `${name}=${value}`).join(';')
}

export interface ConnectionString {
  hostName: string
  deviceId: string
  moduleId?: string
  sharedAccessKey?: string
  sharedAccessKeyName?: string
  sharedAccessSignature?: string
  gatewayHostName?: string
  x509: boolean
}

const CONNECTION_STRING_FIELDS = {
  HostName: 'hostName',
  DeviceId: 'deviceId',
  ModuleId: 'moduleId',
  SharedAccessKey: 'sharedAccessKey',
  SharedAccessKeyName: 'sharedAccessKeyName',
  SharedAccessSignature: 'sharedAccessSignature',
  GatewayHostName: 'gatewayHostName',
} as const
type StringField = (typeof CONNECTION_STRING_FIELDS)[keyof typeof CONNECTION_STRING_FIELDS]

/**
 * Parse a device connection string like azure-iot-device's ConnectionString.parse: `;`-separated
 * `Name=value` (split at the first `=`, so base64 padding survives), unknown names ignored, last
 * duplicate wins, HostName and DeviceId required, exactly one of SharedAccessKey,
 * SharedAccessSignature or x509=true. Names are case-sensitive, as in the SDK.
 */
export function parseConnectionString(text: string): ConnectionString {
  const fields: Partial<Record<StringField, string>> = {}
  let x509 = false
  for (const part of text.split(';')) {
    const eq = part.indexOf('=')
    if (eq <= 0 || eq === part.length - 1) continue
    const name = part.slice(0, eq)
    const value = part.slice(eq + 1)
    if (name === 'x509') x509 = value.toLowerCase() === 'true'
    else if (Object.hasOwn(CONNECTION_STRING_FIELDS, name)) fields[CONNECTION_STRING_FIELDS[name as keyof typeof CONNECTION_STRING_FIELDS]] = value
  }
  const { hostName, deviceId } = fields
  if (!hostName || !deviceId) throw new GatewayError('E_BAD_REQUEST', 'The connection string needs HostName and DeviceId')
  const credentials = [fields.sharedAccessKey !== undefined, fields.sharedAccessSignature !== undefined, x509].filter(Boolean).length
  if (credentials !== 1) {
    throw new GatewayError('E_BAD_REQUEST', 'The connection string needs exactly one of SharedAccessKey, SharedAccessSignature or x509=true')
  }
  return { ...fields, hostName, deviceId, x509 }
}
