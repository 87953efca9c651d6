import { APP_COLLISION_PREFIX, RESERVED_HEADERS } from '../ingest/envelope.js'
import type { StoredRecord } from '../stream/types.js'
import type { RoutingMessage, SystemPropertyName } from './query/index.js'
import type { TwinDocument } from './twin-cache.js'

/**
 * A stream record as a route condition reads it (IoT Hub message routing query syntax:
 * "Message routing query based on message properties / message body / device twin").
 *
 * Telemetry: the system properties come from the headers the envelope wrote (ingest/envelope.ts),
 * application properties are every other header (an `app.` name that collided with a gateway
 * header gets its own name back), and `$body` is the payload parsed as JSON only when the device
 * said `contentType = application/json` and `contentEncoding = UTF-8` (IoT Hub's rule: routing on
 * the body needs both; any other body leaves `$body` undefined).
 * device-events: the body is the event's JSON, `$connectionDeviceId` its device, and the
 * `event-type` header an application property (`"event-type" = 'connected'` cannot be written
 * bare, so IoT Hub's `opType` is given as well).
 * Everything is read lazily and at most once per record: a condition on one header parses nothing.
 */

const SYSTEM_HEADERS: Record<Exclude<SystemPropertyName, 'connectionDeviceId' | 'enqueuedTime'>, string> = {
  contentType: 'content-type',
  contentEncoding: 'content-encoding',
  messageId: 'message-id',
  correlationId: 'correlation-id',
}

const UTF8 = new Set(['utf-8', 'utf8'])
/** Read with the fatal flag: a body that is not UTF-8 is not JSON either. */
const decoder = new TextDecoder('utf-8', { fatal: true })

export type RecordKind = 'telemetry' | 'device-event'

export class RecordMessage implements RoutingMessage {
  private appProps: Map<string, string> | null = null
  private parsedBody: { value: unknown } | null = null
  private enqueuedIso: string | undefined

  constructor(
    readonly record: StoredRecord,
    private readonly kind: RecordKind,
    private readonly twinDocument: TwinDocument | undefined,
  ) {}

  get deviceId(): string | undefined {
    return this.record.key ?? this.record.headers['device-id']
  }

  system(name: SystemPropertyName): string | undefined {
    const headers = this.record.headers
    switch (name) {
      case 'connectionDeviceId':
        return this.deviceId
      case 'enqueuedTime':
        this.enqueuedIso ??= new Date(Number(headers['enqueued-time'] ?? this.record.timestamp)).toISOString()
        return this.enqueuedIso
      default:
        if (this.kind === 'device-event' && name === 'contentType') return 'application/json'
        if (this.kind === 'device-event' && name === 'contentEncoding') return 'UTF-8'
        return headers[SYSTEM_HEADERS[name]]
    }
  }

  app(lowerCaseName: string): string | undefined {
    this.appProps ??= this.readAppProperties()
    return this.appProps.get(lowerCaseName)
  }

  body(): unknown {
    this.parsedBody ??= { value: this.readBody() }
    return this.parsedBody.value
  }

  twin(): TwinDocument | undefined {
    return this.twinDocument
  }

  private readAppProperties(): Map<string, string> {
    const props = new Map<string, string>()
    for (const [name, value] of Object.entries(this.record.headers)) {
      if (RESERVED_HEADERS.has(name)) continue
      const own = name.startsWith(APP_COLLISION_PREFIX) && RESERVED_HEADERS.has(name.slice(APP_COLLISION_PREFIX.length)) ? name.slice(APP_COLLISION_PREFIX.length) : name
      props.set(own.toLowerCase(), value)
    }
    if (this.kind === 'device-event' && this.record.headers['event-type'] !== undefined) props.set('optype', this.record.headers['event-type'])
    return props
  }

  private readBody(): unknown {
    if (this.kind === 'telemetry') {
      const type = this.record.headers['content-type']?.toLowerCase()
      const encoding = this.record.headers['content-encoding']?.toLowerCase()
      if (type === undefined || !type.startsWith('application/json') || encoding === undefined || !UTF8.has(encoding)) return undefined
    }
    try {
      return JSON.parse(decoder.decode(this.record.value))
    } catch {
      return undefined
    }
  }
}

/** device-events records that are twin changes (the `twin-changes` source); the rest are `device-events`. */
export function isTwinChange(record: StoredRecord): boolean {
  return record.headers['event-type']?.startsWith('twin-') ?? false
}
