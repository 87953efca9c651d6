import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { GatewayError, type ErrorCode } from '../errors/catalogue.js'

/**
 * The one owner of a server's WebSocket upgrades. Node hands every request with an Upgrade header
 * to the server's 'upgrade' listeners, never to Fastify, so whatever none of them answers keeps
 * its socket open forever, and whatever one of them throws ends the process (an undecodable path
 * such as `/%E0%A4%A` did). Here the path is decoded once, safely (400 when it is not valid
 * percent-encoding), given to the first route that claims it, and answered 404 when none does;
 * a route that throws is answered 500. Every refusal is an HTTP answer with the API's error body
 * `{ "error": { "code", "message" } }`, then the socket is closed.
 */

export interface UpgradeRoute {
  readonly name: string
  /** `path`: the request's pathname, percent-decoded. */
  matches(path: string): boolean
  /** Take the upgrade: answer it (handshake or refusal) and own the socket from here. */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void
}

export interface UpgradeRouter {
  close(): void
}

/** Longest piece of a refused path echoed in the error message. */
const MAX_ECHOED_PATH = 80

export function attachUpgradeRouter(server: HttpServer, routes: readonly UpgradeRoute[], onRefused?: (status: number) => void): UpgradeRouter {
  const refuse = (socket: Duplex, status: number, code: ErrorCode, message: string): void => {
    onRefused?.(status)
    answerUpgrade(socket, status, code, message)
  }
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // A peer may reset before it is answered; the socket's own error must not reach the process.
    socket.on('error', () => socket.destroy())
    const path = decodedPath(req.url)
    if (path === null) return refuse(socket, 400, 'E_BAD_REQUEST', 'the request path is not valid percent-encoding')
    const route = routes.find((r) => r.matches(path))
    if (!route) return refuse(socket, 404, 'E_NOT_FOUND', `no WebSocket endpoint at ${JSON.stringify(path.slice(0, MAX_ECHOED_PATH))}`)
    try {
      route.handle(req, socket, head, path)
    } catch (err) {
      const e = err instanceof GatewayError ? err : new GatewayError('E_INTERNAL', 'the WebSocket upgrade failed')
      refuse(socket, e.httpStatus, e.code, e.httpStatus >= 500 ? 'the WebSocket upgrade failed' : e.message)
    }
  }
  server.on('upgrade', onUpgrade)
  return { close: () => void server.off('upgrade', onUpgrade) }
}

/** The pathname of a request target, percent-decoded; null when it cannot be decoded. */
export function decodedPath(url: string | undefined): string | null {
  try {
    return decodeURIComponent(new URL(url ?? '/', 'http://gateway').pathname)
  } catch {
    return null
  }
}

/** Answer an upgrade request with an HTTP error in the API's envelope, and close the socket. */
export function answerUpgrade(socket: Duplex, status: number, code: ErrorCode, message: string, extraHeaders = ''): void {
  if (socket.destroyed) return
  const body = JSON.stringify({ error: { code, message } })
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n${extraHeaders}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
  // A peer that keeps its side open does not keep the socket: it has had its answer.
  setTimeout(() => socket.destroy(), 2000).unref()
}
