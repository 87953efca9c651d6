import { createServer, type Server, type AddressInfo } from 'node:net'
import type { Server as HttpServer, IncomingMessage } from 'node:http'
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

export async function listenTcp(broker: GatewayBroker, host: string, port: number): Promise<Listener> {
  const server: Server = createServer((socket) => {
    // Device traffic is many small packets; Nagle would add up to 40 ms to every PUBACK.
    socket.setNoDelay(true)
    broker.handle(socket, 'tcp', socket.remoteAddress ?? 'unknown')
  })
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
export function attachWebSocket(broker: GatewayBroker, httpServer: HttpServer, maxMessageBytes: number): { close(): Promise<void> } {
  const wss = new WebSocketServer({
    noServer: true,
    // mqtt.js asks for 'mqtt' (MQTT 3.1.1) or 'mqttv3.1'; answer with the first one we know.
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    // A WebSocket message is buffered whole; bound it like an MQTT packet (see packet-guard.ts).
    maxPayload: maxMessageBytes,
  })
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? '').split('?')[0] ?? ''
    if (!WEBSOCKET_PATHS.includes(decodeURIComponent(path))) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws)
      stream.on('error', () => stream.destroy())
      broker.handle(stream, 'ws', req.socket.remoteAddress ?? 'unknown', req)
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
