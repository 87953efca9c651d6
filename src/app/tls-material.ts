import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createSecureContext } from 'node:tls'
import { join } from 'node:path'
import type { GatewayConfig } from '../config/schema.js'
import { GatewayError } from '../errors/catalogue.js'
import type { TlsMaterial } from '../broker/listeners.js'

/** Where `streamgate certs init` writes the development CA and server certificate. */
export function certsDir(dataDir: string): string {
  return join(dataDir, 'certs')
}

export const DEV_CERT_FILES = { caCert: 'ca.crt', caKey: 'ca.key', serverCert: 'server.crt', serverKey: 'server.key' } as const

/**
 * The TLS material of the MQTT/TLS and secure WebSocket listeners, or null when neither is
 * enabled. Empty certFile/keyFile fall back to the `certs init` files in the data dir: a new user
 * runs one command and sets `mqtt.tls.enabled`; explicit files (real certificates) always win.
 * Missing files fail the start-up with every problem listed.
 */
export function loadTlsMaterial(config: GatewayConfig, dataDir: string, registeredCas: readonly X509Certificate[] = []): TlsMaterial | null {
  if (!config.mqtt.tls.enabled && !config.http.wss.enabled) return null
  const t = config.mqtt.tls
  const dir = certsDir(dataDir)
  const certFile = t.certFile || join(dir, DEV_CERT_FILES.serverCert)
  const keyFile = t.keyFile || join(dir, DEV_CERT_FILES.serverKey)
  const problems: string[] = []
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (err) {
      const hint = file.startsWith(dir) ? ' (run `streamgate certs init` or set mqtt.tls.certFile/keyFile)' : ''
      problems.push(`mqtt.tls: cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}${hint}`)
      return Buffer.alloc(0)
    }
  }
  const cert = read(certFile, 'certificate')
  const key = read(keyFile, 'key')
  const ca: Buffer[] = []
  if (t.caFile) ca.push(read(t.caFile, 'CA file'))
  // The dev CA is advertised too, so that devices with a `certs device` certificate offer it.
  const devCa = join(dir, DEV_CERT_FILES.caCert)
  if (existsSync(devCa)) ca.push(readFileSync(devCa))
  // CAs of `ca add` as they are at start-up (x509-ca devices; accepted at CONNECT either way).
  for (const cert of registeredCas) ca.push(Buffer.from(cert.toString()))
  if (problems.length > 0) throw new GatewayError('E_CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`, { problems })
  return { cert, key, ca, minVersion: t.minVersion }
}

/**
 * The TLS material read again for a reload (SIGHUP), checked to be usable before any listener
 * takes it: files that are missing, not PEM, or a key that does not match fail with
 * E_CONFIG_INVALID and change nothing.
 */
export function reloadableTlsMaterial(config: GatewayConfig, dataDir: string, registeredCas: readonly X509Certificate[]): { tls: TlsMaterial; subject: string; validTo: string } {
  const tls = loadTlsMaterial(config, dataDir, registeredCas)
  if (!tls) throw new GatewayError('E_CONFIG_INVALID', 'no TLS listener is configured (mqtt.tls.enabled and http.wss.enabled are off)')
  try {
    createSecureContext({ cert: tls.cert, key: tls.key, ...(tls.ca && tls.ca.length > 0 ? { ca: tls.ca } : {}) })
    const { subject, validTo } = new X509Certificate(tls.cert)
    return { tls, subject, validTo }
  } catch (err) {
    throw new GatewayError('E_CONFIG_INVALID', `cannot use the TLS certificate and key: ${(err as Error).message}`)
  }
}
