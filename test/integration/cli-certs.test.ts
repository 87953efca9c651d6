import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { certsCommand } from '../../src/cli/certs.js'
import { caCommand } from '../../src/cli/ca.js'
import { devicesCommand } from '../../src/cli/devices.js'
import { TrustedCaStore } from '../../src/auth/ca-store.js'
import { SqliteDeviceRegistry } from '../../src/registry/sqlite-registry.js'

describe('streamgate certs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-certs-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('init makes a CA and a server certificate for localhost and 127.0.0.1, keys mode 0600', async () => {
    expect(await certsCommand(['init', '--data-dir', dir])).toBe(0)
    const certs = join(dir, 'certs')
    for (const key of ['ca.key', 'server.key']) expect(statSync(join(certs, key)).mode & 0o777).toBe(0o600)
    const ca = new X509Certificate(readFileSync(join(certs, 'ca.crt')))
    const server = new X509Certificate(readFileSync(join(certs, 'server.crt')))
    expect(ca.ca).toBe(true)
    expect(server.verify(ca.publicKey)).toBe(true)
    expect(server.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1')
  })

  it('init --hostname names the SANs and keeps the existing CA', async () => {
    const before = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8')
    expect(await certsCommand(['init', '--data-dir', dir, '--hostname', 'gw.example.com', '--hostname', '10.0.0.5'])).toBe(0)
    expect(readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8')).toBe(before)
    expect(new X509Certificate(readFileSync(join(dir, 'certs', 'server.crt'))).subjectAltName).toBe('DNS:gw.example.com, IP Address:10.0.0.5')
  })

  it('device ID issues a client certificate with CN = device id from the CA', async () => {
    expect(await certsCommand(['device', 'dev-7', '--data-dir', dir])).toBe(0)
    const cert = new X509Certificate(readFileSync(join(dir, 'certs', 'devices', 'dev-7.crt')))
    expect(cert.subject).toBe('CN=dev-7')
    expect(cert.checkIssued(new X509Certificate(readFileSync(join(dir, 'certs', 'ca.crt'))))).toBe(true)
    expect(statSync(join(dir, 'certs', 'devices', 'dev-7.key')).mode & 0o777).toBe(0o600)
  })

  it('ca add trusts a CA file; devices add --auth x509-thumbprint stores the thumbprint; x509-ca takes none', async () => {
    const quiet = { stdout: process.stdout.write, stderr: process.stderr.write }
    process.stdout.write = (() => true) as typeof process.stdout.write
    process.stderr.write = (() => true) as typeof process.stderr.write
    const codes: number[] = []
    try {
      codes.push(await caCommand(['add', join(dir, 'certs', 'ca.crt'), '--data-dir', dir]))
      codes.push(await caCommand(['add', join(dir, 'certs', 'server.crt'), '--data-dir', dir]))
      const thumb = new X509Certificate(readFileSync(join(dir, 'certs', 'devices', 'dev-7.crt'))).fingerprint256
      codes.push(await devicesCommand(['add', 'cam-1', '--auth', 'x509-thumbprint', '--thumbprint', thumb, '--data-dir', dir]))
      codes.push(await devicesCommand(['add', 'dev-7', '--auth', 'x509-ca', '--data-dir', dir]))
      codes.push(await devicesCommand(['add', 'cam-2', '--auth', 'x509-thumbprint', '--data-dir', dir]))
      codes.push(await devicesCommand(['add', 'cam-3', '--auth', 'x509-thumbprint', '--thumbprint', 'abc', '--data-dir', dir]))
    } finally {
      process.stdout.write = quiet.stdout
      process.stderr.write = quiet.stderr
    }
    // server.crt is no CA (1); a missing thumbprint is a usage error (2); a bad one is refused (1).
    expect(codes).toEqual([0, 1, 0, 0, 2, 1])
    expect(new TrustedCaStore(dir).list().map((c) => c.subject)).toEqual(['CN=streamgate development CA'])
    const registry = new SqliteDeviceRegistry({ file: join(dir, 'registry.db') })
    await registry.start()
    try {
      const cam = await registry.get('cam-1')
      expect(cam?.authMethod).toBe('x509-thumbprint')
      expect(cam?.x509Thumbprint).toMatch(/^[0-9A-F]{64}$/)
      expect((await registry.get('dev-7'))?.authMethod).toBe('x509-ca')
    } finally {
      await registry.stop()
    }
  })

  it('ca remove drops a trusted CA by its thumbprint; unknown or malformed thumbprints are refused', async () => {
    const caPem = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8')
    const thumb = new X509Certificate(caPem).fingerprint256 // with colons, as openssl prints it
    const out: string[] = []
    const quiet = { stdout: process.stdout.write, stderr: process.stderr.write }
    process.stdout.write = ((chunk: string) => out.push(chunk) > 0) as typeof process.stdout.write
    process.stderr.write = ((chunk: string) => out.push(chunk) > 0) as typeof process.stderr.write
    const codes: number[] = []
    try {
      codes.push(await caCommand(['add', join(dir, 'certs', 'ca.crt'), '--data-dir', dir]))
      codes.push(await caCommand(['remove', 'F'.repeat(64), '--data-dir', dir]))
      codes.push(await caCommand(['remove', 'not-a-thumbprint', '--data-dir', dir]))
      codes.push(await caCommand(['remove', '--data-dir', dir]))
      codes.push(await caCommand(['remove', thumb.toLowerCase(), '--data-dir', dir]))
    } finally {
      process.stdout.write = quiet.stdout
      process.stderr.write = quiet.stderr
    }
    expect(codes).toEqual([0, 1, 1, 2, 0])
    expect(out.join('')).toContain('E_NOT_FOUND')
    expect(out.join('')).toContain('E_BAD_REQUEST')
    expect(new TrustedCaStore(dir).list()).toEqual([])
  })
})
