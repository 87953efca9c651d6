import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../src/errors/catalogue.js'
import { hostsMatch, parseUsername, splitHostPort } from '../../../src/protocol/username.js'

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return (err as GatewayError).code
  }
  throw new Error('expected a GatewayError')
}

const UA = encodeURIComponent('azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)')

describe('parseUsername', () => {
  it('parses the SDK user name, port included (IoT Hub MQTT support, "Using the MQTT protocol directly (as a device)")', () => {
    expect(parseUsername(`localhost:8883/dev1/?api-version=2021-04-12&DeviceClientType=${UA}`)).toEqual({
      host: 'localhost:8883',
      deviceId: 'dev1',
      query: { 'api-version': '2021-04-12', DeviceClientType: 'azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)' },
    })
  })

  it('keeps model-id and unknown parameters, tolerating odd ones', () => {
    const parsed = parseUsername('hub.example.com/dev1/?api-version=2021-04-12&model-id=dtmi:com:example;1&DeviceClientType=x&flag&bad=%E0%A4&&__proto__=p')
    expect(parsed.query).toMatchObject({ 'model-id': 'dtmi:com:example;1', flag: '', bad: '%E0%A4', DeviceClientType: 'x' })
    expect(Object.getPrototypeOf(parsed.query)).toBe(Object.prototype)
    expect(Object.hasOwn(parsed.query, '__proto__')).toBe(true)
  })

  it('parses a module identity', () => {
    expect(parseUsername('hub/dev1/mod1/?api-version=2021-04-12')).toEqual({ host: 'hub', deviceId: 'dev1', moduleId: 'mod1', query: { 'api-version': '2021-04-12' } })
  })

  it('tolerates a missing `/?...` tail, with or without a trailing slash', () => {
    expect(parseUsername('hub/dev1')).toEqual({ host: 'hub', deviceId: 'dev1', query: {} })
    expect(parseUsername('hub/dev1/')).toEqual({ host: 'hub', deviceId: 'dev1', query: {} })
  })

  it('reads a user name without a slash as a bare device id', () => {
    expect(parseUsername('dev1')).toEqual({ host: null, deviceId: 'dev1', query: {} })
  })

  it('splits at the first `/?`, so ids may hold `?` and other IoT Hub id characters', () => {
    expect(parseUsername("hub/d$'(?x/?api-version=1").deviceId).toBe("d$'(?x")
    expect(parseUsername('dev?1').deviceId).toBe('dev?1')
  })

  it('accepts IPv6 and IPv4 literal hosts', () => {
    expect(parseUsername('[::1]:8883/dev1/?a=1').host).toBe('[::1]:8883')
    expect(parseUsername('127.0.0.1/dev1/?a=1').host).toBe('127.0.0.1')
  })

  it.each([
    ['undefined', undefined],
    ['empty', ''],
    ['empty device', 'hub//?api-version=1'],
    ['empty host', '/dev1/?api-version=1'],
    ['too many levels', 'hub/a/b/c/?x=1'],
    ['device id with a space', 'hub/dev 1/?x=1'],
    ['device id too long', `hub/${'d'.repeat(129)}/?x=1`],
    ['bad module id', 'hub/dev1/m#/?x=1'],
    ['host with user info', 'user@hub/dev1/?x=1'],
    ['host with a bad port', 'hub:88a/dev1/?x=1'],
    ['bare id with a trailing slash only', 'dev1/'],
    ['device id without host before `/?`', 'dev1/?api-version=1'],
    ['absurdly long', `hub/dev1/?x=${'a'.repeat(5000)}`],
  ])('refuses %s with E_AUTH_USERNAME_INVALID', (_label, username) => {
    expect(codeOf(() => parseUsername(username))).toBe('E_AUTH_USERNAME_INVALID')
  })
})

describe('hostsMatch', () => {
  it('compares host names case-insensitively', () => {
    expect(hostsMatch('MyHub.Azure-Devices.NET', 'myhub.azure-devices.net')).toBe(true)
    expect(hostsMatch('other.example', 'myhub.example')).toBe(false)
    expect(hostsMatch('', 'myhub.example')).toBe(false)
  })

  it('ignores a port named on one side only and refuses two different ports', () => {
    expect(hostsMatch('localhost:8883', 'localhost')).toBe(true)
    expect(hostsMatch('localhost', 'localhost:8883')).toBe(true)
    expect(hostsMatch('localhost:8883', 'localhost:8883')).toBe(true)
    expect(hostsMatch('localhost:8883', 'localhost:1883')).toBe(false)
    expect(hostsMatch('[::1]:8883', '[::1]')).toBe(true)
  })

  it('folds ASCII only (the Kelvin sign is not a k)', () => {
    expect(hostsMatch('\u212Aey', 'key')).toBe(false)
    expect(splitHostPort('[::1]:80')).toEqual({ name: '[::1]', port: '80' })
  })
})
