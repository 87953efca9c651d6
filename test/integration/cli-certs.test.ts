import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { certsCommand } from '../../src/cli/certs.js'

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
})
