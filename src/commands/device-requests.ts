import type { ConnectionContext, InboundPublish, PublishDone, PublishHandler } from '../broker/ports.js'
import { GatewayError } from '../errors/catalogue.js'
import { parseDevicePublishTopic, type DevicePublishKind } from '../protocol/topics.js'
import type { MethodInvoker } from './method-invoker.js'
import type { TwinService } from './twin-service.js'

const IOTHUB_KINDS: ReadonlySet<DevicePublishKind> = new Set<DevicePublishKind>(['twin-get', 'twin-patch-reported', 'method-response'])

/**
 * Device publishes on `$iothub/...` (IoT Hub MQTT support, device twin and direct method sections): twin GET, twin PATCH reported and
 * method responses. Runs inside authorizePublish like telemetry (the packet then stays off the
 * broker-wide fan-out). Answers carry the request's `$rid`; like IoT Hub's they may come back in
 * another order than the requests went out.
 */
export class DeviceRequests implements PublishHandler {
  constructor(
    private readonly twins: TwinService,
    private readonly methods: MethodInvoker,
    private readonly maxPayloadBytes: number,
  ) {}

  handlePublish(ctx: ConnectionContext, packet: InboundPublish, done: PublishDone): void {
    this.handle(ctx, packet).then(
      () => done(null),
      (err: unknown) => done(err ?? new GatewayError('E_INTERNAL', 'device request failed')),
    )
  }

  private async handle(ctx: ConnectionContext, packet: InboundPublish): Promise<void> {
    if (packet.qos === 2) throw new GatewayError('E_QOS_UNSUPPORTED', 'QoS 2 is not supported; publish with QoS 0 or 1')
    const request = parseDevicePublishTopic(packet.topic, ctx.deviceId, IOTHUB_KINDS)
    if (packet.payload.length > this.maxPayloadBytes) {
      throw new GatewayError('E_PAYLOAD_TOO_LARGE', `payload of ${packet.payload.length} bytes exceeds the maximum of ${this.maxPayloadBytes}`)
    }
    switch (request.kind) {
      case 'twin-get':
        return this.twins.handleGet(ctx, request.rid)
      case 'twin-patch-reported':
        return this.twins.handlePatchReported(ctx, request.rid, packet.payload)
      case 'method-response':
        return this.methods.handleResponse(ctx, request.status, request.rid, packet.payload)
      case 'telemetry':
        throw new GatewayError('E_INTERNAL', 'telemetry routed to device requests')
    }
  }
}

/**
 * The device publish ACL (IoT Hub MQTT support: a device publishes only telemetry, twin requests and method responses): telemetry goes to the ingest pipeline, `$iothub/...`
 * requests to DeviceRequests; each parses its topic strictly and refuses anything else.
 */
export class DevicePublishRouter implements PublishHandler {
  constructor(
    private readonly telemetry: PublishHandler,
    private readonly requests: PublishHandler,
  ) {}

  handlePublish(ctx: ConnectionContext, packet: InboundPublish, done: PublishDone): void {
    if (packet.topic.startsWith('$iothub/')) this.requests.handlePublish(ctx, packet, done)
    else this.telemetry.handlePublish(ctx, packet, done)
  }
}
