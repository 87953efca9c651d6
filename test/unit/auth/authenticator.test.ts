import { randomBytes } from 'node:crypto'
import { beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { addressKey, Authenticator, CONNECT_STEPS, createAuthenticator, type ConnectInput } from '../../../src/auth/authenticator.js'
import { hashPassword, verifyPassword } from '../../../src/auth/password.js'
import { FailureLimiter } from '../../../src/auth/rate-limit.js'
import { generateSasToken } from '../../../src/auth/sas.js'
import { configSchema } from '../../../src/config/schema.js'
import { GatewayError } from '../../../src/errors/catalogue.js'
import type { Device, DeviceRegistry } from '../../../src/registry/types.js'

// Count scrypt runs without changing them (timing equalisation for unknown devices).
vi.mock('../../../src/auth/password.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../../src/auth/password.js')>()
  return { ...actual, verifyPassword: vi.fn(actual.verifyPassword) }
})

/** In-memory stand-in for the DeviceRegistry port; only `get` is used by the flow. */
class FakeRegistry implements Pick<DeviceRegistry, 'get'> {
  readonly devices = new Map<string, Device>()
  lookups = 0
  failWith: Error | null = null

  async get(deviceId: string): Promise<Device | null> {
    this.lookups += 1
    if (this.failWith) throw this.failWith
    return this.devices.get(deviceId) ?? null
  }

  add(deviceId: string, extra: Partial<Device> = {}): Device {
    const at = new Date(0).toISOString()
    const device: Device = {
      deviceId,
      status: 'enabled',
      authMethod: 'sas',
      primaryKey: randomBytes(32).toString('base64'),
      secondaryKey: randomBytes(32).toString('base64'),
      passwordHash: null,
      x509Thumbprint: null,
      createdAt: at,
      updatedAt: at,
      lastActivityAt: null,
      connectionState: 'disconnected',
      connectionStateUpdatedAt: null,
      connectionSeq: 0,
      ...extra,
    }
    this.devices.set(deviceId, device)
    return device
  }
}

const HOST = 'gw.example.com'
const UA = encodeURIComponent('azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)')
const T0 = 1_900_000_000_000
const WINDOW_MS = 60_000

let passwordHash: string

beforeAll(async () => {
  passwordHash = await hashPassword('correct horse battery')
})

describe('Authenticator', () => {
  let registry: FakeRegistry
  let time: number
  let auth: Authenticator
  let limiters: { address: FailureLimiter; device: FailureLimiter }
  let dev: Device
  let pwd: Device

  const now = (): number => time
  const sas = (device: Device, o: { host?: string; deviceId?: string; key?: string; ttl?: number } = {}): string =>
    generateSasToken({
      host: o.host ?? HOST,
      deviceId: o.deviceId ?? device.deviceId,
      key: o.key ?? device.primaryKey,
      expiresAt: Math.floor(time / 1000) + (o.ttl ?? 3600),
    })
  const attempt = (deviceId: string, password: string | undefined, o: Partial<ConnectInput> = {}): ConnectInput => ({
    clientId: deviceId,
    username: `${HOST}/${deviceId}/?api-version=2021-04-12&DeviceClientType=${UA}`,
    password: password === undefined ? undefined : Buffer.from(password),
    remoteAddress: '192.0.2.10',
    ...o,
  })
  async function refusal(input: ConnectInput): Promise<GatewayError> {
    const err = await auth.authenticate(input).then(
      () => new Error('expected a refusal'),
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(GatewayError)
    return err as GatewayError
  }

  beforeEach(() => {
    time = T0
    registry = new FakeRegistry()
    limiters = {
      address: new FailureLimiter({ maxFailures: 5, windowMs: WINDOW_MS, now }),
      device: new FailureLimiter({ maxFailures: 3, windowMs: WINDOW_MS, now }),
    }
    auth = new Authenticator({ registry, hostname: HOST, clockSkewSeconds: 30, limiters, now })
    dev = registry.add('dev1')
    pwd = registry.add('pwd1', { authMethod: 'password', passwordHash })
    vi.mocked(verifyPassword).mockClear()
  })

  it('runs its steps in the documented order', () => {
    expect(CONNECT_STEPS.map((s) => s.name)).toEqual([
      'rate-limit',
      'parse-username',
      'client-id',
      'hostname',
      'read-credentials',
      'load-device',
      'verify-credentials',
    ])
  })

  describe('SAS tokens', () => {
    it('accepts a valid primary-key token, reporting device, method and expiry', async () => {
      const result = await auth.authenticate(attempt('dev1', sas(dev)))
      expect(result).toEqual({ device: dev, deviceId: 'dev1', method: 'sas-primary', tokenExpiresAt: T0 / 1000 + 3600 })
    })

    it('accepts a secondary-key token', async () => {
      expect((await auth.authenticate(attempt('dev1', sas(dev, { key: dev.secondaryKey })))).method).toBe('sas-secondary')
    })

    it('accepts the SDK form with a port in HostName, and a bare device id user name', async () => {
      const token = sas(dev, { host: `${HOST}:8883` })
      const username = `${HOST}:8883/dev1/?api-version=2021-04-12&DeviceClientType=${UA}`
      expect((await auth.authenticate(attempt('dev1', token, { username }))).method).toBe('sas-primary')
      expect((await auth.authenticate(attempt('dev1', sas(dev), { username: 'dev1' }))).method).toBe('sas-primary')
    })

    it.each([
      ['expired (past the 30 s skew)', 'E_AUTH_EXPIRED', { ttl: -30 }],
      ['for another device', 'E_AUTH_AUDIENCE', { deviceId: 'dev2' }],
      ['for another host', 'E_AUTH_AUDIENCE', { host: 'evil.example' }],
      ['signed with a wrong key', 'E_AUTH_SIGNATURE', { key: randomBytes(32).toString('base64') }],
    ])('refuses a token %s with %s (CONNACK 5)', async (_label, code, options) => {
      const err = await refusal(attempt('dev1', sas(dev, options)))
      expect(err.code).toBe(code)
      expect(err.returnCode).toBe(5)
    })

    it('accepts a token within the clock skew', async () => {
      expect((await auth.authenticate(attempt('dev1', sas(dev, { ttl: -29 })))).method).toBe('sas-primary')
    })

    it('refuses a malformed token before looking the device up (same answer, known or not)', async () => {
      for (const id of ['dev1', 'ghost']) {
        const err = await refusal(attempt(id, 'SharedAccessSignature sr=x&se=1'))
        expect(err.code).toBe('E_AUTH_TOKEN_MALFORMED')
        expect(err.returnCode).toBe(4)
      }
      expect(registry.lookups).toBe(0)
    })

    it('never puts the token or a key into the error', async () => {
      const token = sas(dev, { key: randomBytes(32).toString('base64') })
      const err = await refusal(attempt('dev1', token))
      const text = `${err.message} ${JSON.stringify(err.details ?? {})}`
      for (const secret of [token, dev.primaryKey, dev.secondaryKey]) expect(text).not.toContain(secret)
    })
  })

  describe('device state', () => {
    it('refuses an unknown device with E_DEVICE_NOT_FOUND and a disabled one with E_DEVICE_DISABLED, both CONNACK 5 like a bad token', async () => {
      const ghost = { ...dev, deviceId: 'ghost' }
      const unknown = await refusal(attempt('ghost', sas(ghost)))
      expect(unknown.code).toBe('E_DEVICE_NOT_FOUND')
      registry.add('off', { status: 'disabled' })
      const disabled = await refusal(attempt('off', sas(registry.devices.get('off')!)))
      expect(disabled.code).toBe('E_DEVICE_DISABLED')
      const badSig = await refusal(attempt('dev1', sas(dev, { key: randomBytes(32).toString('base64') })))
      expect(new Set([unknown.returnCode, disabled.returnCode, badSig.returnCode])).toEqual(new Set([5]))
    })

    it('runs one scrypt for a password attempt on an unknown or disabled device, so timing does not tell', async () => {
      registry.add('off', { status: 'disabled', passwordHash })
      expect((await refusal(attempt('ghost', 'guess'))).code).toBe('E_DEVICE_NOT_FOUND')
      expect((await refusal(attempt('off', 'correct horse battery'))).code).toBe('E_DEVICE_DISABLED')
      expect(verifyPassword).toHaveBeenCalledTimes(2)
    })

    it('answers E_INTERNAL (CONNACK 3) when the registry fails, without counting a failure', async () => {
      registry.failWith = new Error('disk on fire')
      for (let i = 0; i < 5; i++) {
        const err = await refusal(attempt('dev1', sas(dev)))
        expect(err.code).toBe('E_INTERNAL')
        expect(err.returnCode).toBe(3)
      }
      expect(limiters.device.size + limiters.address.size).toBe(0)
    })
  })

  describe('identity checks', () => {
    it('refuses a client id other than the device id with CONNACK 2', async () => {
      const err = await refusal(attempt('dev1', sas(dev), { clientId: 'dev2' }))
      expect(err.code).toBe('E_AUTH_CLIENT_ID_MISMATCH')
      expect(err.returnCode).toBe(2)
      expect((await refusal(attempt('dev1', sas(dev), { clientId: '' }))).code).toBe('E_AUTH_CLIENT_ID_MISMATCH')
    })

    it('refuses a user name naming another host, a module, or nothing', async () => {
      const other = await refusal(attempt('dev1', sas(dev), { username: 'other.example/dev1/?api-version=2021-04-12' }))
      expect(other.code).toBe('E_AUTH_USERNAME_INVALID')
      expect(other.details).toMatchObject({ reason: 'host' })
      expect((await refusal(attempt('dev1', sas(dev), { username: `${HOST}/dev1/m1/?x=1`, clientId: 'dev1/m1' }))).details).toMatchObject({
        reason: 'module',
      })
      const none = await refusal(attempt('dev1', sas(dev), { username: undefined }))
      expect(none.code).toBe('E_AUTH_USERNAME_INVALID')
      expect(none.returnCode).toBe(4)
    })

    it('refuses two different ports when the configured host names one', async () => {
      const strict = new Authenticator({ registry, hostname: `${HOST}:8883`, clockSkewSeconds: 30, limiters, now })
      const username = `${HOST}:1883/dev1/?x=1`
      const err = await strict.authenticate(attempt('dev1', sas(dev, { host: `${HOST}:1883` }), { username })).catch((e: unknown) => e)
      expect((err as GatewayError).code).toBe('E_AUTH_USERNAME_INVALID')
    })
  })

  describe('passwords', () => {
    it('accepts the right password', async () => {
      expect(await auth.authenticate(attempt('pwd1', 'correct horse battery'))).toEqual({ device: pwd, deviceId: 'pwd1', method: 'password' })
    })

    it('refuses a wrong password, and any password for a device without one, with E_AUTH_PASSWORD', async () => {
      expect((await refusal(attempt('pwd1', 'wrong horse'))).code).toBe('E_AUTH_PASSWORD')
      expect((await refusal(attempt('dev1', 'anything'))).code).toBe('E_AUTH_PASSWORD')
      // The password-less device still costs one scrypt, like a real check.
      expect(verifyPassword).toHaveBeenCalledTimes(2)
    })

    it('refuses a SAS token for a password device, even one made with its keys', async () => {
      const err = await refusal(attempt('pwd1', sas(pwd)))
      expect(err.code).toBe('E_AUTH_METHOD')
      expect(err.returnCode).toBe(5)
    })

    it('refuses a CONNECT without a password, or with an empty one, before any lookup', async () => {
      for (const password of [undefined, '']) {
        for (const id of ['dev1', 'ghost']) {
          const err = await refusal(attempt(id, password))
          expect(err.code).toBe('E_AUTH_CREDENTIALS_MISSING')
          expect(err.returnCode).toBe(4)
        }
      }
      expect(registry.lookups).toBe(0)
    })
  })

  describe('rate limiting', () => {
    it('refuses even correct credentials for a device after N failures, until the window passes', async () => {
      for (let i = 0; i < 3; i++) expect((await refusal(attempt('pwd1', `wrong ${i}`))).code).toBe('E_AUTH_PASSWORD')
      const limited = await refusal(attempt('pwd1', 'correct horse battery'))
      expect(limited.code).toBe('E_AUTH_RATE_LIMITED')
      expect(limited.returnCode).toBe(3)
      expect(limited.details).toEqual({ limiter: 'device' })
      // Another device from the same address is not affected by the per-device limit.
      expect((await auth.authenticate(attempt('dev1', sas(dev)))).method).toBe('sas-primary')
      time += WINDOW_MS - 1
      expect((await refusal(attempt('pwd1', 'correct horse battery'))).code).toBe('E_AUTH_RATE_LIMITED')
      time += 1
      expect((await auth.authenticate(attempt('pwd1', 'correct horse battery'))).method).toBe('password')
    })

    it('lets at most N parallel guesses at one device reach the password check', async () => {
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, (_, i) => auth.authenticate(attempt('pwd1', `guess ${i}`)).catch((e: GatewayError) => e.code)),
      )
      expect(outcomes.filter((c) => c === 'E_AUTH_PASSWORD')).toHaveLength(3)
      expect(outcomes.filter((c) => c === 'E_AUTH_RATE_LIMITED')).toHaveLength(7)
      expect(verifyPassword).toHaveBeenCalledTimes(3)
    })

    it('does not count successful attempts', async () => {
      await refusal(attempt('pwd1', 'wrong 1'))
      await refusal(attempt('pwd1', 'wrong 2'))
      for (let i = 0; i < 5; i++) expect((await auth.authenticate(attempt('pwd1', 'correct horse battery'))).method).toBe('password')
      await refusal(attempt('pwd1', 'wrong 3'))
      expect((await refusal(attempt('pwd1', 'correct horse battery'))).code).toBe('E_AUTH_RATE_LIMITED')
    })

    it('refuses an address after N failures across device ids, other addresses unaffected', async () => {
      for (let i = 0; i < 5; i++) {
        const id = `ghost-${i}`
        expect((await refusal(attempt(id, sas({ ...dev, deviceId: id })))).code).toBe('E_DEVICE_NOT_FOUND')
      }
      const lookups = registry.lookups
      const limited = await refusal(attempt('dev1', sas(dev)))
      expect(limited.code).toBe('E_AUTH_RATE_LIMITED')
      expect(limited.details).toEqual({ limiter: 'address' })
      expect(registry.lookups).toBe(lookups) // refused before any lookup or crypto
      expect((await auth.authenticate(attempt('dev1', sas(dev), { remoteAddress: '192.0.2.11' }))).method).toBe('sas-primary')
      time += WINDOW_MS
      expect((await auth.authenticate(attempt('dev1', sas(dev)))).method).toBe('sas-primary')
    })

    it('counts every kind of identity or credential failure', async () => {
      const codes = [
        await refusal(attempt('a1', sas(dev), { clientId: 'a1x' })),
        await refusal(attempt('a2', undefined)),
        await refusal(attempt('a3', 'SharedAccessSignature junk')),
        await refusal(attempt('a4', sas(dev), { username: 'other.example/a4/?x=1' })),
        await refusal(attempt('a5', sas(dev), { username: 'a/b/c/d/e' })),
      ].map((e) => e.code)
      expect(codes).toEqual(['E_AUTH_CLIENT_ID_MISMATCH', 'E_AUTH_CREDENTIALS_MISSING', 'E_AUTH_TOKEN_MALFORMED', 'E_AUTH_USERNAME_INVALID', 'E_AUTH_USERNAME_INVALID'])
      expect((await refusal(attempt('dev1', sas(dev)))).details).toEqual({ limiter: 'address' })
    })

    it('counts IPv6 clients per /64', async () => {
      for (let i = 1; i <= 5; i++) {
        const id = `ghost${i}`
        await refusal(attempt(id, sas({ ...dev, deviceId: id }), { remoteAddress: `2001:db8:1:2::${i}` }))
      }
      expect((await refusal(attempt('dev1', sas(dev), { remoteAddress: '2001:db8:1:2:ffff::9' }))).details).toEqual({ limiter: 'address' })
      expect((await auth.authenticate(attempt('dev1', sas(dev), { remoteAddress: '2001:db8:1:3::1' }))).method).toBe('sas-primary')
    })
  })

  it('is built from config defaults by createAuthenticator', async () => {
    const config = configSchema.parse({ hostname: HOST })
    const built = createAuthenticator(config, registry, now)
    expect((await built.authenticate(attempt('dev1', sas(dev)))).method).toBe('sas-primary')
    for (let i = 0; i < config.auth.maxFailuresPerDevice; i++) await built.authenticate(attempt('dev1', 'nope')).catch(() => undefined)
    expect((await built.authenticate(attempt('dev1', sas(dev))).catch((e: GatewayError) => e)) as GatewayError).toMatchObject({
      code: 'E_AUTH_RATE_LIMITED',
    })
  })
})

describe('addressKey', () => {
  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:0db8:0001:0002:0003:0004:0005:0006', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['unknown', 'unknown'],
  ])('maps %s to %s', (address, key) => {
    expect(addressKey(address)).toBe(key)
  })
})
