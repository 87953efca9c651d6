import { GatewayError, toGatewayError } from '../errors/catalogue.js'
import type { EventStream, Headers, StoredRecord } from '../stream/types.js'
import type { StreamEndpointDefinition, WebhookEndpointDefinition } from './definitions.js'

/** A message on its way to an endpoint: the record and the headers it leaves with (enriched). */
export interface RoutedMessage {
  record: StoredRecord
  deviceId: string
  headers: Headers
}

/**
 * Where an endpoint's messages go. deliver() resolves once the endpoint holds every message of the
 * batch, in order, or rejects (the caller retries the whole batch: delivery is at least once).
 */
export interface EndpointSink {
  deliver(messages: RoutedMessage[], signal: AbortSignal): Promise<void>
  /** Whether a failure should be retried without end (the caller dead-letters the others). */
  retriesForever(err: unknown): boolean
}

/** Another topic of the gateway's own stream backend: key = device id, headers kept. */
export class StreamSink implements EndpointSink {
  private provisioned = false

  constructor(
    private readonly stream: EventStream,
    readonly topic: string,
    private readonly partitions: number,
  ) {}

  async deliver(messages: RoutedMessage[]): Promise<void> {
    // Created at the first delivery, not when the endpoint is defined: with Kafka unreachable at
    // that moment the attempt fails E_STREAM_UNAVAILABLE and is retried like any other.
    if (!this.provisioned) {
      await this.stream.ensureTopics([{ name: this.topic, partitions: this.partitions }])
      this.provisioned = true
    }
    await this.stream.append(
      this.topic,
      messages.map((m) => ({ key: m.deviceId, value: m.record.value, headers: m.headers, timestamp: m.record.timestamp })),
    )
  }

  /**
   * The stream that failed is the one the dead-letter topic lives on: while it is unavailable,
   * dead-lettering would fail too, so the endpoint waits for it (its lag grows) instead.
   */
  retriesForever(err: unknown): boolean {
    const code = toGatewayError(err).code
    return code === 'E_STREAM_UNAVAILABLE' || code === 'E_STREAM_CLOSED'
  }
}

/**
 * HTTP POST of a batch as JSON: `{ endpoint, messages: [{ topic, partition, offset, deviceId,
 * enqueuedTime, headers, body, bodyEncoding }] }`, body as UTF-8 text when it is valid UTF-8,
 * else base64. A 2xx answer is a delivery; anything else (another status, a redirect, which is
 * not followed, a timeout, a refused connection) is E_ENDPOINT_DELIVERY. The answer's body is
 * never read: a hostile or broken endpoint cannot make the gateway buffer it.
 */
export class WebhookSink implements EndpointSink {
  constructor(private readonly endpoint: WebhookEndpointDefinition) {}

  async deliver(messages: RoutedMessage[], signal: AbortSignal): Promise<void> {
    const { url, authHeader, timeoutMs, name } = this.endpoint
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'streamgate', 'x-streamgate-endpoint': name }
    if (authHeader !== undefined) headers.authorization = authHeader
    let response: Response
    try {
      response = await fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ endpoint: name, messages: messages.map(toJson) }),
        redirect: 'manual',
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      })
    } catch (err) {
      if (signal.aborted) throw err
      const timedOut = (err as Error).name === 'TimeoutError'
      const reason = timedOut ? `no answer within ${timeoutMs} ms` : describeFetchError(err)
      throw new GatewayError('E_ENDPOINT_DELIVERY', `webhook ${name}: ${reason}`, { endpoint: name, timedOut })
    }
    await response.body?.cancel().catch(() => undefined)
    if (response.status < 200 || response.status > 299) {
      throw new GatewayError('E_ENDPOINT_DELIVERY', `webhook ${name} answered ${response.status}`, { endpoint: name, status: response.status })
    }
  }

  retriesForever(): boolean {
    return false
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true })

function toJson(m: RoutedMessage): Record<string, unknown> {
  const { record } = m
  let body: string
  let bodyEncoding: 'utf8' | 'base64'
  try {
    body = decoder.decode(record.value)
    bodyEncoding = 'utf8'
  } catch {
    body = record.value.toString('base64')
    bodyEncoding = 'base64'
  }
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    deviceId: m.deviceId,
    enqueuedTime: new Date(record.timestamp).toISOString(),
    headers: m.headers,
    body,
    bodyEncoding,
  }
}

/**
 * undici puts the reason in `cause` (ECONNREFUSED, ENOTFOUND, ...). Its own message is never
 * used: a request it refuses to build quotes the offending header, and that may be the secret.
 */
function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } }).cause
  return typeof cause?.code === 'string' ? cause.code : `the request could not be sent (${(err as Error).name})`
}

export function sinkFor(endpoint: StreamEndpointDefinition | WebhookEndpointDefinition, stream: EventStream, topic: string, partitions: number): EndpointSink {
  return endpoint.type === 'stream' ? new StreamSink(stream, topic, endpoint.partitions ?? partitions) : new WebhookSink(endpoint)
}
