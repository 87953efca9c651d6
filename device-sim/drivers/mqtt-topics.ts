import { formatPropertyBag, parsePropertyBag } from '../../src/protocol/property-bag.js'

/**
 * Device-side IoT Hub topics (IoT Hub MQTT support, the topic of each feature), built with the gateway's own property-bag
 * formatter so the simulator speaks exactly the grammar the gateway parses.
 */

export function telemetryTopic(deviceId: string, properties: Record<string, string>): string {
  return `devices/${deviceId}/messages/events/${formatPropertyBag({ application: properties })}`
}

export function c2dFilter(deviceId: string): string {
  return `devices/${deviceId}/messages/devicebound/#`
}

export const METHODS_FILTER = '$iothub/methods/POST/#'
export const TWIN_RESPONSE_FILTER = '$iothub/twin/res/#'

export function twinPatchTopic(rid: string): string {
  return `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`
}

export function methodResponseTopic(status: number, rid: string): string {
  return `$iothub/methods/res/${status}/?$rid=${rid}`
}

export type Incoming =
  | { kind: 'c2d'; properties: Map<string, string | null> }
  | { kind: 'method'; name: string; rid: string }
  | { kind: 'twin-response'; status: number; rid: string }
  | { kind: 'other' }

function queryValue(topic: string, name: string): string | null {
  const q = topic.indexOf('?')
  if (q < 0) return null
  for (const pair of topic.slice(q + 1).split('&')) if (pair.startsWith(`${name}=`)) return pair.slice(name.length + 1)
  return null
}

export function classifyIncoming(deviceId: string, topic: string): Incoming {
  const c2dPrefix = `devices/${deviceId}/messages/devicebound/`
  if (topic.startsWith(c2dPrefix)) {
    const bag = parsePropertyBag(topic.slice(c2dPrefix.length))
    const properties = new Map<string, string | null>(bag.application)
    for (const [name, value] of Object.entries(bag.system)) properties.set(`$.${name}`, value)
    return { kind: 'c2d', properties }
  }
  const rid = queryValue(topic, '$rid')
  // The SDK reads the method name as the 4th level; the `/` before `?` is optional (§6).
  const method = /^\$iothub\/methods\/POST\/([^/?]+)\/?\?/.exec(topic)
  if (method && rid) return { kind: 'method', name: method[1]!, rid }
  const twin = /^\$iothub\/twin\/res\/(\d+)\/?\?/.exec(topic)
  if (twin && rid) return { kind: 'twin-response', status: Number(twin[1]), rid }
  return { kind: 'other' }
}
