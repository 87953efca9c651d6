import { X509Certificate } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { GatewayError } from '../errors/catalogue.js'
import { thumbprint } from './x509.js'

/**
 * CAs trusted for `x509-ca` devices, one PEM per CA in `<dataDir>/cas/<thumbprint>.pem`, added by
 * `streamgate ca add FILE`. Files rather than registry rows: a CA is a public certificate an
 * operator may also want to manage with ordinary tools, and a running gateway picks up a new one
 * at the next CONNECT (the directory's mtime is checked; it is re-read only when it changed).
 */
export function casDir(dataDir: string): string {
  return join(dataDir, 'cas')
}

/** Register a CA certificate (PEM); returns its thumbprint and subject. Not a CA -> E_BAD_REQUEST. */
export function addTrustedCa(dataDir: string, pem: string): { thumbprint: string; subject: string; validTo: string } {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pem)
  } catch (err) {
    throw new GatewayError('E_BAD_REQUEST', `not a PEM certificate: ${(err as Error).message}`)
  }
  if (!cert.ca) throw new GatewayError('E_BAD_REQUEST', 'the certificate is not a CA (basicConstraints CA:TRUE is missing)')
  const dir = casDir(dataDir)
  mkdirSync(dir, { recursive: true })
  const id = thumbprint(cert)
  writeFileSync(join(dir, `${id}.pem`), cert.toString())
  return { thumbprint: id, subject: cert.subject, validTo: cert.validTo }
}

/**
 * Stop trusting a CA, named by its SHA-256 thumbprint (colons and case do not matter). Devices it
 * issued are refused from their next CONNECT on; a connection already open is not closed.
 * Unknown thumbprint -> E_NOT_FOUND.
 */
export function removeTrustedCa(dataDir: string, thumbprintText: string): void {
  const id = thumbprintText.replace(/:/g, '').toUpperCase()
  if (!/^[0-9A-F]{64}$/.test(id)) throw new GatewayError('E_BAD_REQUEST', 'a CA is named by its SHA-256 thumbprint: 64 hex digits (as `streamgate ca list` prints it)')
  const file = join(casDir(dataDir), `${id}.pem`)
  try {
    statSync(file)
  } catch {
    throw new GatewayError('E_NOT_FOUND', `no trusted CA with thumbprint ${id}`)
  }
  rmSync(file)
}

export class TrustedCaStore {
  private cached: readonly X509Certificate[] = []
  private mtimeMs = -1

  constructor(private readonly dataDir: string) {}

  list(): readonly X509Certificate[] {
    const dir = casDir(this.dataDir)
    let mtimeMs: number
    try {
      mtimeMs = statSync(dir).mtimeMs
    } catch {
      return (this.cached = [])
    }
    if (mtimeMs === this.mtimeMs) return this.cached
    this.mtimeMs = mtimeMs
    this.cached = readdirSync(dir)
      .filter((f) => f.endsWith('.pem'))
      .flatMap((f) => {
        try {
          return [new X509Certificate(readFileSync(join(dir, f)))]
        } catch {
          return []
        }
      })
    return this.cached
  }
}
