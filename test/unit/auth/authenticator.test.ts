import { X509Certificate, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { Authenticator, CONNECT_STEPS, type ConnectInput } from '../../../src/auth/authenticator.js'
import { addressKey } from '../../../src/auth/address-key.js'
import { hashPassword, verifyPassword } from '../../../src/auth/password.js'
import type { PasswordGuard } from '../../../src/auth/password-guard.js'
import { selfSignedDeviceCert } from '../../../src/app/dev-certs.js'
import type { GatewayError } from '../../../src/errors/catalogue.js'
import type { Device } from '../../../src/registry/types.js'
import { attempt, FakeRegistry, HOST, PASSWORD, refusal as refusedBy, reportingGuard, sasFor, T0, UA } from './fixtures.js'

// Count scrypt runs without changing them (timing equalisation for unknown devices).
vi.mock('../../../src/auth/password.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../../src/auth/password.js')>()
  return { ...actual, verifyPassword: vi.fn(actual.verifyPassword) }
})

let passwordHash: string
const certDir = mkdtempSync(join(tmpdir(), 'streamgate-auth-flow-'))
/** Any client certificate: the oracle tests need one that no SAS or password device uses. */
let anyCert: X509Certificate

beforeAll(async () => {
  passwordHash = await hashPassword(PASSWORD)
  anyCert = new X509Certificate(readFileSync((await selfSignedDeviceCert('stranger', certDir, 30)).cert))
})
afterAll(() => rmSync(certDir, { recursive: true, force: true }))

describe('Authenticator', () => {
  let registry: FakeRegistry
  let time: number
  let auth: Authenticator
  let guard: PasswordGuard
  let checks: () => number
  let dev: Device
  let pwd: Device

  const now = (): number => time
  const sas = (device: Device, o: { host?: string; deviceId?: string; key?: string; ttl?: number } = {}): string => sasFor(device, time, o)
  const refusal = (input: ConnectInput): Promise<GatewayError> => refusedBy(auth, input)

  beforeEach(() => {
    time = T0
    registry = new FakeRegistry()
    ;({ guard, checks } = reportingGuard(now))
    auth = new Authenticator({ registry, hostname: HOST, clockSkewSeconds: 30, passwords: guard, now })
    dev = registry.add('dev1')
    pwd = registry.add('pwd1', { authMethod: 'password', passwordHash })
    vi.mocked(verifyPassword).mockClear()
  })

  it('runs its steps in the documented order', () => {
    expect(CONNECT_STEPS.map((s) => s.name)).toEqual([
      'parse-username',
      'client-id',
      'hostname',
      'read-credentials',
      'password-admission',
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

    it('runs one scrypt, through the password check gate, for a password attempt on an unknown or disabled device', async () => {
      registry.add('off', { status: 'disabled', passwordHash })
      expect((await refusal(attempt('ghost', 'guess'))).code).toBe('E_DEVICE_NOT_FOUND')
      expect((await refusal(attempt('off', PASSWORD))).code).toBe('E_DEVICE_DISABLED')
      expect(verifyPassword).toHaveBeenCalledTimes(2)
      expect(checks()).toBe(2)
    })

    it('answers E_INTERNAL (CONNACK 3) when the registry fails, without counting a failure', async () => {
      registry.failWith = new Error('disk on fire')
      // More attempts than the per-pair budget (3): none is charged.
      for (let i = 0; i < 5; i++) {
        for (const input of [attempt('dev1', sas(dev)), attempt('pwd1', PASSWORD)]) {
          const err = await refusal(input)
          expect(err.code).toBe('E_INTERNAL')
          expect(err.returnCode).toBe(3)
        }
      }
      expect(guard.pairs.size + guard.addresses.size).toBe(0)
      expect(guard.gate.stats).toEqual({ running: 0, waiting: 0 })
      registry.failWith = null
      expect((await auth.authenticate(attempt('pwd1', PASSWORD))).method).toBe('password')
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
      const strict = new Authenticator({ registry, hostname: `${HOST}:8883`, clockSkewSeconds: 30, passwords: guard, now })
      const username = `${HOST}:1883/dev1/?x=1`
      const err = await strict.authenticate(attempt('dev1', sas(dev, { host: `${HOST}:1883` }), { username })).catch((e: unknown) => e)
      expect((err as GatewayError).code).toBe('E_AUTH_USERNAME_INVALID')
    })
  })

  describe('passwords', () => {
    it('accepts the right password', async () => {
      expect(await auth.authenticate(attempt('pwd1', PASSWORD))).toEqual({ device: pwd, deviceId: 'pwd1', method: 'password' })
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

  describe('not telling which devices exist', () => {
    const withCert = (deviceId: string): ConnectInput => attempt(deviceId, undefined, { peerCertificate: anyCert })

    it('answers a SAS or password device that presents a certificate and no password like an unknown device', async () => {
      const unknown = await refusal(withCert('ghost'))
      expect(unknown.code).toBe('E_DEVICE_NOT_FOUND')
      for (const id of ['dev1', 'pwd1']) {
        const err = await refusal(withCert(id))
        // A distinct code for the log, the same CONNACK for the device.
        expect(err.code).toBe('E_AUTH_METHOD')
        expect(err.returnCode).toBe(unknown.returnCode)
      }
      expect(unknown.returnCode).toBe(5)
      expect(verifyPassword).not.toHaveBeenCalled()
    })

    it('costs an X.509 device offered a password the same one scrypt an unknown device costs, and answers 5', async () => {
      registry.add('cam1', { authMethod: 'x509-thumbprint', x509Thumbprint: 'AB'.repeat(32) })
      const x509 = await refusal(attempt('cam1', 'guess'))
      expect(x509.code).toBe('E_AUTH_CERT_UNTRUSTED')
      const unknown = await refusal(attempt('ghost', 'guess'))
      expect([x509.returnCode, unknown.returnCode]).toEqual([5, 5])
      expect(verifyPassword).toHaveBeenCalledTimes(2)
    })

    it('gives every registry-dependent password outcome CONNACK 5 after exactly one check', async () => {
      registry.add('off', { status: 'disabled', passwordHash })
      const inputs = [attempt('ghost', 'guess'), attempt('off', 'guess'), attempt('pwd1', 'guess'), attempt('dev1', 'guess')]
      const errors = []
      for (const input of inputs) errors.push(await refusal({ ...input, remoteAddress: `192.0.2.${20 + errors.length}` }))
      expect(errors.map((e) => e.code)).toEqual(['E_DEVICE_NOT_FOUND', 'E_DEVICE_DISABLED', 'E_AUTH_PASSWORD', 'E_AUTH_PASSWORD'])
      expect(new Set(errors.map((e) => e.returnCode))).toEqual(new Set([5]))
      expect(checks()).toBe(inputs.length)
    })

    it('limits password guesses at an unknown device exactly like those at a registered one', async () => {
      for (const [id, failure] of [['ghost', 'E_DEVICE_NOT_FOUND'], ['pwd1', 'E_AUTH_PASSWORD']]) {
        const codes = []
        for (let i = 0; i < 4; i++) codes.push((await refusal(attempt(id!, `guess ${i}`))).code)
        expect(codes).toEqual([failure, failure, failure, 'E_AUTH_RATE_LIMITED'])
      }
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
