import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import azureDevice from 'azure-iot-device'
import { SharedAccessSignature as CommonSas, encodeUriComponentStrict as sdkStrict } from 'azure-iot-common'
import { GatewayError } from '../../../src/errors/catalogue.js'
import {
  buildConnectionString,
  encodeUriComponentStrict,
  generateSasToken,
  parseConnectionString,
  parseSasToken,
  signSas,
  verifySasToken,
  type SasVerifyOptions,
} from '../../../src/auth/sas.js'

const primary = randomBytes(32).toString('base64')
const secondary = randomBytes(32).toString('base64')
const NOW = 1_900_000_000

function opts(overrides: Partial<SasVerifyOptions> = {}): SasVerifyOptions {
  return { host: 'myhub.example', deviceId: 'dev1', keys: [primary, secondary], nowSeconds: NOW, clockSkewSeconds: 30, ...overrides }
}

function token(overrides: { host?: string; deviceId?: string; key?: string; expiresAt?: number } = {}): string {
  return generateSasToken({ host: 'myhub.example', deviceId: 'dev1', key: primary, expiresAt: NOW + 3600, ...overrides })
}

function errorOf(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }
  throw new Error('expected a GatewayError')
}

describe('generateSasToken', () => {
  it('produces exactly the token of the Azure device SDK (azure-iot-device SharedAccessSignature.create)', () => {
    for (const [host, deviceId] of [
      ['myhub.example', 'dev1'],
      ['localhost:8883', "d$'(*)!x"],
      ['MyHub.Azure-Devices.net', 'ünï code'],
    ] as const) {
      const sdk = azureDevice.SharedAccessSignature.create(host, deviceId, primary, NOW).toString()
      expect(generateSasToken({ host, deviceId, key: primary, expiresAt: NOW })).toBe(sdk)
    }
  })

  it('writes sr, sig, se in that order with strict encoding', () => {
    const t = generateSasToken({ host: 'localhost:8883', deviceId: 'dev1', key: primary, expiresAt: 123 })
    expect(t).toMatch(/^SharedAccessSignature sr=localhost%3A8883%2Fdevices%2Fdev1&sig=[A-Za-z0-9%]+&se=123$/)
  })

  it('strict-encodes like azure-iot-common (lower-case hex for ! \' ( ) *)', () => {
    const text = "a!b'c(d)e*f g/h"
    expect(encodeUriComponentStrict(text)).toBe(sdkStrict(text))
  })

  it('signs the raw sr + "\\n" + se like azure-iot-common SharedAccessSignature.create', () => {
    const sdk = CommonSas.create('myhub.example%2Fdevices%2Fdev1', null as unknown as string, primary, 42)
    expect(encodeUriComponentStrict(signSas('myhub.example%2Fdevices%2Fdev1', 42, primary))).toBe(sdk.sig)
  })

  it('refuses a non-integer expiry', () => {
    expect(errorOf(() => generateSasToken({ host: 'h', deviceId: 'd', key: primary, expiresAt: 1.5 })).code).toBe('E_BAD_REQUEST')
  })
})

describe('parseSasToken', () => {
  it('keeps the raw sr and decodes sr and sig', () => {
    const parsed = parseSasToken(token())
    expect(parsed.srRaw).toBe('myhub.example%2Fdevices%2Fdev1')
    expect(parsed.sr).toBe('myhub.example/devices/dev1')
    expect(parsed.se).toBe(NOW + 3600)
    expect(Buffer.from(parsed.sig, 'base64')).toHaveLength(32)
    expect(parsed.skn).toBeUndefined()
  })

  it('accepts any field order, skn, and unknown fields', () => {
    const parsed = parseSasToken('SharedAccessSignature se=10&skn=device%20key&x=y&sig=abc%3D&sr=h%2Fdevices%2Fd')
    expect(parsed).toEqual({ sr: 'h/devices/d', srRaw: 'h%2Fdevices%2Fd', sig: 'abc=', se: 10, skn: 'device key' })
  })

  it.each([
    ['no prefix', 'sr=a&sig=b&se=1'],
    ['wrong prefix case', 'sharedaccesssignature sr=a&sig=b&se=1'],
    ['empty body', 'SharedAccessSignature '],
    ['missing sr', 'SharedAccessSignature sig=b&se=1'],
    ['missing sig', 'SharedAccessSignature sr=a&se=1'],
    ['missing se', 'SharedAccessSignature sr=a&sig=b'],
    ['empty sig', 'SharedAccessSignature sr=a&sig=&se=1'],
    ['fractional se', 'SharedAccessSignature sr=a&sig=b&se=1.5'],
    ['negative se', 'SharedAccessSignature sr=a&sig=b&se=-1'],
    ['hex se', 'SharedAccessSignature sr=a&sig=b&se=0x10'],
    ['huge se', 'SharedAccessSignature sr=a&sig=b&se=99999999999999999999'],
    ['duplicate sr', 'SharedAccessSignature sr=a&sr=b&sig=b&se=1'],
    ['bad encoding', 'SharedAccessSignature sr=%E0%A4&sig=b&se=1'],
    ['white space', 'SharedAccessSignature sr=a &sig=b&se=1'],
    ['field without =', 'SharedAccessSignature sr=a&sig=b&se=1&junk'],
    ['too long', `SharedAccessSignature sr=${'a'.repeat(5000)}&sig=b&se=1`],
  ])('refuses %s with E_AUTH_TOKEN_MALFORMED', (_label, t) => {
    expect(errorOf(() => parseSasToken(t)).code).toBe('E_AUTH_TOKEN_MALFORMED')
  })
})

describe('verifySasToken', () => {
  it('accepts its own token with the primary key, and a secondary-key token as key 1', () => {
    expect(verifySasToken(token(), opts())).toEqual({ keyIndex: 0, expiresAt: NOW + 3600 })
    expect(verifySasToken(token({ key: secondary }), opts()).keyIndex).toBe(1)
  })

  it('accepts a token made by the real Azure SDK, host port included', () => {
    const sdk = azureDevice.SharedAccessSignature.create('localhost:8883', 'dev1', secondary, NOW + 60).toString()
    expect(verifySasToken(sdk, opts({ host: 'localhost:8883' })).keyIndex).toBe(1)
    // The configured host without a port matches a device-named host with one (hostsMatch).
    expect(verifySasToken(sdk, opts({ host: 'localhost' })).keyIndex).toBe(1)
  })

  it('verifies over the raw sr, not a re-encoded one', () => {
    // `'` left unencoded: a verifier that re-encoded the decoded sr would sign different bytes.
    const srRaw = "myhub.example%2Fdevices%2Fd'1"
    const t = `SharedAccessSignature sr=${srRaw}&sig=${encodeURIComponent(signSas(srRaw, NOW + 10, primary))}&se=${NOW + 10}`
    expect(verifySasToken(t, opts({ deviceId: "d'1" })).keyIndex).toBe(0)
  })

  it('compares the audience case-insensitively', () => {
    expect(verifySasToken(token({ host: 'MYHUB.example', deviceId: 'DEV1' }), opts()).keyIndex).toBe(0)
  })

  it('refuses an expired token, honouring the clock skew at its boundary', () => {
    const se = NOW - 30
    expect(errorOf(() => verifySasToken(token({ expiresAt: se }), opts())).code).toBe('E_AUTH_EXPIRED')
    expect(verifySasToken(token({ expiresAt: se + 1 }), opts()).keyIndex).toBe(0)
    expect(errorOf(() => verifySasToken(token({ expiresAt: NOW }), opts({ clockSkewSeconds: 0 }))).code).toBe('E_AUTH_EXPIRED')
    expect(verifySasToken(token({ expiresAt: NOW + 1 }), opts({ clockSkewSeconds: 0 })).keyIndex).toBe(0)
  })

  it.each([
    ['another device', { deviceId: 'dev2' }],
    ['a device whose id ends like ours', { deviceId: 'xdev1' }],
    ['an empty device id', { deviceId: '' }],
    ['another host', { host: 'evil.example' }],
    ['another port', { host: 'myhub.example:9999' }],
  ])('refuses a token for %s with E_AUTH_AUDIENCE', (_label, o: { deviceId?: string; host?: string }) => {
    expect(errorOf(() => verifySasToken(token(o), opts({ host: 'myhub.example:8883' }))).code).toBe('E_AUTH_AUDIENCE')
  })

  it('refuses an sr with a trailing slash or without the devices path', () => {
    for (const sr of ['myhub.example/devices/dev1/', 'myhub.example', 'myhub.example/devices/dev1/modules/m']) {
      const raw = encodeUriComponentStrict(sr)
      const t = `SharedAccessSignature sr=${raw}&sig=${encodeUriComponentStrict(signSas(raw, NOW + 60, primary))}&se=${NOW + 60}`
      expect(errorOf(() => verifySasToken(t, opts())).code).toBe('E_AUTH_AUDIENCE')
    }
  })

  it('verifies module tokens only when a module is expected', () => {
    const t = generateSasToken({ host: 'myhub.example', deviceId: 'dev1', moduleId: 'm1', key: primary, expiresAt: NOW + 60 })
    expect(verifySasToken(t, opts({ moduleId: 'm1' })).keyIndex).toBe(0)
    expect(errorOf(() => verifySasToken(t, opts())).code).toBe('E_AUTH_AUDIENCE')
  })

  it('refuses a wrong key, a tampered signature and a tampered expiry with E_AUTH_SIGNATURE', () => {
    expect(errorOf(() => verifySasToken(token({ key: randomBytes(32).toString('base64') }), opts())).code).toBe('E_AUTH_SIGNATURE')
    const t = token()
    const sig = parseSasToken(t).sig
    const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)
    expect(errorOf(() => verifySasToken(t.replace(/sig=[^&]+/, `sig=${encodeURIComponent(flipped)}`), opts())).code).toBe('E_AUTH_SIGNATURE')
    expect(errorOf(() => verifySasToken(t.replace(/sig=[^&]+/, 'sig=abc'), opts())).code).toBe('E_AUTH_SIGNATURE')
    // Stray characters that base64 decoding would skip do not pass either.
    expect(errorOf(() => verifySasToken(t.replace(/(sig=[^&]+)/, '$1!!'), opts())).code).toBe('E_AUTH_SIGNATURE')
    expect(errorOf(() => verifySasToken(t.replace(/sig=([^&]+)/, 'sig=%20$1'), opts())).code).toBe('E_AUTH_SIGNATURE')
    expect(errorOf(() => verifySasToken(t.replace(/se=\d+/, `se=${NOW + 7200}`), opts())).code).toBe('E_AUTH_SIGNATURE')
    expect(errorOf(() => verifySasToken(t, opts({ keys: [] }))).code).toBe('E_AUTH_SIGNATURE')
    expect(errorOf(() => verifySasToken(t, opts({ keys: ['', secondary] }))).code).toBe('E_AUTH_SIGNATURE')
  })

  it('never puts the token, signature or key into errors', () => {
    const t = token({ key: randomBytes(32).toString('base64') })
    for (const [fn, code] of [
      [() => verifySasToken(t, opts({ keys: [primary] })), 'E_AUTH_SIGNATURE'],
      [() => verifySasToken(t.replace('se=', 'se=x'), opts()), 'E_AUTH_TOKEN_MALFORMED'],
      [() => verifySasToken(t, opts({ nowSeconds: NOW + 10_000 })), 'E_AUTH_EXPIRED'],
      [() => verifySasToken(t, opts({ deviceId: 'other' })), 'E_AUTH_AUDIENCE'],
    ] as const) {
      const err = errorOf(fn)
      expect(err.code).toBe(code)
      const text = `${err.message} ${JSON.stringify(err.details ?? {})}`
      const parsedSig = parseSasToken(t).sig
      for (const secret of [t, parsedSig, encodeURIComponent(parsedSig), primary, secondary]) expect(text).not.toContain(secret)
    }
  })
})

describe('connection strings', () => {
  it('builds a string the Azure SDK parses, and parses it back', () => {
    const cs = buildConnectionString({ host: 'localhost:8883', deviceId: 'dev1', key: primary })
    expect(cs).toBe(`HostName=localhost:8883;DeviceId=dev1;SharedAccessKey=${primary}`)
    expect(azureDevice.ConnectionString.parse(cs)).toMatchObject({ HostName: 'localhost:8883', DeviceId: 'dev1', SharedAccessKey: primary })
    expect(parseConnectionString(cs)).toEqual({ hostName: 'localhost:8883', deviceId: 'dev1', sharedAccessKey: primary, x509: false })
  })

  it('adds GatewayHostName when given', () => {
    const cs = buildConnectionString({ host: 'hub.example', deviceId: 'd', key: 'a2V5', gatewayHost: 'localhost' })
    expect(parseConnectionString(cs)).toMatchObject({ hostName: 'hub.example', gatewayHostName: 'localhost' })
  })

  it('parses every field the SDK knows, x509 and SAS forms', () => {
    expect(parseConnectionString('HostName=h;DeviceId=d;ModuleId=m;x509=true;Unknown=1')).toEqual({ hostName: 'h', deviceId: 'd', moduleId: 'm', x509: true })
    const sas = 'SharedAccessSignature sr=h%2Fdevices%2Fd&sig=a%3D&se=1'
    expect(parseConnectionString(`HostName=h;DeviceId=d;SharedAccessSignature=${sas}`).sharedAccessSignature).toBe(sas)
    expect(parseConnectionString('HostName=h;DeviceId=d;SharedAccessKeyName=k;SharedAccessKey=YQ==').sharedAccessKeyName).toBe('k')
  })

  it.each([
    ['no HostName', 'DeviceId=d;SharedAccessKey=a'],
    ['no DeviceId', 'HostName=h;SharedAccessKey=a'],
    ['no credentials', 'HostName=h;DeviceId=d'],
    ['key and x509', 'HostName=h;DeviceId=d;SharedAccessKey=a;x509=true'],
    ['empty', ''],
  ])('refuses %s', (_label, cs) => {
    expect(errorOf(() => parseConnectionString(cs)).code).toBe('E_BAD_REQUEST')
  })

  it('refuses parts that would break the format', () => {
    expect(errorOf(() => buildConnectionString({ host: 'h;x=1', deviceId: 'd', key: 'k' })).code).toBe('E_BAD_REQUEST')
    expect(errorOf(() => buildConnectionString({ host: 'h', deviceId: '', key: 'k' })).code).toBe('E_BAD_REQUEST')
  })
})
