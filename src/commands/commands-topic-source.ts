import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { GatewayError, toGatewayError, type ErrorCode } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { Consumer, EventStream, StoredRecord } from '../stream/types.js'
import type { C2dService, SendRequest } from './c2d-service.js'
import type { CommandQueue } from './types.js'
import { ACK_MODES, type AckMode } from './types.js'

/** Refusals that end a stream command as `rejected` at once: the same record would be refused again. */
const REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['E_QUEUE_FULL', 'E_DEVICE_NOT_FOUND', 'E_BAD_REQUEST', 'E_PAYLOAD_TOO_LARGE', 'E_PROPERTY_BAG_INVALID', 'E_DEVICE_ID_INVALID'])
/** Failures of a store or the stream that pass: retried for as long as they last. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['E_REGISTRY_UNAVAILABLE', 'E_SHUTTING_DOWN', 'E_STREAM_UNAVAILABLE', 'E_STREAM_CLOSED'])
/**
 * Attempts before any other failure (E_INTERNAL: a bug, or a store error without a code of its
 * own) ends the command as `rejected` with that code: it neither blocks its partition for good
 * nor vanishes. With the back-off below that is about 20 seconds of retries.
 */
const MAX_ATTEMPTS = 8
const MAX_RETRY_MS = 5000
/** Headers with a meaning of their own; every other header is an application property. */
const RESERVED_HEADERS = new Set(['message-id', 'ttl-ms', 'content-type', 'content-encoding', 'iothub-ack'])

/**
 * The durable identity of a `commands` record: its position plus a digest of where it is and what
 * it holds (key, value, headers, timestamp). A replay of the record (a batch handled again after a
 * lost lease or a crash before the commit) has the same ref and is queued once; a different record
 * at a reused position (the topic was deleted and created again) has another ref and is a new
 * command. The digest is also the message id of a record without a `message-id` header, so that
 * its feedback names the same message however often the record is read.
 */
export function commandIdentity(record: StoredRecord): { sourceRef: string; digest: string } {
  const hash = createHash('sha256')
  const field = (bytes: Buffer): void => {
    const length = Buffer.alloc(4)
    length.writeUInt32BE(bytes.length)
    hash.update(length).update(bytes)
  }
  const position = `${record.topic}/${record.partition}/${record.offset}`
  // Length-prefixed fields, so that no two different records hash the same bytes.
  field(Buffer.from(position))
  field(Buffer.from(record.key === null ? '' : `k${record.key}`))
  field(record.value)
  for (const name of Object.keys(record.headers).sort()) {
    field(Buffer.from(name))
    field(Buffer.from(record.headers[name]!))
  }
  field(Buffer.from(String(record.timestamp)))
  // 128 bits: ample to tell two records apart.
  const digest = hash.digest('hex').slice(0, 32)
  return { sourceRef: `stream:${position}#${digest}`, digest }
}

/**
 * Reads the `commands` stream topic in one consumer group (commands.consumerGroup), so that with
 * several gateways each record is taken by one of them (embedded: partition leases in the stream
 * file; Kafka: the group protocol). Record: key = device id, value = payload, headers
 * `message-id`, `ttl-ms`, `content-type`, `content-encoding`, `iothub-ack`, others = properties.
 *
 * Every record ends one way: queued (its end comes later as feedback), refused at once with
 * `rejected` feedback (no key, unknown device, bad headers, queue full, ...), or recognised as a
 * replay of a record taken before (commandSourceRef) and skipped, its end being that record's.
 * A record is never dropped without feedback, and never holds up its partition for good.
 */
export class CommandsTopicSource {
  private consumer: Consumer | null = null
  private stopping = false
  private readonly log: Logger

  constructor(
    private readonly stream: EventStream,
    private readonly topic: string,
    private readonly group: string,
    private readonly service: C2dService,
    private readonly queue: CommandQueue,
    logger: Logger,
    /** commands.maxTtlSeconds: how long the ref of a refused command is kept. */
    private readonly maxTtlSeconds: number,
    private readonly retryMs = 500,
  ) {
    this.log = logger.child({ component: 'commands-source' })
  }

  async start(): Promise<void> {
    this.consumer = await this.stream.consume({
      topic: this.topic,
      group: this.group,
      from: 'earliest',
      handler: (records) => this.handle(records),
      onError: (err) => this.log.error({ err: err.message }, 'commands consumer stopped'),
    })
  }

  async stop(): Promise<void> {
    this.stopping = true
    await this.consumer?.stop()
    this.consumer = null
  }

  private async handle(records: StoredRecord[]): Promise<void> {
    for (const record of records) await this.take(record)
  }

  private async take(record: StoredRecord): Promise<void> {
    const identity = commandIdentity(record)
    const { sourceRef } = identity
    const deviceId = record.key ?? ''
    for (let attempt = 1; ; attempt++) {
      try {
        const queued = await this.service.send(deviceId, toSendRequest(record, identity))
        if (queued === null) this.log.debug({ deviceId, sourceRef }, 'command from the stream taken before (replay): skipped')
        return
      } catch (err) {
        const gerr = toGatewayError(err)
        const givingUp = !REFUSALS.has(gerr.code) && !TRANSIENT.has(gerr.code) && attempt >= MAX_ATTEMPTS
        if ((REFUSALS.has(gerr.code) || givingUp) && (await this.reject(record, identity, gerr))) return
        if (this.stopping) throw gerr
        this.log.warn({ deviceId, code: gerr.code, attempt }, 'command not queued yet; retrying')
        await sleep(Math.min(this.retryMs * 2 ** Math.min(attempt - 1, 10), MAX_RETRY_MS))
      }
    }
  }

  /** End the command as `rejected`; false when even that cannot be recorded now (retried). */
  private async reject(record: StoredRecord, { sourceRef, digest }: { sourceRef: string; digest: string }, gerr: GatewayError): Promise<boolean> {
    const now = Date.now()
    const deviceId = record.key ?? ''
    const h = record.headers
    const ack = h['iothub-ack'] !== undefined && (ACK_MODES as readonly string[]).includes(h['iothub-ack']) ? (h['iothub-ack'] as AckMode) : 'none'
    try {
      await this.queue.recordUnqueued(
        { messageId: h['message-id'] || digest, deviceId, status: 'rejected', time: new Date(now).toISOString(), deliveryCount: 0, ack, reason: gerr.code },
        sourceRef,
        // A replay later than this could only be queued expired (its TTL is at most maxTtlSeconds).
        Math.max(record.timestamp, now) + this.maxTtlSeconds * 1000,
      )
    } catch (err) {
      this.log.warn({ deviceId, code: toGatewayError(err).code }, 'refused command not recorded yet; retrying')
      return false
    }
    if (REFUSALS.has(gerr.code)) this.log.info({ deviceId, code: gerr.code }, 'command from the stream rejected')
    else this.log.error({ deviceId, code: gerr.code, err: gerr.message, attempts: MAX_ATTEMPTS }, 'command from the stream rejected after repeated failures')
    return true
  }
}

/** The send request a record asks for; a record that cannot be one throws the refusal it gets. */
function toSendRequest(record: StoredRecord, { sourceRef, digest }: { sourceRef: string; digest: string }): SendRequest {
  if (record.key === null || record.key === '') throw new GatewayError('E_DEVICE_ID_INVALID', 'a commands record needs the device id as its key')
  const h = record.headers
  const properties: Record<string, string> = {}
  for (const [k, v] of Object.entries(h)) if (!RESERVED_HEADERS.has(k)) properties[k] = v
  const request: SendRequest = { payload: record.value, properties, sourceRef, sentAt: record.timestamp, messageId: h['message-id'] || digest }
  // ttl-ms is rounded up to whole seconds; the service refuses what is outside its bounds (and NaN).
  if (h['ttl-ms'] !== undefined) request.ttlSeconds = Math.ceil(Number(h['ttl-ms']) / 1000)
  if (h['content-type']) request.contentType = h['content-type']
  if (h['content-encoding']) request.contentEncoding = h['content-encoding']
  const ack = h['iothub-ack']
  if (ack !== undefined) {
    // An ack mode we do not know would silently ask for other feedback than the sender meant.
    if (!(ACK_MODES as readonly string[]).includes(ack)) throw new GatewayError('E_BAD_REQUEST', `iothub-ack must be one of ${ACK_MODES.join(', ')}`)
    request.ack = ack as AckMode
  }
  return request
}
