import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authenticator } from '../../../src/auth/authenticator.js'
import { PasswordGuard } from '../../../src/auth/password-guard.js'
import { selfSignedDeviceCert } from '../../../src/app/dev-certs.js'
import { GatewayError } from '../../../src/errors/catalogue.js'
import type { Device } from '../../../src/registry/types.js'

/** The X.509 steps of the CONNECT flow with a real certificate and a moved clock. */
describe('X.509 device authentication', () => {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-x509-'))
  let cert: X509Certificate
  let device: Device
  beforeAll(async () => {
    const made = await selfSignedDeviceCert('cam-1', dir, 30)
    cert = new X509Certificate(readFileSync(made.cert))
    const at = new Date(0).toISOString()
    device = {
      deviceId: 'cam-1', status: 'enabled', authMethod: 'x509-thumbprint', primaryKey: 'k', secondaryKey: 'k', passwordHash: null,
      x509Thumbprint: made.thumbprint, createdAt: at, updatedAt: at, lastActivityAt: null, connectionState: 'disconnected', connectionStateUpdatedAt: null, connectionSeq: 0,
    }
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  let checks = 0
  const authAt = async (nowMs: number, d: Device = device, password?: string): Promise<{ code: string; connack: number } | 'ok'> => {
    const passwords = new PasswordGuard({
      maxFailuresPerPair: 100, maxFailuresPerAddress: 100, windowMs: 60_000, maxConcurrentHashes: 1, maxQueuedHashes: 8, maxQueuedHashesPerAddress: 8,
      observer: { refused: () => undefined, started: () => void (checks += 1) },
    })
    const auth = new Authenticator({ registry: { get: async () => d }, hostname: 'localhost', clockSkewSeconds: 30, passwords, now: () => nowMs })
    try {
      const secret = password === undefined ? {} : { password: Buffer.from(password) }
      await auth.authenticate({ clientId: 'cam-1', username: 'localhost/cam-1/?api-version=2021-04-12', remoteAddress: '127.0.0.1', peerCertificate: cert, ...secret })
      return 'ok'
    } catch (err) {
      const e = err as GatewayError
      return { code: e.code, connack: e.returnCode }
    }
  }

  it('accepts the registered thumbprint inside the validity period', async () => {
    expect(await authAt(Date.now())).toBe('ok')
  })
  it('refuses an expired certificate with CONNACK 5', async () => {
    expect(await authAt(Date.parse(cert.validTo) + 1000)).toEqual({ code: 'E_AUTH_CERT_EXPIRED', connack: 5 })
  })
  it('refuses a certificate that is not valid yet with CONNACK 5', async () => {
    expect(await authAt(Date.parse(cert.validFrom) - 60_000)).toEqual({ code: 'E_AUTH_CERT_NOT_YET_VALID', connack: 5 })
  })
  it('refuses an unknown certificate (other thumbprint) and an x509-ca device without a registered CA', async () => {
    expect(await authAt(Date.now(), { ...device, x509Thumbprint: 'A'.repeat(64) })).toEqual({ code: 'E_AUTH_CERT_UNTRUSTED', connack: 5 })
    expect(await authAt(Date.now(), { ...device, authMethod: 'x509-ca', x509Thumbprint: null })).toEqual({ code: 'E_AUTH_CERT_UNTRUSTED', connack: 5 })
  })
  it('accepts the certificate with a password beside it, after the dummy check an unknown device would cost', async () => {
    checks = 0
    expect(await authAt(Date.now(), device, 'ignored')).toBe('ok')
    expect(checks).toBe(1)
    expect(await authAt(Date.now())).toBe('ok')
    expect(checks).toBe(1)
  })
})
