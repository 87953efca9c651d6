import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../src/errors/catalogue.js'
import { formatPropertyBag, parsePropertyBag, type PropertyBagInput } from '../../../src/protocol/property-bag.js'

function bagError(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected a GatewayError')
}

describe('parsePropertyBag', () => {
  it('parses the verified wire example of the Node SDK (IoT Hub MQTT support, "Sending device-to-cloud messages")', () => {
    const topic =
      'devices/dev1/messages/events/%24.mid=m-1&%24.cid=c%2F1&%24.ct=application%2Fjson&%24.ce=utf-8&alert%20level=high%20%26%20urgent&%C3%BCn%C3%AF=%C3%A7%C3%B8d%C3%A9%3D1'
    const bag = parsePropertyBag(topic.slice('devices/dev1/messages/events/'.length))
    expect(bag.system).toEqual({ messageId: 'm-1', correlationId: 'c/1', contentType: 'application/json', contentEncoding: 'utf-8' })
    expect([...bag.application]).toEqual([
      ['alert level', 'high & urgent'],
      ['ünï', 'çødé=1'],
    ])
  })

  it('returns an empty bag for an empty string', () => {
    const bag = parsePropertyBag('')
    expect(bag.system).toEqual({})
    expect(bag.application.size).toBe(0)
  })

  it('reads a bare key as null and `key=` as the empty string', () => {
    expect([...parsePropertyBag('flag&empty=&x=1').application]).toEqual([
      ['flag', null],
      ['empty', ''],
      ['x', '1'],
    ])
  })

  it('does not read `+` as a space', () => {
    expect(parsePropertyBag('a+b=c+d').application.get('a+b')).toBe('c+d')
  })

  it('accepts system keys with a literal `$` as well as `%24`', () => {
    expect(parsePropertyBag('$.mid=1&%24.cid=2').system).toEqual({ messageId: '1', correlationId: '2' })
  })

  it('maps every system key, and `$.sub` to the application property dt-subject', () => {
    const bag = parsePropertyBag(
      '$.mid=a&$.cid=b&$.uid=c&$.to=%2Fdevices%2Fd&$.ct=t&$.ce=e&$.exp=2030-01-01T00%3A00%3A00.000Z&$.ifid=i&$.on=o&$.sub=s',
    )
    expect(bag.system).toEqual({
      messageId: 'a',
      correlationId: 'b',
      userId: 'c',
      to: '/devices/d',
      contentType: 't',
      contentEncoding: 'e',
      expiryTimeUtc: '2030-01-01T00:00:00.000Z',
      interfaceId: 'i',
      outputName: 'o',
    })
    expect([...bag.application]).toEqual([['dt-subject', 's']])
  })

  it('keeps unknown `$.` keys (e.g. the C SDK diagnostics) as application properties', () => {
    expect(parsePropertyBag('%24.diagid=abc').application.get('$.diagid')).toBe('abc')
  })

  it('drops a system property without a value, as IoT Hub reads it as absent', () => {
    expect(parsePropertyBag('$.mid&$.cid=&$.ct=x').system).toEqual({ contentType: 'x' })
  })

  it('lets the last duplicate win, keeping the first position', () => {
    const bag = parsePropertyBag('a=1&b=2&a=3&$.mid=x&$.mid=y')
    expect([...bag.application]).toEqual([
      ['a', '3'],
      ['b', '2'],
    ])
    expect(bag.system.messageId).toBe('y')
  })

  it('keeps a raw `=` inside a value (C SDK without URL encoding)', () => {
    expect(parsePropertyBag('sig=YWJj==').application.get('sig')).toBe('YWJj==')
  })

  it.each([
    ['malformed percent-encoding', 'a=%E0%A4%A'],
    ['a lone %', 'a=50%'],
    ['a malformed key', '%zz=1'],
    ['an empty key', '=v'],
    ['an empty pair', 'a=1&&b=2'],
    ['a trailing &', 'a=1&'],
    ['a raw /', 'a=b/c'],
  ])('rejects %s with E_PROPERTY_BAG_INVALID', (_label, bag) => {
    expect(bagError(() => parsePropertyBag(bag)).code).toBe('E_PROPERTY_BAG_INVALID')
  })

  it('rejects bags over the length and count limits, and honours custom limits', () => {
    expect(bagError(() => parsePropertyBag(`k=${'x'.repeat(16 * 1024)}`)).code).toBe('E_PROPERTY_BAG_INVALID')
    const many = Array.from({ length: 129 }, (_, i) => `k${i}=v`).join('&')
    expect(bagError(() => parsePropertyBag(many)).details).toMatchObject({ reason: 'too many properties' })
    expect(parsePropertyBag(many, { maxLength: 100_000, maxProperties: 200 }).application.size).toBe(129)
    expect(bagError(() => parsePropertyBag('a=1&b=2', { maxLength: 100, maxProperties: 1 })).code).toBe('E_PROPERTY_BAG_INVALID')
  })

  it('does not echo the bag content into the error message', () => {
    const err = bagError(() => parsePropertyBag('secret=%ZZtoken'))
    expect(err.message).not.toContain('token')
    expect(JSON.stringify(err.details)).not.toContain('token')
  })
})

describe('formatPropertyBag', () => {
  it('writes system keys first, percent-encodes everything, `$` as %24 like IoT Hub', () => {
    const text = formatPropertyBag({
      application: new Map<string, string | null>([
        ['iothub-ack', 'full'],
        ['path', 'a/b&c=d'],
      ]),
      system: { to: '/devices/d1/messages/devicebound', messageId: 'm 1' },
    })
    expect(text).toBe('%24.mid=m%201&%24.to=%2Fdevices%2Fd1%2Fmessages%2Fdevicebound&iothub-ack=full&path=a%2Fb%26c%3Dd')
    // One topic level: the Node SDK reads the bag as the 5th `/`-segment.
    expect(text).not.toContain('/')
  })

  it('writes null as a bare key and "" as `key=`, from a Map or a record', () => {
    expect(formatPropertyBag({ application: { flag: null, empty: '', 'ünï': 'ç' } })).toBe('flag&empty=&%C3%BCn%C3%AF=%C3%A7')
    expect(formatPropertyBag({})).toBe('')
  })

  it('refuses application keys the parser would read back as something else', () => {
    for (const key of ['', '$.mid', '$.sub']) {
      expect(bagError(() => formatPropertyBag({ application: { [key]: 'x' } })).code).toBe('E_PROPERTY_BAG_INVALID')
    }
  })

  it('refuses a lone surrogate instead of throwing a URIError', () => {
    expect(bagError(() => formatPropertyBag({ application: { k: '\ud800' } })).code).toBe('E_PROPERTY_BAG_INVALID')
  })

  it('round-trips format -> parse', () => {
    const input: PropertyBagInput = {
      system: {
        messageId: 'm/1?&=',
        correlationId: 'c%1',
        userId: 'u',
        to: '/devices/x',
        contentType: 'application/json; charset=utf-8',
        contentEncoding: 'utf-8',
        expiryTimeUtc: '2030-01-01T00:00:00.000Z',
        interfaceId: 'dtmi:x;1',
        outputName: 'out',
      },
      application: new Map<string, string | null>([
        ['a b', 'c+d'],
        ['null', null],
        ['empty', ''],
        ['dt-subject', 'subj'],
        ['emoji 🚀', '値=1&2'],
        ["!'()*~", "!'()*~"],
      ]),
    }
    const parsed = parsePropertyBag(formatPropertyBag(input))
    expect(parsed.system).toEqual(input.system)
    expect([...parsed.application]).toEqual([...(input.application as Map<string, string | null>)])
  })
})
