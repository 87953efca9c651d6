import { describe, expect, it } from 'vitest'
import { ExpiryWheel } from '../../../src/broker/token-expiry.js'

describe('ExpiryWheel', () => {
  const at = (s: number): number => s * 1000

  it('expires items in the tick of their second, not before', () => {
    let now = at(1000)
    const expired: string[] = []
    const wheel = new ExpiryWheel<{ id: string }>((item) => expired.push(item.id), () => now)
    const a = { id: 'a' }
    const b = { id: 'b' }
    wheel.schedule(a, at(1002) + 500)
    wheel.schedule(b, at(1005))
    now = at(1002)
    wheel.tick()
    expect(expired).toEqual([])
    now = at(1003)
    wheel.tick()
    expect(expired).toEqual(['a'])
    now = at(1010)
    wheel.tick()
    expect(expired).toEqual(['a', 'b'])
    expect(wheel.size).toBe(0)
    wheel.stop()
  })

  it('cancels, reschedules, and expires at the next tick what is already due', () => {
    let now = at(50)
    const expired: string[] = []
    const wheel = new ExpiryWheel<{ id: string }>((item) => expired.push(item.id), () => now)
    const a = { id: 'a' }
    const b = { id: 'b' }
    const c = { id: 'c' }
    wheel.schedule(a, at(52))
    wheel.schedule(b, at(52))
    wheel.cancel(a)
    wheel.schedule(b, at(60))
    now = at(55)
    wheel.tick()
    // c's expiry lies in a second the wheel has passed: it goes at the next tick.
    wheel.schedule(c, at(40))
    now = at(56)
    wheel.tick()
    expect(expired).toEqual(['c'])
    now = at(61)
    wheel.tick()
    expect(expired).toEqual(['c', 'b'])
    wheel.stop()
  })

  it('takes expiries years away and a clock jump of days without visiting every second', () => {
    let now = at(1_000_000)
    const expired: string[] = []
    const wheel = new ExpiryWheel<{ id: string }>((item) => expired.push(item.id), () => now)
    wheel.schedule({ id: 'far' }, at(1_000_000 + 10 * 365 * 86_400))
    wheel.schedule({ id: 'soon' }, at(1_000_000 + 3 * 86_400))
    now = at(1_000_000 + 5 * 86_400)
    const t0 = performance.now()
    wheel.tick()
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(expired).toEqual(['soon'])
    expect(wheel.size).toBe(1)
    wheel.stop()
  })
})
