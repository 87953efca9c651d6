import type { Aedes } from 'aedes'
import { contexts } from './device-connection.js'
import { persistenceOf } from './aedes-internals.js'
import type { DeliveryObserver, SessionStore } from './ports.js'

/**
 * Persistent sessions on the gateway's own store instead of Aedes' in-memory persistence: the
 * Azure SDK connects with clean session 0 and never re-subscribes after a token renewal, and after
 * a network drop not to the twin topics (azure-iot-device-mqtt 1.16, exercised by test/e2e), so a
 * device's subscriptions must outlive its connections and the gateway process. Delivery consults
 * the store directly (GatewayBroker.isSubscribed), so Aedes needs no copy of them.
 *
 * Aedes keeps none at all (`keepSubscriptionsOutOfAedes`): its persistence stores every filter of
 * a SUBSCRIBE as soon as the first one is authorised, the refused ones too, and at the next
 * clean-session-0 CONNECT it re-authorises what it stored and closes the connection on the refused
 * filter, before CONNACK, at every attempt. The SessionStore is written only from the 'subscribe'
 * event, which Aedes emits once every filter of the packet was authorised and the SUBACK written:
 * a SUBSCRIBE is stored whole or not at all. The stored session is read (or, for a clean
 * session, discarded [MQTT-3.1.2-6]) before the CONNACK, in GatewayBroker's authentication.
 */

/** Aedes' persistence stores, restores and removes no subscription (see above). */
export function keepSubscriptionsOutOfAedes(aedes: Aedes): void {
  const persistence = persistenceOf(aedes)
  persistence.addSubscriptions = async () => undefined
  persistence.removeSubscriptions = async () => undefined
  persistence.subscriptionsByClient = async () => []
}

/** Record SUBSCRIBE/UNSUBSCRIBE in the store and tell the observer about readiness, grants and PUBACKs. */
export function attachSessionHooks(aedes: Aedes, sessions: SessionStore, observer: DeliveryObserver | undefined): void {
  aedes.on('clientReady', (client) => {
    const ctx = contexts.get(client)
    if (ctx) observer?.ready(ctx)
  })
  // 'subscribe' fires once the SUBACK is written: the subscription is in force from then on.
  aedes.on('subscribe', (subs, client) => {
    const ctx = contexts.get(client)
    if (!ctx) return
    for (const sub of subs) sessions.addSubscription(ctx.deviceId, sub.topic, sub.qos)
    for (const sub of subs) observer?.subscribed(ctx, sub.topic)
  })
  aedes.on('unsubscribe', (filters, client) => {
    const ctx = contexts.get(client)
    if (ctx) sessions.removeSubscriptions(ctx.deviceId, filters)
  })
  if (observer) observeAcknowledgements(aedes, observer)
}

/**
 * Aedes handles a PUBACK by clearing the packet identifier from its persistence (aedes 1.2
 * lib/handlers/puback.js) and then emits 'ack' with the stored packet, which is undefined for
 * packets it did not store. Packets written by `send` are not stored there, so the identifier is
 * taken here, on the way in.
 */
function observeAcknowledgements(aedes: Aedes, observer: DeliveryObserver): void {
  const persistence = persistenceOf(aedes)
  const original = persistence.outgoingClearMessageId.bind(persistence)
  persistence.outgoingClearMessageId = (client, packet) => {
    const ctx = contexts.get(client)
    if (ctx && typeof packet.messageId === 'number' && (packet as { cmd?: string }).cmd === 'puback') {
      observer.acknowledged(ctx, packet.messageId)
    }
    return original(client, packet)
  }
}

