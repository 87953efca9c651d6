/**
 * Cross-checks against the Azure IoT device SDK's own MQTT code (devDependency
 * azure-iot-device-mqtt): what it publishes, our parser reads; what we format, it reads back.
 * The SDK methods are called on stand-in `this` objects, so no socket is opened.
 */
import { describe, expect, it } from 'vitest'
import { Mqtt } from 'azure-iot-device-mqtt'
import { Message } from 'azure-iot-common'
import { MqttTwinClient } from 'azure-iot-device-mqtt/dist/mqtt_twin_client.js'
import { formatPropertyBag } from '../../../src/protocol/property-bag.js'
import {
  formatDeviceboundTopic,
  formatMethodRequestTopic,
  formatTwinResponseTopic,
  parseDevicePublishTopic,
} from '../../../src/protocol/topics.js'

interface SdkMqttInternals {
  _getEventTopicFromMessage(this: { _topicTelemetryPublish: string }, message: Message): string
  _onC2DMessage(this: SdkReceiver, topic: string, payload: Buffer): void
  _extractPropertiesFromTopicPart(properties: string, msg: Message): void
  _onDeviceMethod(this: SdkReceiver, topic: string, payload: Buffer): void
}
interface SdkReceiver {
  _extractPropertiesFromTopicPart: SdkMqttInternals['_extractPropertiesFromTopicPart']
  emit(event: string, value: unknown): void
}

const sdk = Mqtt.prototype as unknown as SdkMqttInternals

function sdkReceive(handler: '_onC2DMessage' | '_onDeviceMethod', topic: string): { event: string; value: unknown } {
  let received: { event: string; value: unknown } | undefined
  const receiver: SdkReceiver = {
    _extractPropertiesFromTopicPart: sdk._extractPropertiesFromTopicPart,
    emit: (event, value) => {
      received = { event, value }
    },
  }
  sdk[handler].call(receiver, topic, Buffer.from('{}'))
  if (received === undefined) throw new Error('the SDK emitted nothing')
  return received
}

describe('Azure device SDK compatibility', () => {
  it('parses the telemetry topic the SDK builds for a message with every property', () => {
    const message = new Message('x')
    message.messageId = 'm/1'
    message.correlationId = 'c&2'
    message.userId = 'u'
    message.contentType = 'application/json'
    message.contentEncoding = 'utf-8'
    message.expiryTimeUtc = '2030-01-01T00:00:00.000Z'
    message.properties.add('alert level', 'high & urgent')
    message.properties.add('dt-subject', 'subj')
    message.properties.add('ünï', 'çødé=1')
    const topic = sdk._getEventTopicFromMessage.call({ _topicTelemetryPublish: 'devices/dev1/messages/events/' }, message)
    const parsed = parseDevicePublishTopic(topic, 'dev1')
    expect(parsed.kind).toBe('telemetry')
    if (parsed.kind !== 'telemetry') return
    expect(parsed.bag.system).toEqual({
      messageId: 'm/1',
      correlationId: 'c&2',
      userId: 'u',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
    })
    expect([...parsed.bag.application]).toEqual([
      ['alert level', 'high & urgent'],
      ['dt-subject', 'subj'],
      ['ünï', 'çødé=1'],
    ])
  })

  it('parses the SDK topic of a message without properties (empty bag, trailing slash)', () => {
    const topic = sdk._getEventTopicFromMessage.call({ _topicTelemetryPublish: "devices/d$'(%/messages/events/" }, new Message('x'))
    expect(topic).toBe("devices/d$'(%/messages/events/")
    expect(parseDevicePublishTopic(topic, "d$'(%")).toEqual({ kind: 'telemetry', bag: { system: {}, application: new Map() } })
  })

  it('delivers a cloud-to-device bag the SDK reads back field by field', () => {
    const topic = formatDeviceboundTopic('dev1', {
      system: { messageId: 'm/1', to: '/devices/dev1/messages/devicebound', correlationId: 'c=1', contentType: 'text/plain; a=b' },
      application: { 'iothub-ack': 'full', 'a b': 'x/y&z=1', 'ünï': 'çødé' },
    })
    const { event, value } = sdkReceive('_onC2DMessage', topic)
    expect(event).toBe('message')
    const msg = value as Message
    expect(msg.messageId).toBe('m/1')
    expect(msg.to).toBe('/devices/dev1/messages/devicebound')
    expect(msg.correlationId).toBe('c=1')
    expect(msg.contentType).toBe('text/plain; a=b')
    expect(msg.properties.getValue('iothub-ack')).toBe('full')
    expect(msg.properties.getValue('a b')).toBe('x/y&z=1')
    expect(msg.properties.getValue('ünï')).toBe('çødé')
    expect(formatPropertyBag({ system: { messageId: '1' } })).toBe('%24.mid=1')
  })

  it('formats a method request topic the SDK dispatches by name with the request id', () => {
    const { event, value } = sdkReceive('_onDeviceMethod', formatMethodRequestTopic('reboot.now', 'b7f2c1e0-0000-4000-8000-000000000001'))
    expect(event).toBe('method_reboot.now')
    expect(value).toMatchObject({ requestId: 'b7f2c1e0-0000-4000-8000-000000000001', methods: { methodName: 'reboot.now' } })
  })

  it('formats a twin response topic the SDK matches to its pending request', () => {
    const rid = 'b7f2c1e0-0000-4000-8000-000000000002'
    let result: unknown
    const pending = { [rid]: (err: Error | null, body?: unknown) => (result = err ?? body) }
    const twin = MqttTwinClient.prototype as unknown as {
      _onResponseMessage(this: { _pendingTwinRequests: typeof pending }, topic: string, message: Buffer): void
    }
    twin._onResponseMessage.call({ _pendingTwinRequests: pending }, formatTwinResponseTopic(204, rid, 7), Buffer.from('{"ok":1}'))
    expect(result).toEqual({ ok: 1 })
  })
})
