import { X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'

/**
 * The client certificate of a TLS connection and the certificates it sent after its own
 * (intermediate CAs), as Node links them (issuerCertificate), each once. One call for both:
 * after getPeerX509Certificate() Node's getPeerCertificate(true) no longer links the chain.
 */
export function presentedCertificates(socket: TLSSocket): { cert: X509Certificate; chain: X509Certificate[] } | undefined {
  const leaf: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
  if (!leaf?.raw) return undefined
  const chain: X509Certificate[] = []
  const seen = new Set<string>([leaf.fingerprint256])
  for (let c = leaf.issuerCertificate; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256)
    chain.push(new X509Certificate(c.raw))
  }
  return { cert: new X509Certificate(leaf.raw), chain }
}
