import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type Server } from 'node:tls'

export interface TlsProxy {
  port: number
  /** PEM of the self-signed certificate (CN and SAN localhost), for the SDK's `ca` option. */
  ca: string
  close(): Promise<void>
}

/** A self-signed certificate for localhost, made with openssl. */
function selfSigned(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'streamgate-tls-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * TLS in front of the gateway's MQTT TCP port, for the Azure SDK, whose MQTT transport is always
 * TLS (protocol note §2). `target` is read per connection, so the gateway may start after the proxy.
 */
export async function startTlsProxy(target: () => number): Promise<TlsProxy> {
  const { key, cert } = selfSigned()
  const server: Server = createServer({ key, cert }, (socket) => {
    const upstream = connect(target(), '127.0.0.1')
    socket.pipe(upstream).pipe(socket)
    const end = (): void => {
      socket.destroy()
      upstream.destroy()
    }
    socket.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    ca: cert,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
