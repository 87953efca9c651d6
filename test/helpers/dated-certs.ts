import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Device (or intermediate CA) certificates with a chosen validity period (already expired, not
 * yet valid), which `openssl x509 -days` cannot make: `openssl ca` takes -startdate and -enddate.
 * Test-only.
 */
export interface DatedCertOptions {
  deviceId: string
  outDir: string
  notBefore: Date
  notAfter: Date
  /** Sign with this CA; without it the certificate is self-signed (an x509-thumbprint device). */
  ca?: { cert: string; key: string }
  /** Make an (intermediate) CA certificate instead of a device certificate. */
  isCa?: boolean
}

const asn1Time = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z')

export function datedDeviceCert(o: DatedCertOptions): { cert: string; key: string } {
  mkdirSync(o.outDir, { recursive: true })
  const work = mkdtempSync(join(tmpdir(), 'streamgate-dated-'))
  const name = `${o.deviceId}-${asn1Time(o.notBefore)}`
  const cert = join(o.outDir, `${name}.crt`)
  const key = join(o.outDir, `${name}.key`)
  try {
    writeFileSync(join(work, 'index.txt'), '')
    writeFileSync(join(work, 'serial'), '01\n')
    writeFileSync(join(work, 'ext.cnf'), o.isCa ? 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' : 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n')
    writeFileSync(join(work, 'ca.cnf'), [
      '[ca]', 'default_ca = d', '[d]', `database = ${join(work, 'index.txt')}`, `new_certs_dir = ${work}`, `serial = ${join(work, 'serial')}`,
      'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', '',
    ].join('\n'))
    const csr = join(work, 'req.csr')
    const openssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' })
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${o.deviceId}`, '-keyout', key, '-out', csr])
    const signer = o.ca ? ['-cert', o.ca.cert, '-keyfile', o.ca.key] : ['-selfsign', '-keyfile', key]
    openssl(['ca', '-batch', '-notext', '-config', join(work, 'ca.cnf'), ...signer, '-in', csr, '-out', cert,
      '-startdate', asn1Time(o.notBefore), '-enddate', asn1Time(o.notAfter), '-extfile', join(work, 'ext.cnf')])
    return { cert, key }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
