import type { X509Certificate } from 'node:crypto'
import { GatewayError } from '../errors/catalogue.js'
import type { Device } from '../registry/types.js'

/**
 * X.509 device authentication as IoT Hub does it (protocol note §1, "X.509 mode"): the TLS
 * listener asks for a client certificate without judging it (rejectUnauthorized false, so SAS
 * devices connect too); here, per device:
 * - `x509-thumbprint`: the certificate's SHA-256 thumbprint equals the registered one (self-signed
 *   certificates are fine: the thumbprint is the trust);
 * - `x509-ca`: the certificate is issued and signed directly by a CA registered with
 *   `streamgate ca add` (no intermediates yet) and its subject CN equals the device id.
 * Both check the validity period. The TLS handshake already proved the device holds the key.
 */
export function verifyDeviceCertificate(cert: X509Certificate, device: Device, trustedCas: readonly X509Certificate[], nowMs: number): void {
  if (nowMs < Date.parse(cert.validFrom)) throw new GatewayError('E_AUTH_CERT_NOT_YET_VALID', 'The device certificate is not valid yet', { validFrom: cert.validFrom })
  if (nowMs > Date.parse(cert.validTo)) throw new GatewayError('E_AUTH_CERT_EXPIRED', 'The device certificate has expired', { validTo: cert.validTo })
  if (device.authMethod === 'x509-thumbprint') {
    if (device.x509Thumbprint !== null && thumbprint(cert) === device.x509Thumbprint) return
    throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The device certificate does not match the registered thumbprint')
  }
  if (commonName(cert) !== device.deviceId) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The device certificate subject CN is not the device id')
  const issuer = trustedCas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))
  if (!issuer) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The device certificate is not issued by a registered CA')
  if (nowMs > Date.parse(issuer.validTo) || nowMs < Date.parse(issuer.validFrom)) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The issuing CA certificate is outside its validity period')
}

/** SHA-256 thumbprint as IoT Hub shows it: 64 upper-case hex digits, no colons. */
export function thumbprint(cert: X509Certificate): string {
  return cert.fingerprint256.replace(/:/g, '').toUpperCase()
}

/** The subject's CN (`X509Certificate.subject` is one `key=value` per line). */
function commonName(cert: X509Certificate): string | undefined {
  const line = cert.subject.split('\n').find((l) => l.startsWith('CN='))
  return line?.slice(3)
}
