import type { X509Certificate } from 'node:crypto'
import { GatewayError } from '../errors/catalogue.js'
import type { Device } from '../registry/types.js'

/**
 * X.509 device authentication as IoT Hub does it (IoT Hub MQTT support, "Using the MQTT protocol directly (as a device)", X.509 authentication): the TLS
 * listener asks for a client certificate without judging it (rejectUnauthorized false, so SAS
 * devices connect too); here, per device:
 * - `x509-thumbprint`: the certificate's SHA-256 thumbprint equals the registered one (self-signed
 *   certificates are fine: the thumbprint is the trust);
 * - `x509-ca`: its subject CN equals the device id and it chains to a CA registered with
 *   `streamgate ca add`: signed by that CA directly, or through intermediate CA certificates the
 *   device sends after its own in the TLS handshake (at most `maxIntermediates`, config
 *   auth.x509MaxIntermediates, each a CA within its validity period). Registering an intermediate itself trusts what it issued.
 * Both check the validity period. The TLS handshake already proved the device holds the key.
 */
export function verifyDeviceCertificate(cert: X509Certificate, device: Device, trustedCas: readonly X509Certificate[], nowMs: number, presented: readonly X509Certificate[] = [], maxIntermediates = 4): void {
  if (nowMs < Date.parse(cert.validFrom)) throw new GatewayError('E_AUTH_CERT_NOT_YET_VALID', 'The device certificate is not valid yet', { validFrom: cert.validFrom })
  if (nowMs > Date.parse(cert.validTo)) throw new GatewayError('E_AUTH_CERT_EXPIRED', 'The device certificate has expired', { validTo: cert.validTo })
  if (device.authMethod === 'x509-thumbprint') {
    if (device.x509Thumbprint !== null && thumbprint(cert) === device.x509Thumbprint) return
    throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The device certificate does not match the registered thumbprint')
  }
  if (commonName(cert) !== device.deviceId) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The device certificate subject CN is not the device id')
  let current = cert
  for (let intermediates = 0; ; intermediates++) {
    const root = trustedCas.find((ca) => issuedBy(current, ca))
    if (root) {
      if (!within(root, nowMs)) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'The registered CA certificate is outside its validity period')
      return
    }
    const next = intermediates < maxIntermediates ? presented.find((c) => c.ca && c !== current && issuedBy(current, c)) : undefined
    if (!next) {
      throw new GatewayError('E_AUTH_CERT_UNTRUSTED', intermediates === 0 ? 'The device certificate is not issued by a registered CA' : 'The device certificate chain does not end at a registered CA', { intermediates })
    }
    if (!within(next, nowMs)) throw new GatewayError('E_AUTH_CERT_UNTRUSTED', 'An intermediate CA certificate is outside its validity period', { intermediate: next.subject })
    current = next
  }
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey)
}

function within(cert: X509Certificate, nowMs: number): boolean {
  return nowMs >= Date.parse(cert.validFrom) && nowMs <= Date.parse(cert.validTo)
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
