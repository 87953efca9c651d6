import { describe, expect, it } from 'vitest'
import { InFlightGate } from '../../src/ingest/in-flight-gate.js'
import { GatewayMetrics } from '../../src/observability/metrics.js'

describe('InFlightGate', () => {
  it('admits up to the record bound, then makes publishes wait in FIFO order', async () => {
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    const gate = new InFlightGate(2, 1_000_000, metrics)
    expect(gate.tryAcquire(10)).toBe(true)
    expect(gate.tryAcquire(10)).toBe(true)
    expect(gate.tryAcquire(10)).toBe(false)
    const order: string[] = []
    const a = gate.acquire(10).then(() => order.push('a'))
    const b = gate.acquire(10).then(() => order.push('b'))
    expect(gate.waiting).toBe(2)
    gate.release(10)
    await a
    expect(order).toEqual(['a'])
    expect(gate.inFlightRecords).toBe(2)
    gate.release(10)
    await b
    expect(order).toEqual(['a', 'b'])
    expect((await metrics.backpressureWaits.get()).values[0]?.value).toBe(2)
  })

  it('bounds bytes, but admits a single oversize record when nothing else is in flight', async () => {
    const gate = new InFlightGate(100, 100, new GatewayMetrics({ defaultMetrics: false }))
    expect(gate.tryAcquire(500)).toBe(true)
    expect(gate.tryAcquire(1)).toBe(false)
    gate.release(500)
    expect(gate.tryAcquire(60)).toBe(true)
    expect(gate.tryAcquire(60)).toBe(false)
  })

  it('reports the age of the oldest record in flight through the metric', async () => {
    let now = 1000
    const metrics = new GatewayMetrics({ defaultMetrics: false })
    const gate = new InFlightGate(10, 1000, metrics, () => now)
    const first = gate.track()
    now = 1500
    const second = gate.track()
    now = 4000
    expect(gate.oldestAgeMs()).toBe(3000)
    expect((await metrics.oldestInFlightSeconds.get()).values[0]?.value).toBe(3)
    gate.done(first)
    expect(gate.oldestAgeMs()).toBe(2500)
    gate.done(second)
    expect(gate.oldestAgeMs()).toBe(0)
  })

  it('keeps the oldest age right when records settle out of order, share a millisecond, or one stays in flight for long', () => {
    let now = 0
    const gate = new InFlightGate(1_000_000, 1_000_000_000, new GatewayMetrics({ defaultMetrics: false }), () => now)
    // Three records in one millisecond, one in the next; settled newest first.
    const a = [gate.track(), gate.track(), gate.track()]
    now = 1
    const b = gate.track()
    now = 10
    gate.done(b)
    gate.done(a[0]!)
    gate.done(a[1]!)
    expect(gate.oldestAgeMs()).toBe(10)
    gate.done(a[2]!)
    expect(gate.oldestAgeMs()).toBe(0)
    // A record held while 5,000 others come and go, one per millisecond (the live entries move to
    // the front; each settles without a search past the held one).
    now = 100
    const stuck = gate.track()
    for (let i = 1; i <= 5000; i++) {
      now = 100 + i
      const r = gate.track()
      if (i % 7 === 0) expect(gate.oldestAgeMs()).toBe(i)
      gate.done(r)
    }
    // Settling a ticket that is not in flight (twice, or never given) changes nothing.
    gate.done(123_456)
    expect(gate.oldestAgeMs()).toBe(5000)
    now = 6000
    const later = gate.track()
    gate.done(stuck)
    expect(gate.oldestAgeMs()).toBe(0)
    gate.done(later)
    gate.done(later)
    expect(gate.oldestAgeMs()).toBe(0)
  })
})
