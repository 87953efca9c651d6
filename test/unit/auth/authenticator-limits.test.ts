import { randomBytes } from 'node:crypto'
import { beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { Authenticator, type ConnectInput } from '../../../src/auth/authenticator.js'
import { createAuthenticator } from '../../../src/auth/create-authenticator.js'
import { hashPassword, verifyPassword } from '../../../src/auth/password.js'
import type { PasswordGuardOptions, PasswordRefusal } from '../../../src/auth/password-guard.js'
import { configSchema } from '../../../src/config/schema.js'
import type { GatewayError } from '../../../src/errors/catalogue.js'
import { GatewayMetrics } from '../../../src/observability/metrics.js'
import type { Device } from '../../../src/registry/types.js'
import { attempt, FakeRegistry, HOST, outcome, PASSWORD, refusal as refusedBy, reportingGuard, sasFor, T0, WINDOW_MS } from './fixtures.js'

// Count scrypt runs without changing them.
vi.mock('../../../src/auth/password.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../../src/auth/password.js')>()
  return { ...actual, verifyPassword: vi.fn(actual.verifyPassword) }
})

/**
 * The failed-login limits through the whole CONNECT flow (real scrypt): a valid credential is
 * never refused for somebody else's failures, guessing a password is bounded per (address,
 * device) pair, and password checks are admitted through a bounded, fair queue.
 */
let passwordHash: string
beforeAll(async () => {
  passwordHash = await hashPassword(PASSWORD)
})

describe('failed-login limits in the CONNECT flow', () => {
  let registry: FakeRegistry
  let time: number
  let auth: Authenticator
  let refused: PasswordRefusal[]
  let dev: Device

  const now = (): number => time
  const refusal = (input: ConnectInput): Promise<GatewayError> => refusedBy(auth, input)
  const from = (remoteAddress: string) => ({ remoteAddress })
  const build = (options: Partial<PasswordGuardOptions> = {}): void => {
    const made = reportingGuard(now, options)
    refused = made.refused
    auth = new Authenticator({ registry, hostname: HOST, clockSkewSeconds: 30, passwords: made.guard, now })
  }

  beforeEach(() => {
    time = T0
    registry = new FakeRegistry()
    dev = registry.add('dev1')
    registry.add('pwd1', { authMethod: 'password', passwordHash })
    registry.add('pwd2', { authMethod: 'password', passwordHash })
    build()
    vi.mocked(verifyPassword).mockClear()
  })

  it('always checks SAS tokens: bad tokens from many addresses and one do not lock the device out', async () => {
    const badKey = randomBytes(32).toString('base64')
    for (let i = 0; i < 10; i++) expect((await refusal(attempt('dev1', sasFor(dev, time, { key: badKey }), from(`198.51.100.${i}`)))).code).toBe('E_AUTH_SIGNATURE')
    for (let i = 0; i < 25; i++) await refusal(attempt('dev1', sasFor(dev, time, { key: badKey }), from('198.51.100.99')))
    expect(await outcome(auth, attempt('dev1', sasFor(dev, time), from('198.51.100.200')))).toBe('sas-primary')
    expect(await outcome(auth, attempt('dev1', sasFor(dev, time), from('198.51.100.99')))).toBe('sas-primary')
    expect(refused).toEqual([])
  })

  it("refuses one address's password attempts at one device after N failures, and nobody else's", async () => {
    for (let i = 0; i < 3; i++) expect((await refusal(attempt('pwd1', `wrong ${i}`))).code).toBe('E_AUTH_PASSWORD')
    const checked = vi.mocked(verifyPassword).mock.calls.length
    const limited = await refusal(attempt('pwd1', PASSWORD))
    expect(limited.code).toBe('E_AUTH_RATE_LIMITED')
    expect(limited.returnCode).toBe(3)
    expect(vi.mocked(verifyPassword).mock.calls.length, 'refused unchecked').toBe(checked)
    expect(refused).toEqual(['rate-limited'])
    // The same device from another address, and that address for another device or a SAS device.
    expect(await outcome(auth, attempt('pwd1', PASSWORD, from('192.0.2.11')))).toBe('password')
    expect(await outcome(auth, attempt('pwd2', PASSWORD))).toBe('password')
    expect(await outcome(auth, attempt('dev1', sasFor(dev, time)))).toBe('sas-primary')
    time += WINDOW_MS - 1
    expect(await outcome(auth, attempt('pwd1', PASSWORD))).toBe('E_AUTH_RATE_LIMITED')
    time += 1
    expect(await outcome(auth, attempt('pwd1', PASSWORD))).toBe('password')
  })

  it('lets at most N parallel guesses of one address at one device reach the check', async () => {
    const guesses = Array.from({ length: 10 }, (_, i) => outcome(auth, attempt('pwd1', `guess ${i}`)))
    const elsewhere = outcome(auth, attempt('pwd1', PASSWORD, from('192.0.2.77')))
    const codes = await Promise.all(guesses)
    expect(codes.filter((c) => c === 'E_AUTH_PASSWORD')).toHaveLength(3)
    expect(codes.filter((c) => c === 'E_AUTH_RATE_LIMITED')).toHaveLength(7)
    expect(await elsewhere).toBe('password')
    expect(verifyPassword).toHaveBeenCalledTimes(4)
  })

  it('does not count accepted attempts', async () => {
    await refusal(attempt('pwd1', 'wrong 1'))
    await refusal(attempt('pwd1', 'wrong 2'))
    for (let i = 0; i < 5; i++) expect(await outcome(auth, attempt('pwd1', PASSWORD))).toBe('password')
    await refusal(attempt('pwd1', 'wrong 3'))
    expect(await outcome(auth, attempt('pwd1', PASSWORD))).toBe('E_AUTH_RATE_LIMITED')
  })

  it('counts IPv6 sources per /64', async () => {
    for (let i = 1; i <= 3; i++) await refusal(attempt('pwd1', 'wrong', from(`2001:db8:1:2::${i}`)))
    expect(await outcome(auth, attempt('pwd1', PASSWORD, from('2001:db8:1:2:ffff::9')))).toBe('E_AUTH_RATE_LIMITED')
    expect(await outcome(auth, attempt('pwd1', PASSWORD, from('2001:db8:1:3::1')))).toBe('password')
  })

  it('serves the password checks of an address with many failures last, refusing none of them', async () => {
    build({ maxConcurrentHashes: 1 })
    // 192.0.2.10 fails 5 times at 5 devices (the per-address threshold), none of them locked.
    for (let i = 0; i < 5; i++) await refusal(attempt(`ghost-${i}`, 'guess'))
    const order: string[] = []
    const track = (name: string, input: ConnectInput): Promise<void> => outcome(auth, input).then((o) => void order.push(`${name}:${o}`))
    const first = track('holder', attempt('pwd2', PASSWORD, from('192.0.2.30')))
    const noisy = track('noisy', attempt('pwd1', PASSWORD))
    const quiet = track('quiet', attempt('pwd2', PASSWORD, from('192.0.2.31')))
    await Promise.all([first, noisy, quiet])
    expect(order).toEqual(['holder:password', 'quiet:password', 'noisy:password'])
    expect(refused).toEqual([])
  })

  it('refuses password checks past the queue bounds with E_AUTH_BUSY, without charging anybody', async () => {
    build({ maxConcurrentHashes: 1, maxQueuedHashesPerAddress: 2 })
    const flood = await Promise.all(Array.from({ length: 10 }, (_, i) => outcome(auth, attempt(i % 2 === 0 ? 'pwd1' : `ghost-${i}`, `guess ${i}`))))
    // One ran at once, two waited, seven were refused unchecked.
    expect(flood.filter((c) => c === 'E_AUTH_BUSY')).toHaveLength(7)
    expect(refused).toEqual(Array(7).fill('address-queue-full'))
    expect(verifyPassword).toHaveBeenCalledTimes(3)
    // Refusals for load are not failures: pwd1 spent only its two checked guesses of three.
    expect(await outcome(auth, attempt('pwd1', PASSWORD))).toBe('password')
  })

  it('is built from config by createAuthenticator, reporting to the gateway metrics', async () => {
    const config = configSchema.parse({ hostname: HOST })
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    const built = createAuthenticator(config, registry, { now, metrics })
    for (let i = 0; i < config.auth.maxFailuresPerDevice; i++) expect(await outcome(built, attempt('pwd1', `nope ${i}`))).toBe('E_AUTH_PASSWORD')
    expect(await outcome(built, attempt('pwd1', PASSWORD))).toBe('E_AUTH_RATE_LIMITED')
    expect(await outcome(built, attempt('pwd1', PASSWORD, from('192.0.2.99')))).toBe('password')
    for (let i = 0; i < config.auth.maxFailuresPerDevice; i++) await built.authenticate(attempt('dev1', 'nope')).catch(() => undefined)
    expect(await outcome(built, attempt('dev1', sasFor(dev, time)))).toBe('sas-primary')
    const text = await metrics.registry.metrics()
    expect(text).toContain(`streamgate_auth_password_checks_total ${2 * config.auth.maxFailuresPerDevice + 1}`)
    expect(text).toContain('streamgate_auth_password_refusals_total{reason="rate-limited"} 1')
    expect(text).toContain('streamgate_auth_password_checks_running 0')
    expect(text).toContain('streamgate_auth_password_checks_waiting 0')
    expect(text).toMatch(new RegExp(`streamgate_auth_password_wait_seconds_count ${2 * config.auth.maxFailuresPerDevice + 1}`))
  })
})
