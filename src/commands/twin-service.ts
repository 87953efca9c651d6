import type { ConnectionContext, DeviceChannel } from '../broker/ports.js'
import { ERROR_CODES, GatewayError, toGatewayError } from '../errors/catalogue.js'
import type { DeviceEventWriter } from '../ingest/device-events.js'
import type { Logger } from '../observability/logger.js'
import { formatDesiredPatchTopic, formatTwinResponseTopic } from '../protocol/topics.js'
import { sectionDocument, type TwinProperties } from '../registry/twin-document.js'
import type { DeviceRegistry, Twin } from '../registry/types.js'

/** A twin as the API and the device GET show it (IoT Hub MQTT support: "Retrieving a device twin's properties"). */
export interface TwinView {
  deviceId: string
  desired: TwinProperties
  reported: TwinProperties
  tags: TwinProperties
}

export function toTwinView(twin: Twin): TwinView {
  return { deviceId: twin.deviceId, desired: sectionDocument(twin.desired), reported: sectionDocument(twin.reported), tags: sectionDocument(twin.tags) }
}

const DESIRED_PROBE = '$iothub/twin/PATCH/properties/desired/?$version=1'
const RESPONSE_PROBE = '$iothub/twin/res/200/?$rid=0'

/**
 * Device twins on both sides. Device: GET and PATCH reported arrive as QoS 0 publishes and are
 * answered on `$iothub/twin/res/{status}/?$rid=` (QoS 0, to the one connection). A failure is
 * answered, not punished with a disconnect, and its body is `{"errorCode":N,"message":...}`
 * because the Node SDK ignores the status and fails the call only on a body with `errorCode`.
 * Service: GET and PATCH desired (optional If-Match version); a desired change is pushed to the
 * device when it is connected and subscribed. Every change is written to `device-events` (the
 * registry puts the event in its outbox in the patch's transaction).
 */
export class TwinService {
  private readonly log: Logger
  /** Pushes a desired patch to a device connected to another instance (CommandChannel.reachElsewhere). */
  elsewhere: ((deviceId: string, patch: TwinProperties, version: number) => Promise<void>) | null = null

  constructor(
    private readonly registry: DeviceRegistry,
    private readonly channel: DeviceChannel,
    private readonly events: Pick<DeviceEventWriter, 'flush'>,
    private readonly limits: { maxSectionBytes: number; maxDepth: number },
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'twin' })
  }

  // ---- service side ----

  async get(deviceId: string): Promise<TwinView> {
    const twin = await this.registry.getTwin(deviceId)
    if (!twin) throw new GatewayError('E_DEVICE_NOT_FOUND', `device "${deviceId}" not found`, { deviceId })
    return toTwinView(twin)
  }

  async patchDesired(deviceId: string, patch: TwinProperties, ifVersion?: number): Promise<TwinView> {
    const twin = await this.registry.patchTwin(deviceId, 'desired', patch, { ...this.patchLimits(), ...(ifVersion === undefined ? {} : { ifVersion }) })
    // The registry wrote the twin-desired event with the change; the writer takes it to the stream.
    void this.events.flush()
    await this.notifyDesired(deviceId, patch, twin.desired.version)
    return toTwinView(twin)
  }

  /** Tags change nothing on the device (it never sees them); routing reads them. */
  async patchTags(deviceId: string, patch: TwinProperties): Promise<TwinView> {
    const twin = await this.registry.patchTwin(deviceId, 'tags', patch, this.patchLimits())
    void this.events.flush()
    return toTwinView(twin)
  }

  // ---- device side ----

  async handleGet(ctx: ConnectionContext, rid: string): Promise<void> {
    await this.answer(ctx, rid, async () => {
      const twin = await this.get(ctx.deviceId)
      return { status: 200, body: Buffer.from(JSON.stringify({ desired: twin.desired, reported: twin.reported })) }
    })
  }

  async handlePatchReported(ctx: ConnectionContext, rid: string, payload: Buffer): Promise<void> {
    await this.answer(ctx, rid, async () => {
      const patch = parseJson(payload)
      const twin = await this.registry.patchTwin(ctx.deviceId, 'reported', patch as TwinProperties, this.patchLimits())
      void this.events.flush()
      return { status: 204, body: Buffer.alloc(0), version: twin.reported.version }
    })
  }

  private patchLimits(): { maxBytes: number; maxDepth: number } {
    return { maxBytes: this.limits.maxSectionBytes, maxDepth: this.limits.maxDepth }
  }

  /** Run a device request and write its response, or its error, back on the device's connection. */
  private async answer(ctx: ConnectionContext, rid: string, run: () => Promise<{ status: number; body: Buffer; version?: number }>): Promise<void> {
    let response: { status: number; body: Buffer; version?: number }
    try {
      response = await run()
    } catch (err) {
      const gerr = toGatewayError(err)
      const status = ERROR_CODES[gerr.code].http
      if (status >= 500) this.log.error({ deviceId: ctx.deviceId, err: gerr.message }, 'twin request failed')
      const message = status >= 500 ? ERROR_CODES[gerr.code].summary : gerr.message
      // errorCode in IoT Hub's six-digit style (status * 1000); `code` is ours, for people.
      response = { status, body: Buffer.from(JSON.stringify({ errorCode: status * 1000, message, code: gerr.code })) }
    }
    const topic = formatTwinResponseTopic(response.status, rid, response.version)
    if (this.channel.isSubscribed(ctx.deviceId, RESPONSE_PROBE)) await this.channel.send(ctx.deviceId, topic, response.body, 0)?.written.catch(() => undefined)
  }

  /**
   * Pushed only while connected and subscribed; devices re-GET after a reconnect (IoT Hub MQTT
   * support: "Receiving desired properties update notifications").
   */
  private async notifyDesired(deviceId: string, patch: TwinProperties, version: number): Promise<void> {
    if (this.channel.connectionOf(deviceId) || !this.elsewhere) return this.notifyDesiredHere(deviceId, patch, version)
    // A lost notification costs the device nothing it cannot get: it GETs the twin when it connects.
    await this.elsewhere(deviceId, patch, version).catch((err: unknown) => this.log.warn({ deviceId, err: (err as Error).message }, 'desired-properties notification not passed on'))
  }

  /** Pushed to the device's connection on this instance, if it has one and is subscribed. */
  async notifyDesiredHere(deviceId: string, patch: TwinProperties, version: number): Promise<void> {
    if (!this.channel.isSubscribed(deviceId, DESIRED_PROBE)) return
    const body = Buffer.from(JSON.stringify({ ...patch, $version: version }))
    await this.channel.send(deviceId, formatDesiredPatchTopic(version), body, 0)?.written.catch(() => undefined)
  }
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown
  } catch {
    throw new GatewayError('E_BAD_REQUEST', 'the twin patch is not valid JSON')
  }
}
