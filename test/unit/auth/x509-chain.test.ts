import { X509Certificate } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyDeviceCertificate } from '../../../src/auth/x509.js'
import { GatewayError } from '../../../src/errors/catalogue.js'
import type { Device } from '../../../src/registry/types.js'
import { datedDeviceCert } from '../../helpers/dated-certs.js'

/**
 * x509-ca devices whose certificate comes from an intermediate CA: real certificates made with
 * openssl (root -> intermediates -> device), checked by verifyDeviceCertificate.
 */
describe('X.509 CA chains with intermediates', () => {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-chain-'))
  const day = 86_400_000
  const now = Date.now()
  const load = (p: { cert: string }): X509Certificate => new X509Certificate(readFileSync(p.cert))
  const valid = { notBefore: new Date(now - day), notAfter: new Date(now + 30 * day) }
  let root: { cert: string; key: string }
  let otherRoot: { cert: string; key: string }
  let device: Device
  /**
   * When the chains are checked: after the roots exist. openssl dates a root from the moment it
   * runs, which on a loaded machine came seconds after `now` (the root was then not yet valid).
   */
  let verifyAt = now

  const rootCa = (name: string): { cert: string; key: string } => {
    const cert = join(dir, `${name}.crt`)
    const key = join(dir, `${name}.key`)
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', key, '-out', cert], { stdio: 'pipe' })
    return { cert, key }
  }
  /** A chain of `depth` intermediates under `top`, and a device certificate from the last one. */
  const chainUnder = (top: { cert: string; key: string }, depth: number, tag: string, intermediateDates = valid): { leaf: X509Certificate; intermediates: X509Certificate[] } => {
    let issuer = top
    const intermediates: X509Certificate[] = []
    for (let i = 1; i <= depth; i++) {
      issuer = datedDeviceCert({ deviceId: `${tag}-inter-${i}`, outDir: dir, ca: issuer, isCa: true, ...intermediateDates })
      intermediates.push(load(issuer))
    }
    const leaf = load(datedDeviceCert({ deviceId: 'chain-dev', outDir: join(dir, tag), ca: issuer, ...valid }))
    return { leaf, intermediates: intermediates.reverse() } // as sent: nearest issuer first
  }
  const MAX_INTERMEDIATES = 4
  const outcome = (leaf: X509Certificate, trusted: X509Certificate[], presented: X509Certificate[], max = MAX_INTERMEDIATES): string => {
    try {
      verifyDeviceCertificate(leaf, device, trusted, verifyAt, presented, max)
      return 'ok'
    } catch (err) {
      return (err as GatewayError).code
    }
  }

  beforeAll(() => {
    root = rootCa('root')
    otherRoot = rootCa('other-root')
    verifyAt = Date.now()
    const at = new Date(0).toISOString()
    device = {
      deviceId: 'chain-dev', status: 'enabled', authMethod: 'x509-ca', primaryKey: 'k', secondaryKey: 'k', passwordHash: null,
      x509Thumbprint: null, createdAt: at, updatedAt: at, lastActivityAt: null, connectionState: 'disconnected', connectionStateUpdatedAt: null, connectionSeq: 0,
    }
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('accepts a device certificate from an intermediate when the device sends the intermediate', () => {
    const { leaf, intermediates } = chainUnder(root, 1, 'one')
    expect(outcome(leaf, [load(root)], intermediates)).toBe('ok')
    // Without the intermediate the chain cannot be built; under another root it ends nowhere.
    expect(outcome(leaf, [load(root)], [])).toBe('E_AUTH_CERT_UNTRUSTED')
    expect(outcome(leaf, [load(otherRoot)], intermediates)).toBe('E_AUTH_CERT_UNTRUSTED')
    // Registering the intermediate itself trusts what it issued, with nothing sent.
    expect(outcome(leaf, [intermediates[0]!], [])).toBe('ok')
  })

  it('follows up to 4 intermediates (auth.x509MaxIntermediates) in any order, not more', () => {
    const deep = chainUnder(root, MAX_INTERMEDIATES, 'deep')
    expect(outcome(deep.leaf, [load(root)], [...deep.intermediates].reverse())).toBe('ok')
    const tooDeep = chainUnder(root, MAX_INTERMEDIATES + 1, 'too-deep')
    expect(outcome(tooDeep.leaf, [load(root)], tooDeep.intermediates)).toBe('E_AUTH_CERT_UNTRUSTED')
    // The bound is a setting (auth.x509MaxIntermediates): 0 accepts directly issued certificates only.
    expect(outcome(tooDeep.leaf, [load(root)], tooDeep.intermediates, MAX_INTERMEDIATES + 1)).toBe('ok')
    const one = chainUnder(root, 1, 'one-at-zero')
    expect(outcome(one.leaf, [load(root)], one.intermediates, 0)).toBe('E_AUTH_CERT_UNTRUSTED')
  })

  it('refuses an expired or not-yet-valid intermediate, and a certificate that is not a CA in the middle', () => {
    const expired = chainUnder(root, 1, 'expired', { notBefore: new Date(now - 30 * day), notAfter: new Date(now - day) })
    expect(outcome(expired.leaf, [load(root)], expired.intermediates)).toBe('E_AUTH_CERT_UNTRUSTED')
    const future = chainUnder(root, 1, 'future', { notBefore: new Date(now + day), notAfter: new Date(now + 30 * day) })
    expect(outcome(future.leaf, [load(root)], future.intermediates)).toBe('E_AUTH_CERT_UNTRUSTED')
    // A device certificate (CA:FALSE) used to sign another one does not make a chain.
    const notCa = datedDeviceCert({ deviceId: 'not-a-ca', outDir: dir, ca: root, ...valid })
    const leaf = load(datedDeviceCert({ deviceId: 'chain-dev', outDir: join(dir, 'under-leaf'), ca: notCa, ...valid }))
    expect(outcome(leaf, [load(root)], [load(notCa)])).toBe('E_AUTH_CERT_UNTRUSTED')
  })
})
