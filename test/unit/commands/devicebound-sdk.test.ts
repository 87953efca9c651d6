import { describe, expect, it } from 'vitest'
import { Mqtt } from 'azure-iot-device-mqtt'
import type { Message } from 'azure-iot-common'
import { deviceboundBag } from '../../../src/commands/c2d-delivery.js'
import type { QueuedMessage } from '../../../src/commands/types.js'
import { formatDeviceboundTopic } from '../../../src/protocol/topics.js'
import { isPlainObject, mergeTwinPatch, validateTwinPatch } from '../../../src/registry/twin-document.js'
import { twinPatchFromSets } from '../../../src/cli/commands.js'

interface SdkReceiver {
  _extractPropertiesFromTopicPart(properties: string, msg: Message): void
  emit(event: string, value: unknown): void
}
const sdk = Mqtt.prototype as unknown as { _onC2DMessage(this: SdkReceiver, topic: string, payload: Buffer): void; _extractPropertiesFromTopicPart: SdkReceiver['_extractPropertiesFromTopicPart'] }

/** What the Azure SDK's MQTT transport makes of a devicebound PUBLISH (its own code, no socket). */
function sdkMessage(topic: string): Message {
  let got: Message | undefined
  sdk._onC2DMessage.call({ _extractPropertiesFromTopicPart: sdk._extractPropertiesFromTopicPart, emit: (_e, m) => (got = m as Message) }, topic, Buffer.from('body'))
  if (!got) throw new Error('the SDK emitted no message')
  return got
}

describe('devicebound topic as the Azure SDK reads it (IoT Hub MQTT support, "Receiving cloud-to-device messages")', () => {
  it('carries message id, to, expiry, content type/encoding and application properties', () => {
    const m: QueuedMessage = {
      seq: 1, deliveryCount: 0, messageId: 'id/1&x', deviceId: "dev$'1", payload: Buffer.from('body'), properties: { 'colour/hue': 'red=1&2', empty: '' },
      contentType: 'application/json', contentEncoding: 'utf-8', ack: 'full', enqueuedAt: 0, expiresAt: Date.UTC(2030, 0, 1),
    }
    const msg = sdkMessage(formatDeviceboundTopic(m.deviceId, deviceboundBag(m)))
    expect(msg.messageId).toBe('id/1&x')
    expect(msg.to).toBe("/devices/dev$'1/messages/devicebound")
    expect(msg.expiryTimeUtc).toBe('2030-01-01T00:00:00.000Z')
    expect(msg.contentType).toBe('application/json')
    expect(msg.contentEncoding).toBe('utf-8')
    const props = Object.fromEntries(Array.from({ length: msg.properties.count() }, (_, i) => [msg.properties.getItem(i).key, msg.properties.getItem(i).value]))
    expect(props).toEqual({ 'colour/hue': 'red=1&2', empty: '', 'iothub-ack': 'full' })
  })
})

describe('twin documents', () => {
  it('merge patch: null deletes, objects merge recursively, arrays and scalars replace', () => {
    expect(mergeTwinPatch({ a: 1, b: { c: 2, d: 3 }, e: [1] }, { a: null, b: { c: null, f: 4 }, e: [2], g: { h: null } })).toEqual({ b: { d: 3, f: 4 }, e: [2], g: {} })
    expect(isPlainObject([])).toBe(false)
  })

  it('refuses reserved $ keys at any depth and non-objects', () => {
    expect(() => validateTwinPatch({ a: { $metadata: 1 } })).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }))
    expect(() => validateTwinPatch('x')).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }))
  })

  it('builds a patch from CLI --set path=value pairs (JSON values, else strings)', () => {
    expect(twinPatchFromSets(['a.b=1', 'a.c=true', 'd=hello', 'e=null', 'f={"x":[1]}'])).toEqual({ a: { b: 1, c: true }, d: 'hello', e: null, f: { x: [1] } })
  })
})
