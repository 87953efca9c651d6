import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { X509Certificate, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { DEV_CERT_FILES, certsDir } from './tls-material.js'
import { thumbprint } from '../auth/x509.js'

const run = promisify(execFile)

/**
 * A development CA and certificates issued by it, made with the openssl CLI (no ASN.1 here).
 * Keys are P-256 and written with mode 0600. Not for production: real deployments set
 * mqtt.tls.certFile/keyFile to certificates from their own PKI.
 */
export interface DevCertPaths {
  dir: string
  caCert: string
  caKey: string
  serverCert: string
  serverKey: string
}

export function devCertPaths(dataDir: string): DevCertPaths {
  const dir = certsDir(dataDir)
  return {
    dir,
    caCert: join(dir, DEV_CERT_FILES.caCert),
    caKey: join(dir, DEV_CERT_FILES.caKey),
    serverCert: join(dir, DEV_CERT_FILES.serverCert),
    serverKey: join(dir, DEV_CERT_FILES.serverKey),
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** Create the dev CA (kept when it exists, unless `force`) and a server certificate for `hostnames`. */
export async function initDevCerts(dataDir: string, hostnames: string[], options: { force?: boolean; days?: number } = {}): Promise<DevCertPaths & { createdCa: boolean }> {
  const p = devCertPaths(dataDir)
  mkdirSync(p.dir, { recursive: true, mode: 0o700 })
  const createdCa = options.force === true || !existsSync(p.caCert) || !existsSync(p.caKey)
  if (createdCa) {
    await run('openssl', ['req', '-x509', ...EC_KEY, '-days', '3650', '-subj', '/CN=streamgate development CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', p.caKey, '-out', p.caCert])
    chmodSync(p.caKey, 0o600)
  }
  const san = hostnames.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',')
  await issue(p, { subject: `/CN=${hostnames[0] ?? 'localhost'}`, extensions: [`subjectAltName=${san}`, 'extendedKeyUsage=serverAuth', 'keyUsage=critical,digitalSignature', 'basicConstraints=CA:FALSE'], cert: p.serverCert, key: p.serverKey, days: options.days ?? 825 })
  return { ...p, createdCa }
}

/**
 * A device certificate (subject CN = device id, clientAuth) issued by the dev CA, for `x509-ca`
 * devices; written to outDir as `<id>.crt` and `<id>.key` (0600).
 */
export async function issueDeviceCert(dataDir: string, deviceId: string, outDir: string, options: { days?: number } = {}): Promise<{ cert: string; key: string; thumbprint: string }> {
  const p = devCertPaths(dataDir)
  if (!existsSync(p.caCert) || !existsSync(p.caKey)) throw new Error(`no development CA in ${p.dir}: run \`streamgate certs init\` first`)
  mkdirSync(outDir, { recursive: true })
  const cert = join(outDir, `${deviceId}.crt`)
  const key = join(outDir, `${deviceId}.key`)
  await issue(p, { subject: `/CN=${deviceId}`, extensions: ['extendedKeyUsage=clientAuth', 'keyUsage=critical,digitalSignature', 'basicConstraints=CA:FALSE'], cert, key, days: options.days ?? 365 })
  return { cert, key, thumbprint: thumbprintOf(readFileSync(cert)) }
}

/** A self-signed device certificate (for `x509-thumbprint` devices), as `openssl req -x509` makes it. */
export async function selfSignedDeviceCert(deviceId: string, outDir: string, days = 365): Promise<{ cert: string; key: string; thumbprint: string }> {
  mkdirSync(outDir, { recursive: true })
  const cert = join(outDir, `${deviceId}.crt`)
  const key = join(outDir, `${deviceId}.key`)
  await run('openssl', ['req', '-x509', ...EC_KEY, '-days', String(days), '-subj', `/CN=${deviceId}`, '-addext', 'extendedKeyUsage=clientAuth', '-keyout', key, '-out', cert])
  chmodSync(key, 0o600)
  return { cert, key, thumbprint: thumbprintOf(readFileSync(cert)) }
}

function thumbprintOf(pem: Buffer): string {
  return thumbprint(new X509Certificate(pem))
}

async function issue(p: DevCertPaths, o: { subject: string; extensions: string[]; cert: string; key: string; days: number }): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'streamgate-certs-'))
  try {
    const csr = join(tmp, 'req.csr')
    const ext = join(tmp, 'ext.cnf')
    writeFileSync(ext, o.extensions.join('\n') + '\n')
    await run('openssl', ['req', '-new', ...EC_KEY, '-subj', o.subject, '-keyout', o.key, '-out', csr])
    chmodSync(o.key, 0o600)
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', p.caCert, '-CAkey', p.caKey, '-set_serial', `0x${randomBytes(16).toString('hex').replace(/^[89a-f]/, '1')}`, '-days', String(o.days), '-sha256', '-extfile', ext, '-out', o.cert])
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
}
