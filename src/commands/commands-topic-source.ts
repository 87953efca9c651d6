import { setTimeout as sleep } from 'node:timers/promises'
import { toGatewayError, type ErrorCode } from '../errors/catalogue.js'
import type { Logger } from '../observability/logger.js'
import type { Consumer, EventStream, StoredRecord } from '../stream/types.js'
import type { C2dService, SendRequest } from './c2d-service.js'
import type { CommandQueue } from './types.js'
import { ACK_MODES, type AckMode } from './types.js'

/** Refusals that end a stream command as `rejected`; anything else is retried. */
const REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['E_QUEUE_FULL', 'E_DEVICE_NOT_FOUND', 'E_BAD_REQUEST', 'E_PAYLOAD_TOO_LARGE', 'E_PROPERTY_BAG_INVALID', 'E_DEVICE_ID_INVALID'])
/** Headers with a meaning of their own; every other header is an application property. */
const RESERVED_HEADERS = new Set(['message-id', 'ttl-ms', 'content-type', 'content-encoding', 'iothub-ack'])

/**
 * Reads the `commands` stream topic in one consumer group (commands.consumerGroup), so that with
 * several gateways each record is taken by one of them (embedded: partition leases in the stream
 * file; Kafka: the group protocol). Record: key = device id, value = payload, headers
 * `message-id`, `ttl-ms`, `content-type`, `content-encoding`, `iothub-ack`, others = properties.
 *
 * A record's position is its source ref: the queue takes each ref once, so a batch handled again
 * after a lost lease or a crash before the commit does not queue its commands twice. A refused
 * command (queue full, unknown device, invalid) ends at once with `rejected` feedback.
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
    const sourceRef = `stream:${record.topic}/${record.partition}/${record.offset}`
    const deviceId = record.key ?? ''
    const request = toSendRequest(record, sourceRef)
    for (;;) {
      try {
        await this.service.send(deviceId, request)
        return
      } catch (err) {
        const gerr = toGatewayError(err)
        if (REFUSALS.has(gerr.code)) {
          await this.queue.recordUnqueued(
            { messageId: request.messageId ?? sourceRef, deviceId, status: 'rejected', time: new Date().toISOString(), deliveryCount: 0, ack: request.ack ?? 'none', reason: gerr.code },
            sourceRef,
          )
          this.log.info({ deviceId, code: gerr.code }, 'command from the stream rejected')
          return
        }
        if (this.stopping) throw gerr
        this.log.warn({ deviceId, code: gerr.code }, 'command not queued yet; retrying')
        await sleep(this.retryMs)
      }
    }
  }
}

function toSendRequest(record: StoredRecord, sourceRef: string): SendRequest {
  const h = record.headers
  const properties: Record<string, string> = {}
  for (const [k, v] of Object.entries(h)) if (!RESERVED_HEADERS.has(k)) properties[k] = v
  const request: SendRequest = { payload: record.value, properties, sourceRef, sentAt: record.timestamp }
  if (h['message-id']) request.messageId = h['message-id']
  // ttl-ms is rounded up to whole seconds; the service refuses what is outside its bounds.
  if (h['ttl-ms'] !== undefined) request.ttlSeconds = Math.ceil(Number(h['ttl-ms']) / 1000)
  if (h['content-type']) request.contentType = h['content-type']
  if (h['content-encoding']) request.contentEncoding = h['content-encoding']
  const ack = h['iothub-ack']
  if (ack !== undefined && (ACK_MODES as readonly string[]).includes(ack)) request.ack = ack as AckMode
  return request
}
