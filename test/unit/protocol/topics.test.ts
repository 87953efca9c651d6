import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../src/errors/catalogue.js'
import {
  DEVICE_PUBLISH_KINDS,
  ENABLED_PUBLISH_KINDS,
  formatDesiredPatchTopic,
  formatDeviceboundTopic,
  formatMethodRequestTopic,
  formatTwinResponseTopic,
  isAllowedSubscription,
  isTopicSafeDeviceId,
  parseDevicePublishTopic,
} from '../../../src/protocol/topics.js'

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return (err as GatewayError).code
  }
  throw new Error('expected a GatewayError')
}

/** IoT Hub allows these in device ids; none may act as a pattern. */
const HOSTILE_IDS = ["d$'(", 'd%41', 'a.b', 'a*', 'dev?1', 'x(y)', '$iothub', 'a=b@c:d,e!']

describe('parseDevicePublishTopic: telemetry', () => {
  it('accepts the SDK topic with a bag, with an empty bag and without the trailing slash', () => {
    const withBag = parseDevicePublishTopic('devices/dev1/messages/events/%24.mid=1&a=b', 'dev1')
    expect(withBag.kind).toBe('telemetry')
    if (withBag.kind === 'telemetry') {
      expect(withBag.bag.system.messageId).toBe('1')
      expect(withBag.bag.application.get('a')).toBe('b')
    }
    for (const topic of ['devices/dev1/messages/events/', 'devices/dev1/messages/events']) {
      expect(parseDevicePublishTopic(topic, 'dev1')).toEqual({ kind: 'telemetry', bag: { system: {}, application: new Map() } })
    }
  })

  it('tolerates one trailing slash after the bag (C SDK `$.on=<name>/`)', () => {
    const parsed = parseDevicePublishTopic('devices/dev1/messages/events/%24.on=out/', 'dev1')
    expect(parsed.kind === 'telemetry' && parsed.bag.system.outputName).toBe('out')
  })

  it('turns a bag with a raw slash into E_PROPERTY_BAG_INVALID', () => {
    expect(codeOf(() => parseDevicePublishTopic('devices/dev1/messages/events/a=b/c=d', 'dev1'))).toBe('E_PROPERTY_BAG_INVALID')
  })

  it.each(HOSTILE_IDS)('matches the device id %s literally', (id) => {
    expect(parseDevicePublishTopic(`devices/${id}/messages/events/`, id).kind).toBe('telemetry')
    // A regex built from these ids would match other strings; a literal compare does not.
    expect(codeOf(() => parseDevicePublishTopic('devices/dXYZ/messages/events/', id))).toBe('E_TOPIC_FORBIDDEN')
  })

  it.each([
    ['another device', 'devices/dev2/messages/events/'],
    ['a device id prefix', 'devices/dev10/messages/events/'],
    ['a device id that is a prefix of ours', 'devices/dev/messages/events/'],
    ['case differences', 'Devices/dev1/messages/events/'],
    ['c2d topic', 'devices/dev1/messages/devicebound/'],
    ['module topic', 'devices/dev1/modules/m1/messages/events/'],
    ['eventsX', 'devices/dev1/messages/eventsX'],
    ['wildcard +', 'devices/+/messages/events/'],
    ['wildcard #', 'devices/dev1/messages/events/#'],
    ['+ inside the bag', 'devices/dev1/messages/events/a=1+2'],
    ['NUL', 'devices/dev1/messages/events/a\u0000'],
    ['empty levels', 'devices//messages/events/'],
    ['double slash', 'devices/dev1//messages/events/'],
    ['leading slash', '/devices/dev1/messages/events/'],
    ['empty topic', ''],
    ['$SYS', '$SYS/broker/load'],
    ['a plain topic', 'telemetry'],
  ])('refuses %s with E_TOPIC_FORBIDDEN', (_label, topic) => {
    expect(codeOf(() => parseDevicePublishTopic(topic, 'dev1'))).toBe('E_TOPIC_FORBIDDEN')
  })

  it.each([
    ['a.b', 'aXb'],
    ['a*', 'aaaa'],
    ['dev?1', 'de1'],
    ['x(y)', 'xy'],
    ['d%41', 'dA'],
    ['a$', 'a'],
  ])('does not treat %s as a pattern matching %s', (id, other) => {
    expect(codeOf(() => parseDevicePublishTopic(`devices/${other}/messages/events/`, id))).toBe('E_TOPIC_FORBIDDEN')
    expect(isAllowedSubscription(`devices/${other}/messages/devicebound/#`, id)).toBe(false)
  })

  it('refuses every topic when the device id itself is not topic-safe', () => {
    for (const id of ['', '+', '#', 'a/b', 'a\u0000']) {
      expect(isTopicSafeDeviceId(id)).toBe(false)
      expect(codeOf(() => parseDevicePublishTopic(`devices/${id}/messages/events/`, id))).toBe('E_TOPIC_FORBIDDEN')
    }
  })
})

describe('parseDevicePublishTopic: twin and method topics', () => {
  it('parses twin GET, reported PATCH and method responses, keeping $rid as sent', () => {
    expect(parseDevicePublishTopic('$iothub/twin/GET/?$rid=abc-1', 'dev1')).toEqual({ kind: 'twin-get', rid: 'abc-1' })
    expect(parseDevicePublishTopic('$iothub/twin/PATCH/properties/reported/?$rid=7&$version=3', 'dev1')).toEqual({
      kind: 'twin-patch-reported',
      rid: '7',
    })
    expect(parseDevicePublishTopic('$iothub/methods/res/200/?$rid=a%2Db', 'dev1')).toEqual({ kind: 'method-response', status: 200, rid: 'a%2Db' })
    expect(parseDevicePublishTopic('$iothub/methods/res/-1?$rid=x', 'dev1')).toEqual({ kind: 'method-response', status: -1, rid: 'x' })
  })

  it.each([
    ['missing $rid', '$iothub/twin/GET/'],
    ['empty $rid', '$iothub/twin/GET/?$rid='],
    ['$rid with a slash', '$iothub/twin/GET/?$rid=a/b'],
    ['non-numeric status', '$iothub/methods/res/ok/?$rid=1'],
    ['empty status', '$iothub/methods/res//?$rid=1'],
    ['desired PATCH (cloud-to-device only)', '$iothub/twin/PATCH/properties/desired/?$version=1'],
    ['twin response (cloud-to-device only)', '$iothub/twin/res/200/?$rid=1'],
    ['method request (cloud-to-device only)', '$iothub/methods/POST/m/?$rid=1'],
    ['unknown $iothub topic', '$iothub/other'],
  ])('refuses %s', (_label, topic) => {
    expect(codeOf(() => parseDevicePublishTopic(topic, 'dev1'))).toBe('E_TOPIC_FORBIDDEN')
  })

  it('enables exactly the IoT Hub device publishes and lets the caller restrict kinds', () => {
    expect([...ENABLED_PUBLISH_KINDS].sort()).toEqual(['method-response', 'telemetry', 'twin-get', 'twin-patch-reported'])
    expect(DEVICE_PUBLISH_KINDS).toContain('twin-get')
    expect(parseDevicePublishTopic('$iothub/twin/GET/?$rid=1', 'dev1', ENABLED_PUBLISH_KINDS).kind).toBe('twin-get')
    expect(codeOf(() => parseDevicePublishTopic('$iothub/twin/GET/?$rid=1', 'dev1', new Set(['telemetry'])))).toBe('E_TOPIC_FORBIDDEN')
    expect(parseDevicePublishTopic('devices/dev1/messages/events/', 'dev1', ENABLED_PUBLISH_KINDS).kind).toBe('telemetry')
  })
})

describe('isAllowedSubscription', () => {
  it('allows the filters the SDK subscribes, plus the one-level C2D form', () => {
    for (const filter of [
      'devices/dev1/messages/devicebound/#',
      'devices/dev1/messages/devicebound/+',
      '$iothub/twin/res/#',
      '$iothub/twin/PATCH/properties/desired/#',
      '$iothub/methods/POST/#',
    ]) {
      expect(isAllowedSubscription(filter, 'dev1')).toBe(true)
    }
  })

  it.each([
    '#',
    '+/#',
    '+',
    '$SYS/#',
    '$iothub/#',
    '$iothub/+/res/#',
    '$iothub/methods/POST/+',
    '$iothub/twin/res/+',
    'devices/#',
    'devices/+/messages/devicebound/#',
    'devices/dev2/messages/devicebound/#',
    'devices/dev1/messages/events/#',
    'devices/dev1/messages/devicebound',
    'devices/dev1/messages/devicebound/',
    'devices/dev1/messages/#',
    'devices/dev1/#',
    'devices/dev1/modules/m1/inputs/#',
    'devices//messages/devicebound/#',
    '',
  ])('refuses %s', (filter) => {
    expect(isAllowedSubscription(filter, 'dev1')).toBe(false)
  })

  it('does not let a hostile device id widen the filter', () => {
    expect(isAllowedSubscription('devices/+/messages/devicebound/#', '+')).toBe(false)
    expect(isAllowedSubscription('devices/#/messages/devicebound/#', '#')).toBe(false)
    expect(isAllowedSubscription('devices/a/b/messages/devicebound/#', 'a/b')).toBe(false)
    expect(isAllowedSubscription('devices//messages/devicebound/#', '')).toBe(false)
    for (const id of HOSTILE_IDS) {
      expect(isAllowedSubscription(`devices/${id}/messages/devicebound/#`, id)).toBe(true)
      expect(isAllowedSubscription(`devices/${id}/messages/devicebound/#`, 'dev1')).toBe(false)
    }
  })
})

describe('topic formatters', () => {
  it('formats the devicebound topic with an encoded bag, keeping the slash when empty', () => {
    expect(formatDeviceboundTopic('dev1', { system: { messageId: 'a/b' } })).toBe('devices/dev1/messages/devicebound/%24.mid=a%2Fb')
    expect(formatDeviceboundTopic("d$'(", {})).toBe("devices/d$'(/messages/devicebound/")
    expect(codeOf(() => formatDeviceboundTopic('a/b', {}))).toBe('E_DEVICE_ID_INVALID')
    expect(codeOf(() => formatDeviceboundTopic('+', {}))).toBe('E_DEVICE_ID_INVALID')
  })

  it('formats twin responses, with and without a version', () => {
    expect(formatTwinResponseTopic(200, 'r1')).toBe('$iothub/twin/res/200/?$rid=r1')
    expect(formatTwinResponseTopic(204, 'r1', 5)).toBe('$iothub/twin/res/204/?$rid=r1&$version=5')
    expect(codeOf(() => formatTwinResponseTopic(200, 'a&b'))).toBe('E_INTERNAL')
    expect(codeOf(() => formatTwinResponseTopic(200, ''))).toBe('E_INTERNAL')
    expect(codeOf(() => formatTwinResponseTopic(99, 'r'))).toBe('E_INTERNAL')
    expect(codeOf(() => formatTwinResponseTopic(200.5, 'r'))).toBe('E_INTERNAL')
    expect(codeOf(() => formatTwinResponseTopic(200, 'r', -1))).toBe('E_INTERNAL')
  })

  it('echoes a $rid parsed from a device request verbatim', () => {
    const req = parseDevicePublishTopic('$iothub/twin/GET/?$rid=a%2Db_~.1', 'dev1')
    expect(req.kind === 'twin-get' && formatTwinResponseTopic(200, req.rid)).toBe('$iothub/twin/res/200/?$rid=a%2Db_~.1')
  })

  it('formats desired-property notifications', () => {
    expect(formatDesiredPatchTopic(12)).toBe('$iothub/twin/PATCH/properties/desired/?$version=12')
    expect(codeOf(() => formatDesiredPatchTopic(Number.NaN))).toBe('E_INTERNAL')
  })

  it('formats method requests and refuses names that are not one safe topic level', () => {
    expect(formatMethodRequestTopic('reboot', 'r-1')).toBe('$iothub/methods/POST/reboot/?$rid=r-1')
    for (const name of ['', 'a/b', 'a+b', 'a#', 'a b', "it's", 'a?b', 'x'.repeat(129)]) {
      expect(codeOf(() => formatMethodRequestTopic(name, 'r'))).toBe('E_BAD_REQUEST')
    }
  })
})
