import { describe, expect, it } from 'vitest'
import { FailureLimiter } from '../../../src/auth/rate-limit.js'

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start
  return { now: () => t, advance: (ms) => (t += ms) }
}

describe('FailureLimiter', () => {
  it('allows a key until maxFailures failures fall in the window', () => {
    const c = clock()
    const limiter = new FailureLimiter({ maxFailures: 3, windowMs: 60_000, now: c.now })
    expect(limiter.check('a')).toBe(true)
    limiter.recordFailure('a')
    limiter.recordFailure('a')
    expect(limiter.check('a')).toBe(true)
    limiter.recordFailure('a')
    expect(limiter.check('a')).toBe(false)
    expect(limiter.check('b')).toBe(true)
  })

  it('allows the key again once the window that opened at its first failure has passed', () => {
    const c = clock()
    const limiter = new FailureLimiter({ maxFailures: 2, windowMs: 60_000, now: c.now })
    limiter.recordFailure('a')
    c.advance(30_000)
    limiter.recordFailure('a')
    expect(limiter.check('a')).toBe(false)
    c.advance(29_999)
    expect(limiter.check('a')).toBe(false)
    c.advance(1)
    expect(limiter.check('a')).toBe(true)
    // A fresh window starts with the next failure.
    limiter.recordFailure('a')
    expect(limiter.check('a')).toBe(true)
    expect(limiter.size).toBe(1)
  })

  it('takes back one failure on forgive, dropping the entry at zero', () => {
    const limiter = new FailureLimiter({ maxFailures: 2, windowMs: 1000 })
    limiter.recordFailure('a')
    limiter.recordFailure('a')
    expect(limiter.check('a')).toBe(false)
    limiter.forgive('a')
    expect(limiter.check('a')).toBe(true)
    limiter.forgive('a')
    expect(limiter.size).toBe(0)
    limiter.forgive('a')
    limiter.forgive('unknown')
    expect(limiter.size).toBe(0)
  })

  it('forgets a key on reset', () => {
    const limiter = new FailureLimiter({ maxFailures: 1, windowMs: 1000 })
    limiter.recordFailure('a')
    expect(limiter.check('a')).toBe(false)
    limiter.reset('a')
    expect(limiter.check('a')).toBe(true)
    expect(limiter.size).toBe(0)
  })

  it('tracks at most maxKeys keys, forgetting the least recently failed first', () => {
    const c = clock()
    const limiter = new FailureLimiter({ maxFailures: 1, windowMs: 60_000, maxKeys: 3, now: c.now })
    for (const key of ['a', 'b', 'c']) limiter.recordFailure(key)
    limiter.recordFailure('a') // a is now the most recent
    limiter.recordFailure('d') // evicts b
    expect(limiter.size).toBe(3)
    expect(limiter.check('a')).toBe(false)
    expect(limiter.check('b')).toBe(true)
    expect(limiter.check('c')).toBe(false)
    expect(limiter.check('d')).toBe(false)
    for (let i = 0; i < 10_000; i++) limiter.recordFailure(`flood-${i}`)
    expect(limiter.size).toBe(3)
  })

  it('drops expired entries when they are next touched', () => {
    const c = clock()
    const limiter = new FailureLimiter({ maxFailures: 1, windowMs: 1000, now: c.now })
    limiter.recordFailure('a')
    c.advance(1000)
    expect(limiter.check('a')).toBe(true)
    expect(limiter.size).toBe(0)
  })

  it('stores very long keys by hash, still telling them apart', () => {
    const limiter = new FailureLimiter({ maxFailures: 1, windowMs: 1000 })
    const long = 'x'.repeat(60_000)
    limiter.recordFailure(`${long}1`)
    expect(limiter.check(`${long}1`)).toBe(false)
    expect(limiter.check(`${long}2`)).toBe(true)
  })

  it('refuses nonsensical options', () => {
    expect(() => new FailureLimiter({ maxFailures: 0, windowMs: 1000 })).toThrow(RangeError)
    expect(() => new FailureLimiter({ maxFailures: 1, windowMs: 0 })).toThrow(RangeError)
  })
})
