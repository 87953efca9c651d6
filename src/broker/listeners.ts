import { createServer, type Server, type AddressInfo, type Socket } from 'node:net'
import type { Server as HttpServer, IncomingMessage } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTlsServer, type TLSSocket, type SecureContextOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { GatewayError } from '../errors/catalogue.js'
import type { GatewayBroker } from './gateway-broker.js'
import { connectionKey, type ConnectionAdmission } from './admission.js'
import { answerUpgrade, attachUpgradeRouter, type UpgradeRoute } from './upgrade-router.js'

/** Paths that carry MQTT over WebSocket (mqtt.js default and IoT Hub's). */
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

/** What every listener shares: the broker, admission control, and where accept() failures go. */
export interface ListenerContext {
  broker: GatewayBroker
  admission: ConnectionAdmission
  /** A TLS handshake must be done within this (mqtt.connectTimeoutSeconds). */
  handshakeTimeoutMs: number
  /** An accept() failed (EMFILE, ...): counted and logged, never thrown at the process. */
  onAcceptError(err: NodeJS.ErrnoException, listener: string): void
}

function tlsServerOptions(tls: TlsMaterial): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.ca && tls.ca.length > 0 ? { ca: tls.ca } : {}),
    minVersion: tls.minVersion,
    // Ask every device for a certificate (X.509 devices authenticate with it, as in IoT Hub) but
    // let SAS devices without one through: the authenticator decides, per device, at CONNECT.
    requestCert: true,
    rejectUnauthorized: false,
  }
}

export async function listenTcp(ctx: ListenerContext, host: string, port: number): Promise<Listener> {
  const server: Server = createServer((socket) => {
    if (!ctx.admission.admit(socket, 'mqtt')) return
    // Device traffic is many small packets; Nagle would add up to 40 ms to every PUBACK.
    socket.setNoDelay(true)
    ctx.broker.handle(socket, 'tcp', socket.remoteAddress ?? 'unknown', undefined, undefined, connectionKey(socket))
  })
  return listen(server, host, port, ctx, 'mqtt')
}

/** MQTT over TLS (mqtts, port 8883 by default): what the Azure SDK's `Mqtt` transport dials. */
export async function listenTls(ctx: ListenerContext, host: string, port: number, tls: TlsMaterial): Promise<TlsListener> {
  const server = createTlsServer({ ...tlsServerOptions(tls), handshakeTimeout: ctx.handshakeTimeoutMs }, (socket: TLSSocket) => {
    socket.setNoDelay(true)
    ctx.broker.handle(socket, 'tls', socket.remoteAddress ?? 'unknown', undefined, socket, connectionKey(socket))
  })
  // Counted from the raw socket, before the handshake: a handshake costs a descriptor too.
  server.on('connection', (raw: Socket) => void ctx.admission.admit(raw, 'mqtt'))
  // A failed handshake (plain TCP, wrong CA on the device) must not reach the process.
  server.on('tlsClientError', () => undefined)
  return { ...(await listen(server, host, port, ctx, 'mqtts')), reloadTls: (next) => server.setSecureContext(tlsServerOptions(next)) }
}

/**
 * MQTT over secure WebSocket on its own HTTPS port: the SDK's `MqttWs` transport always dials
 * wss://host:443/$iothub/websocket. Plain HTTP requests get 404, other upgrades 404 or 400.
 */
export async function listenWss(ctx: ListenerContext, host: string, port: number, tls: TlsMaterial, maxMessageBytes: number, headersTimeoutMs: number): Promise<TlsListener> {
  const server = createHttpsServer({ ...tlsServerOptions(tls), handshakeTimeout: ctx.handshakeTimeoutMs, headersTimeout: headersTimeoutMs, requestTimeout: headersTimeoutMs }, (_req, res) => {
    res.writeHead(404, { 'content-length': '0' }).end()
  })
  server.on('connection', (raw: Socket) => void ctx.admission.admit(raw, 'mqtt'))
  server.on('tlsClientError', () => undefined)
  const ws = mqttOverWebSocket(ctx, maxMessageBytes, 'wss')
  const router = attachUpgradeRouter(server, [ws.route])
  const listener = await listen(server, host, port, ctx, 'wss')
  return {
    address: listener.address,
    close: async () => {
      router.close()
      await ws.close()
      await listener.close()
    },
    reloadTls: (next) => server.setSecureContext(tlsServerOptions(next)),
  }
}

async function listen(server: Server, host: string, port: number, ctx: ListenerContext, name: string): Promise<Listener> {
  await listenOn(server, host, port)
  reportAcceptErrors(server, ctx, name)
  return {
    address: () => server.address() as AddressInfo,
    close: () => closeServer(server),
  }
}

/** Bind, or fail with E_LISTEN_FAILED naming the address (in use, a privileged port, ...). */
export async function listenOn(server: Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => {
      const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
      const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : err.message
      reject(new GatewayError('E_LISTEN_FAILED', `cannot listen on ${where}: ${why}`, { address: where, errno: err.code }, { cause: err }))
    }
    server.once('error', failed)
    // A connect storm (a fleet reconnecting after an outage) overflows Node's default backlog of
    // 511 and costs devices SYN retransmits of 1, 3, 7 s; the kernel caps this at somaxconn.
    server.listen({ host, port, backlog: 8192 }, () => {
      server.off('error', failed)
      resolve()
    })
  })
}

/**
 * MQTT over WebSocket as an upgrade route, at WEBSOCKET_PATHS, with the `mqtt` sub-protocol the
 * Azure SDK's MqttWs transport asks for. On the API port (`moveFromHttp`) the socket moves from
 * the HTTP count to the MQTT count of admission control first, or is refused with 503.
 */
export function mqttOverWebSocket(ctx: ListenerContext, maxMessageBytes: number, transport: 'ws' | 'wss', moveFromHttp = false): { route: UpgradeRoute; close(): Promise<void> } {
  const wss = new WebSocketServer({
    noServer: true,
    // mqtt.js asks for 'mqtt' (MQTT 3.1.1) or 'mqttv3.1'; answer with the first one we know.
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    // A WebSocket message is buffered whole; bound it like an MQTT packet (see packet-guard.ts).
    maxPayload: maxMessageBytes,
  })
  const route: UpgradeRoute = {
    name: 'mqtt',
    matches: (path) => WEBSOCKET_PATHS.includes(path),
    handle: (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (moveFromHttp && !ctx.admission.upgradeToMqtt(req.socket)) {
        answerUpgrade(socket, 503, 'E_CONNECTION_LIMIT', 'the gateway holds its maximum of connections; retry later')
        return
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws)
        stream.on('error', () => stream.destroy())
        const tlsSocket = transport === 'wss' ? (req.socket as TLSSocket) : undefined
        ctx.broker.handle(stream, transport, req.socket.remoteAddress ?? 'unknown', req, tlsSocket, connectionKey(req.socket))
      })
    },
  }
  return {
    route,
    close: async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

/** The API's HTTP server under admission control: counted at accept, eviction candidates until their first request. */
export function admitHttpConnections(server: HttpServer, ctx: ListenerContext, headersTimeoutMs: number): void {
  server.headersTimeout = headersTimeoutMs
  // Node enforces headersTimeout only when it checks its connections (every 30 s by default, set
  // up when the server starts listening): check often enough for the timeout to mean something.
  ;(server as HttpServer & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(250, Math.min(1000, headersTimeoutMs / 2))
  server.on('connection', (socket: Socket) => void ctx.admission.admit(socket, 'http'))
  server.on('request', (req: IncomingMessage) => ctx.admission.requestSeen(req.socket))
  server.on('upgrade', (req: IncomingMessage) => ctx.admission.requestSeen(req.socket))
}

/**
 * Once a server listens, an 'error' is a failed accept(): out of descriptors, say. Unhandled it
 * would end the process; handled, the kernel backlog waits and admission control catches up.
 */
export function reportAcceptErrors(server: Server, ctx: ListenerContext, name: string): void {
  server.on('error', (err: NodeJS.ErrnoException) => ctx.onAcceptError(err, name))
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
  })
}
