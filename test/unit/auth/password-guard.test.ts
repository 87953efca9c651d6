import { describe, expect, it } from 'vitest'
import { hashPassword } from '../../../src/auth/password.js'
import { PasswordGuard, type PasswordGuardOptions } from '../../../src/auth/password-guard.js'
import { GatewayError } from '../../../src/errors/catalogue.js'

/** The guard alone, without the CONNECT flow: what it counts, what it remembers, what it refuses. */
const guardWith = (options: Partial<PasswordGuardOptions> = {}): PasswordGuard =>
  new PasswordGuard({
    maxFailuresPerPair: 2,
    maxFailuresPerAddress: 3,
    windowMs: 60_000,
    maxConcurrentHashes: 1,
    maxQueuedHashes: 4,
    maxQueuedHashesPerAddress: 2,
    ...options,
  })

const code = (f: () => unknown): string => {
  try {
    f()
    return 'admitted'
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return (err as GatewayError).code
  }
}

describe('PasswordGuard', () => {
  it('charges admitted attempts to their pair until settled, so parallel ones cannot overrun the budget', () => {
    const guard = guardWith({ maxQueuedHashesPerAddress: 8, maxQueuedHashes: 8 })
    const first = guard.admit('dev', '192.0.2.1')
    guard.admit('dev', '192.0.2.1')
    expect(code(() => guard.admit('dev', '192.0.2.1'))).toBe('E_AUTH_RATE_LIMITED')
    expect(code(() => guard.admit('dev', '192.0.2.2'))).toBe('admitted')
    expect(code(() => guard.admit('other', '192.0.2.1'))).toBe('admitted')
    first.settle('accepted')
    expect(code(() => guard.admit('dev', '192.0.2.1'))).toBe('admitted')
  })

  it('records a failure against the pair and the address only when the attempt failed', () => {
    const guard = guardWith()
    guard.admit('dev', '192.0.2.1').settle('not-counted')
    guard.admit('dev', '192.0.2.1').settle('accepted')
    expect(guard.pairs.size + guard.addresses.size).toBe(0)
    const failed = guard.admit('dev', '192.0.2.1')
    failed.settle('failed')
    failed.settle('failed')
    expect(guard.pairs.failures('192.0.2.1 dev')).toBe(1)
    expect(guard.addresses.failures('192.0.2.1')).toBe(1)
  })

  it('records nothing for refusals, so cheap attempts cannot push a guesser out of the limiter', () => {
    const guard = guardWith({ maxTrackedKeys: 3 })
    guard.admit('dev', '192.0.2.1').settle('failed')
    guard.admit('dev', '192.0.2.1').settle('failed')
    for (let i = 0; i < 1000; i++) code(() => guard.admit('dev', '192.0.2.1'))
    // A full queue: every further attempt from these addresses is refused as busy, unrecorded.
    const held = [guard.admit('a', '198.51.100.1'), guard.admit('b', '198.51.100.1'), guard.admit('c', '198.51.100.1')]
    for (let i = 0; i < 1000; i++) expect(code(() => guard.admit(`flood-${i}`, '198.51.100.1'))).toBe('E_AUTH_BUSY')
    expect(guard.pairs.size).toBe(1)
    expect(code(() => guard.admit('dev', '192.0.2.1'))).toBe('E_AUTH_RATE_LIMITED')
    for (const h of held) h.settle('not-counted')
    expect(guard.gate.stats).toEqual({ running: 0, waiting: 0 })
  })

  it('keeps at most maxTrackedKeys pairs and addresses, however many fail', () => {
    const guard = guardWith({ maxTrackedKeys: 50 })
    for (let i = 0; i < 500; i++) guard.admit(`dev-${i}`, `10.0.${i >> 8}.${i & 255}`).settle('failed')
    expect(guard.pairs.size).toBe(50)
    expect(guard.addresses.size).toBe(50)
  })

  it('checks a password through the gate and frees its slot after the check', async () => {
    const guard = guardWith()
    const record = await hashPassword('right')
    const attempt = guard.admit('dev', '192.0.2.1')
    const waiting = guard.admit('dev2', '192.0.2.1')
    expect(guard.gate.stats).toEqual({ running: 1, waiting: 1 })
    expect(await attempt.check('right', record)).toBe(true)
    expect(guard.gate.stats).toEqual({ running: 1, waiting: 0 })
    expect(await waiting.check('wrong', record)).toBe(false)
    expect(guard.gate.stats).toEqual({ running: 0, waiting: 0 })
  })
})
