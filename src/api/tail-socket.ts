import type { IncomingMessage, Server as HttpServer } from 'node:http'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { once } from 'node:events'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Logger } from 'pino'
import { GatewayError } from '../errors/catalogue.js'
import type { EventStream } from '../stream/types.js'
import { recordToJson } from '../stream/format.js'
import { resolveTopic, selectPartitions, tailRecords } from '../stream/tail.js'
import { adminTokenCheck } from './auth.js'
import { errorBody } from './errors.js'

/**
 * Live tail over WebSocket: `GET /api/streams/:topic/tail` upgraded to a WebSocket sends every
 * record of the topic as one JSON text message (the shape `streamgate tail` prints), from the last
 * `lines` records of each partition (default 10) or `from=beginning`, then as records arrive.
 * Query: `from=beginning`, `lines=N`, `partition=P` (repeatable). Same admin bearer token as the
 * rest of /api, in the Authorization header. Refusals are plain HTTP answers with the API's JSON
 * error body, before any upgrade: 401, 404 (E_STREAM_TOPIC_UNKNOWN), 400 (E_BAD_REQUEST).
 *
 * A slow reader is not buffered without bound: reading pauses while more than `maxBufferedBytes`
 * wait in the socket. The tail reads the stream the gateway writes, through the EventStream port.
 */
export const TAIL_PATH = /^\/api\/streams\/([^/]+)\/tail$/

export interface TailSocketOptions {
  httpServer: HttpServer
  stream: EventStream
  adminToken: string
  topicPrefix: string
  pollMs: number
  logger: Logger
  maxBufferedBytes?: number
}

export function attachTailSocket(o: TailSocketOptions): { close(): Promise<void> } {
  const authorized = adminTokenCheck(o.adminToken)
  const maxBuffered = o.maxBufferedBytes ?? 1024 * 1024
  const log = o.logger.child({ component: 'api-tail' })
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 })
  const running = new Set<AbortController>()

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const match = TAIL_PATH.exec(url.pathname)
    if (!match) return // not ours: the MQTT-over-WebSocket paths are served by broker/listeners.ts
    void (async () => {
      if (!authorized(req.headers.authorization)) throw new GatewayError('E_UNAUTHORIZED', 'missing or wrong admin token (Authorization: Bearer <token>)')
      const request = parseQuery(url.searchParams)
      const topic = await resolveTopic(o.stream, o.topicPrefix, decodeURIComponent(match[1]!))
      const partitions = await selectPartitions(o.stream, topic, request.partitions)
      wss.handleUpgrade(req, socket, head, (ws) => void serve(ws, topic, partitions, request.lastN))
    })().catch((err: unknown) => refuse(socket, err))
  }

  const serve = async (ws: WebSocket, topic: string, partitions: number[], lastN: number | null): Promise<void> => {
    const stop = new AbortController()
    running.add(stop)
    ws.on('close', () => stop.abort())
    ws.on('error', () => stop.abort())
    log.debug({ topic, partitions }, 'live tail opened')
    try {
      for await (const records of tailRecords(o.stream, topic, partitions, { lastN, follow: true, signal: stop.signal, pollMs: o.pollMs })) {
        for (const r of records) ws.send(JSON.stringify(recordToJson(r)))
        while (ws.bufferedAmount > maxBuffered && !stop.signal.aborted) await once(ws, 'drain', { signal: stop.signal }).catch(() => undefined)
      }
    } catch (err) {
      // The stream failed under the reader (stopped, or a Kafka outage): say why and close.
      const e = err instanceof GatewayError ? err : new GatewayError('E_INTERNAL', 'the live tail failed')
      if (!(err instanceof GatewayError)) log.error({ err, topic }, 'live tail failed')
      ws.close(1011, `${e.code}: ${e.message}`.slice(0, 120))
    } finally {
      running.delete(stop)
      if (ws.readyState === ws.OPEN) ws.close(1001, 'gateway stopping')
    }
  }

  const refuse = (socket: Duplex, err: unknown): void => {
    const e = err instanceof GatewayError ? err : new GatewayError('E_INTERNAL', 'the live tail could not start')
    if (!(err instanceof GatewayError)) log.error({ err }, 'live tail could not start')
    const status = e.httpStatus
    const body = JSON.stringify(errorBody(e.code, e.message))
    const extra = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : ''
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }

  o.httpServer.on('upgrade', onUpgrade)
  return {
    close: async () => {
      o.httpServer.off('upgrade', onUpgrade)
      for (const stop of running) stop.abort()
      for (const ws of wss.clients) ws.close(1001, 'gateway stopping')
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

function parseQuery(q: URLSearchParams): { lastN: number | null; partitions: string[] } {
  const from = q.get('from')
  const lines = q.get('lines')
  if (from !== null && from !== 'beginning' && from !== 'end') throw new GatewayError('E_BAD_REQUEST', 'from must be "beginning" or "end"')
  if (from !== null && lines !== null) throw new GatewayError('E_BAD_REQUEST', 'lines cannot be combined with from')
  if (from === 'beginning') return { lastN: null, partitions: q.getAll('partition') }
  const lastN = from === 'end' ? 0 : lines === null ? 10 : /^\d+$/.test(lines) ? Number(lines) : NaN
  if (!Number.isSafeInteger(lastN)) throw new GatewayError('E_BAD_REQUEST', 'lines must be a whole number')
  return { lastN, partitions: q.getAll('partition') }
}
