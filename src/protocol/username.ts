import { GatewayError } from '../errors/catalogue.js'
import { DEVICE_ID_PATTERN } from '../registry/types.js'

/**
 * The MQTT CONNECT user name (IoT Hub MQTT support, "Using the MQTT protocol directly (as a device)"). The SDK sends
 * `<HostName>/<clientId>/?api-version=2021-04-12[&model-id=<dtmi>]&DeviceClientType=<ua>`
 * where clientId is `<deviceId>` or `<deviceId>/<moduleId>` and HostName may carry a port
 * (`localhost:8883`). Plain MQTT clients may send just a device id.
 */
export interface ParsedUsername {
  /** The host as sent (port included), or null for a bare device id. */
  host: string | null
  deviceId: string
  moduleId?: string
  /** Query parameters, percent-decoded where possible; unknown ones are kept, never required. */
  query: Record<string, string>
}

/** MQTT 3.1.1 strings are at most 65535 bytes; anything near that is not an IoT Hub user name. */
const MAX_USERNAME_LENGTH = 4096
/** A DNS name or IP literal with an optional port; no user info, path or whitespace. */
const HOST_PATTERN = /^(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/

function invalid(reason: string): GatewayError {
  return new GatewayError('E_AUTH_USERNAME_INVALID', `Invalid MQTT user name: ${reason}`, { reason })
}

/**
 * Everything before the first `/?` is `host/device[/module]` (the doc's rule: device ids may
 * contain `?`, but never `/`). A user name without `/?` is tolerated, with or without a trailing
 * `/`. A user name with no `/` at all is a bare device id.
 */
export function parseUsername(username: string | undefined): ParsedUsername {
  if (username === undefined || username === '') throw invalid('missing')
  if (username.length > MAX_USERNAME_LENGTH) throw invalid('too long')
  const split = username.indexOf('/?')
  const head = split >= 0 ? username.slice(0, split) : username.replace(/\/$/, '')
  const query = split >= 0 ? parseQuery(username.slice(split + 2)) : {}
  const parts = head.split('/')
  if (parts.length === 1 && split < 0 && !username.endsWith('/')) {
    return { host: null, deviceId: checkId(parts[0]!, 'device id'), query }
  }
  if (parts.length !== 2 && parts.length !== 3) throw invalid('expected <host>/<deviceId>[/<moduleId>]')
  const [host, deviceId, moduleId] = parts as [string, string, string | undefined]
  if (!HOST_PATTERN.test(host)) throw invalid('host is not a host name with an optional port')
  const parsed: ParsedUsername = { host, deviceId: checkId(deviceId, 'device id'), query }
  if (moduleId !== undefined) parsed.moduleId = checkId(moduleId, 'module id')
  return parsed
}

/** IoT Hub's id rules (registry DEVICE_ID_PATTERN) also hold for module ids. */
function checkId(id: string, what: string): string {
  if (!DEVICE_ID_PATTERN.test(id)) throw invalid(`${what} breaks the IoT Hub id rules`)
  return id
}

/**
 * `k=v&k2=v2`. Lenient on purpose (the gateway must tolerate whatever SDK versions append):
 * undecodable values are kept raw, a bare key maps to '', the last duplicate wins.
 * Object.fromEntries defines own properties, so a `__proto__` key cannot touch the prototype.
 */
function parseQuery(text: string): Record<string, string> {
  const entries = new Map<string, string>()
  for (const pair of text.split('&')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    const key = safeDecode(eq < 0 ? pair : pair.slice(0, eq))
    entries.set(key, eq < 0 ? '' : safeDecode(pair.slice(eq + 1)))
  }
  return Object.fromEntries(entries)
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** `host[:port]` split, IPv6 literals in brackets included. Host names compare case-insensitively. */
export function splitHostPort(host: string): { name: string; port: string | null } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::([0-9]+))?$/.exec(host)
  if (m === null) return { name: asciiLower(host), port: null }
  return { name: asciiLower(m[1]!), port: m[2] ?? null }
}

/** ASCII-only folding: String#toLowerCase maps some non-ASCII letters (Kelvin sign) onto ASCII. */
function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase())
}

/**
 * Does a host named by a device (user name, SAS `sr`) denote the configured gateway host?
 * Names compare case-insensitively (DNS). Ports: the SDK copies HostName verbatim, so
 * `HostName=gw.example.com:8883` puts the port into the user name and `sr` while the operator
 * may have configured just `gw.example.com`. A port on one side only is ignored; two different
 * ports do not match. The port is no security boundary here: the signature still has to verify.
 */
export function hostsMatch(presented: string, configured: string): boolean {
  const a = splitHostPort(presented)
  const b = splitHostPort(configured)
  if (a.name === '' || a.name !== b.name) return false
  return a.port === null || b.port === null || a.port === b.port
}
