import { describe, expect, it } from 'vitest'
import { SeqTracker } from '../../device-sim/seq-tracker.js'

describe('per-device sequence tracking', () => {
  it('counts in-order seqs, gaps, late arrivals and duplicates', () => {
    const t = new SeqTracker()
    expect([1, 2, 3].map((s) => t.see(s))).toEqual(['new', 'new', 'new'])
    expect(t.see(6)).toBe('new') // 4 and 5 missing
    expect(t.foundUpTo(6)).toBe(4)
    expect(t.see(5)).toBe('new') // late
    expect(t.see(5)).toBe('duplicate')
    expect(t.see(2)).toBe('duplicate')
    expect(t.foundUpTo(6)).toBe(5)
    expect(t.foundUpTo(4)).toBe(3)
    expect(t.foundUpTo(10)).toBe(5) // 7..10 produced, never seen
  })

  it('a device never seen has found nothing', () => {
    expect(new SeqTracker().foundUpTo(5)).toBe(0)
  })
})
