import { createServer, type Server, type AddressInfo } from 'node:net'
import type { Server as HttpServer, IncomingMessage } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTlsServer, type TLSSocket, type SecureContextOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { GatewayBroker } from './gateway-broker.js'

/** Paths on the HTTP port that carry MQTT over WebSocket (mqtt.js default and IoT Hub's). */
export const WEBSOCKET_PATHS = ['/mqtt', '/$iothub/websocket']

export interface Listener {
  /** The bound address (port resolved when 0 was asked for). */
  address(): AddressInfo
  close(): Promise<void>
}

/** A TLS listener can take a new certificate, key and CA list without a restart. */
export interface TlsListener extends Listener {
  /** New handshakes use `tls`; open connections keep the session they have. */
  reloadTls(tls: TlsMaterial): void
}

/** Server certificate, key and TLS floor shared by the MQTT/TLS and the secure WebSocket listener. */
export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  /** CAs advertised to devices as acceptable issuers of client certificates (may be empty). */
  ca?: Buffer[]
  minVersion: 'TLSv1.2' | 'TLSv1.3'
}

function tlsServerOptions(tls: TlsMaterial): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.ca && tls.ca.length > 0 ? { ca: tls.ca } : {}),
    minVersion: tls.minVersion,
    // Ask every device for a certificate (X.509 devices authenticate with it, protocol note §1)
    // but let SAS devices without one through: the authenticator decides, per device, at CONNECT.
    requestCert: true,
    rejectUnauthorized: false,
  }
}

export async function listenTcp(broker: GatewayBroker, host: string, port: number): Promise<Listener> {
  const server: Server = createServer((socket) => {
    // Device traffic is many small packets; Nagle would add up to 40 ms to every PUBACK.
    socket.setNoDelay(true)
    broker.handle(socket, 'tcp', socket.remoteAddress ?? 'unknown')
  })
  return listen(server, host, port)
}

/** MQTT over TLS (mqtts, port 8883 by default): what the Azure SDK's `Mqtt` transport dials. */
export async function listenTls(broker: GatewayBroker, host: string, port: number, tls: TlsMaterial): Promise<TlsListener> {
  const server = createTlsServer(tlsServerOptions(tls), (socket: TLSSocket) => {
    socket.setNoDelay(true)
    broker.handle(socket, 'tls', socket.remoteAddress ?? 'unknown', undefined, socket)
  })
  // A failed handshake (plain TCP, wrong CA on the device) must not reach the process.
  server.on('tlsClientError', () => undefined)
  return { ...(await listen(server, host, port)), reloadTls: (next) => server.setSecureContext(tlsServerOptions(next)) }
}

/**
 * MQTT over secure WebSocket on its own HTTPS port: the SDK's `MqttWs` transport always dials
 * wss://host:443/$iothub/websocket (protocol note §2). Plain HTTP requests get 404.
 */
export async function listenWss(broker: GatewayBroker, host: string, port: number, tls: TlsMaterial, maxMessageBytes: number): Promise<TlsListener> {
  const server = createHttpsServer(tlsServerOptions(tls), (_req, res) => {
    res.writeHead(404, { 'content-length': '0' }).end()
  })
  server.on('tlsClientError', () => undefined)
  const ws = attachWebSocket(broker, server, maxMessageBytes, 'wss')
  const listener = await listen(server, host, port)
  return {
    address: listener.address,
    close: async () => {
      await ws.close()
      await listener.close()
    },
    reloadTls: (next) => server.setSecureContext(tlsServerOptions(next)),
  }
}

async function listen(server: Server, host: string, port: number): Promise<Listener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // A connect storm (a fleet reconnecting after an outage) overflows Node's default backlog of
    // 511 and costs devices SYN retransmits of 1, 3, 7 s; the kernel caps this at somaxconn.
    server.listen({ host, port, backlog: 8192 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    address: () => server.address() as AddressInfo,
    close: () => closeServer(server),
  }
}

/**
 * Serve MQTT over WebSocket on an existing HTTP server (the API's), at WEBSOCKET_PATHS, with the
 * `mqtt` sub-protocol the Azure SDK's MqttWs transport asks for. Other upgrade requests are refused.
 */
export function attachWebSocket(broker: GatewayBroker, httpServer: HttpServer, maxMessageBytes: number, transport: 'ws' | 'wss' = 'ws'): { close(): Promise<void> } {
  const wss = new WebSocketServer({
    noServer: true,
    // mqtt.js asks for 'mqtt' (MQTT 3.1.1) or 'mqttv3.1'; answer with the first one we know.
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    // A WebSocket message is buffered whole; bound it like an MQTT packet (see packet-guard.ts).
    maxPayload: maxMessageBytes,
  })
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? '').split('?')[0] ?? ''
    // The API's own WebSocket routes (the live tail, api/tail-socket.ts) answer for themselves.
    if (path.startsWith('/api/')) return
    if (!WEBSOCKET_PATHS.includes(decodeURIComponent(path))) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws)
      stream.on('error', () => stream.destroy())
      broker.handle(stream, transport, req.socket.remoteAddress ?? 'unknown', req, transport === 'wss' ? (req.socket as TLSSocket) : undefined)
    })
  }
  httpServer.on('upgrade', onUpgrade)
  return {
    close: async () => {
      httpServer.off('upgrade', onUpgrade)
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
  })
}
