import type { ConnectionContext, SubscriptionPolicy } from '../broker/ports.js'
import { GatewayError } from '../errors/catalogue.js'
import { isAllowedSubscription } from './topics.js'

/**
 * A device may subscribe only to its own IoT Hub topics (IoT Hub MQTT support, the SUBSCRIBE topic of each feature). QoS is capped at 1:
 * IoT Hub does not support QoS 2, and the Azure SDK ignores the granted QoS anyway.
 */
export class IotHubSubscriptionPolicy implements SubscriptionPolicy {
  authorizeSubscription(ctx: ConnectionContext, filter: string, qos: number): number {
    if (!isAllowedSubscription(filter, ctx.deviceId)) {
      throw new GatewayError('E_TOPIC_FORBIDDEN', `device ${ctx.deviceId} may not subscribe to "${filter}"`)
    }
    return Math.min(qos, 1)
  }
}
