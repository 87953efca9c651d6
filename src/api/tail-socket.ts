import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { once } from 'node:events'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Logger } from 'pino'
import { GatewayError } from '../errors/catalogue.js'
import type { EventStream } from '../stream/types.js'
import { recordToJson } from '../stream/format.js'
import { partitionForKey } from '../stream/partitioner.js'
import { resolveTopic, selectPartitions, tailRecords } from '../stream/tail.js'
import { answerUpgrade, type UpgradeRoute } from '../broker/upgrade-router.js'
import { adminTokenCheck } from './auth.js'

/**
 * Live tail over WebSocket: `GET /api/streams/:topic/tail` upgraded to a WebSocket sends every
 * record of the topic as one JSON text message (the shape `streamgate tail` prints), from the last
 * `lines` records of each partition (default 10) or `from=beginning`, then as records arrive.
 * Query: `from=beginning|end`, `lines=N`, `partition=P` (repeatable), `key=K` (only records with
 * that key, read from the one partition it hashes to; `lines` then counts that partition's last
 * records before the filter). Same admin bearer token as the rest of /api, in the Authorization
 * header, or for a browser (which cannot set headers on a WebSocket) as the protocol
 * `bearer.<base64url of the token>` offered beside `streamgate.tail`. Refusals are plain HTTP answers with the API's JSON
 * error body, before any upgrade: 401, 404 (E_STREAM_TOPIC_UNKNOWN), 400 (E_BAD_REQUEST).
 *
 * A slow reader is not buffered without bound: reading pauses while more than `maxBufferedBytes`
 * wait in the socket. The tail reads the stream the gateway writes, through the EventStream port.
 */
export const TAIL_PATH = /^\/api\/streams\/([^/]+)\/tail$/

export interface TailSocketOptions {
  stream: EventStream
  adminToken: string
  topicPrefix: string
  pollMs: number
  logger: Logger
  maxBufferedBytes?: number
}

/** The live tail as a route of the HTTP port's upgrade router (broker/upgrade-router.ts). */
export function tailRoute(o: TailSocketOptions): { route: UpgradeRoute; close(): Promise<void> } {
  const authorized = adminTokenCheck(o.adminToken)
  const maxBuffered = o.maxBufferedBytes ?? 1024 * 1024
  const log = o.logger.child({ component: 'api-tail' })
  // A browser cannot set the Authorization header on a WebSocket: it offers the token as a
  // protocol instead, and the answer names the other protocol it offered, never the token.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096, handleProtocols: (offered) => (offered.has(TAIL_PROTOCOL) ? TAIL_PROTOCOL : false) })
  const running = new Set<AbortController>()

  /** `path` is decoded by the router; the topic is its one segment. */
  const handle = (req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void => {
    const name = TAIL_PATH.exec(path)![1]!
    void (async () => {
      if (!authorized(req.headers.authorization ?? protocolToken(req.headers['sec-websocket-protocol']))) {
        throw new GatewayError('E_UNAUTHORIZED', 'missing or wrong admin token (Authorization: Bearer <token>, or the WebSocket protocol bearer.<base64url token>)')
      }
      const request = parseQuery(new URL(req.url ?? '/', 'http://gateway').searchParams)
      const topic = await resolveTopic(o.stream, o.topicPrefix, name)
      // One key's records all sit on the partition its key hashes to (stream/partitioner.ts).
      const partitions = request.key === null ? await selectPartitions(o.stream, topic, request.partitions) : [partitionForKey(request.key, await o.stream.partitionCount(topic))]
      wss.handleUpgrade(req, socket, head, (ws) => void serve(ws, topic, partitions, request.lastN, request.key))
    })().catch((err: unknown) => refuse(socket, err))
  }

  const serve = async (ws: WebSocket, topic: string, partitions: number[], lastN: number | null, key: string | null): Promise<void> => {
    const stop = new AbortController()
    running.add(stop)
    ws.on('close', () => stop.abort())
    ws.on('error', () => stop.abort())
    log.debug({ topic, partitions }, 'live tail opened')
    try {
      for await (const records of tailRecords(o.stream, topic, partitions, { lastN, follow: true, signal: stop.signal, pollMs: o.pollMs })) {
        for (const r of records) if (key === null || r.key === key) ws.send(JSON.stringify(recordToJson(r)))
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
    const message = e.httpStatus >= 500 ? 'the live tail could not start' : e.message
    answerUpgrade(socket, e.httpStatus, e.code, message, e.httpStatus === 401 ? 'WWW-Authenticate: Bearer\r\n' : '')
  }

  return {
    route: { name: 'tail', matches: (path) => TAIL_PATH.test(path), handle },
    close: async () => {
      for (const stop of running) stop.abort()
      for (const ws of wss.clients) ws.close(1001, 'gateway stopping')
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

export const TAIL_PROTOCOL = 'streamgate.tail'
const TOKEN_PROTOCOL_PREFIX = 'bearer.'
const MAX_KEY_LENGTH = 1024

/** `Sec-WebSocket-Protocol: streamgate.tail, bearer.<base64url token>` as an Authorization value. */
function protocolToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 4096) return undefined
  const offered = header.split(',').map((p) => p.trim()).find((p) => p.startsWith(TOKEN_PROTOCOL_PREFIX))
  if (offered === undefined) return undefined
  const encoded = offered.slice(TOKEN_PROTOCOL_PREFIX.length)
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) return undefined
  return `Bearer ${Buffer.from(encoded, 'base64url').toString('utf8')}`
}

function parseQuery(q: URLSearchParams): { lastN: number | null; partitions: string[]; key: string | null } {
  const from = q.get('from')
  const lines = q.get('lines')
  const key = q.get('key')
  if (from !== null && from !== 'beginning' && from !== 'end') throw new GatewayError('E_BAD_REQUEST', 'from must be "beginning" or "end"')
  if (from !== null && lines !== null) throw new GatewayError('E_BAD_REQUEST', 'lines cannot be combined with from')
  if (key !== null && q.has('partition')) throw new GatewayError('E_BAD_REQUEST', 'key cannot be combined with partition (a key is on one partition)')
  if (key !== null && (key.length === 0 || key.length > MAX_KEY_LENGTH)) throw new GatewayError('E_BAD_REQUEST', `key must be 1 to ${MAX_KEY_LENGTH} characters`)
  if (from === 'beginning') return { lastN: null, partitions: q.getAll('partition'), key }
  const lastN = from === 'end' ? 0 : lines === null ? 10 : /^\d+$/.test(lines) ? Number(lines) : NaN
  if (!Number.isSafeInteger(lastN)) throw new GatewayError('E_BAD_REQUEST', 'lines must be a whole number')
  return { lastN, partitions: q.getAll('partition'), key }
}
