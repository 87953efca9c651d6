import { describe, expect, it } from 'vitest'
import { accumulate, emptyAccumulator, firstWindowEnd, numberOf, result, timeOf, windowStarts } from '../../../src/analytics/windows.js'
import type { AggregateFunction } from '../../../src/analytics/definitions.js'

describe('window assignment', () => {
  it('puts an instant in exactly one tumbling window, start inclusive, end exclusive', () => {
    const spec = { sizeMs: 1000, hopMs: 1000 }
    expect(windowStarts(0, spec)).toEqual([0])
    expect(windowStarts(999, spec)).toEqual([0])
    expect(windowStarts(1000, spec)).toEqual([1000])
    expect(windowStarts(123_456, spec)).toEqual([123_000])
    expect(firstWindowEnd(123_456, spec)).toBe(124_000)
  })

  it('puts an instant in size/hop hopping windows, oldest first', () => {
    const spec = { sizeMs: 10_000, hopMs: 5000 }
    expect(windowStarts(12_000, spec)).toEqual([5000, 10_000])
    expect(windowStarts(10_000, spec)).toEqual([5000, 10_000])
    expect(windowStarts(9999, spec)).toEqual([0, 5000])
    expect(firstWindowEnd(12_000, spec)).toBe(15_000)
    const quarter = { sizeMs: 4000, hopMs: 1000 }
    expect(windowStarts(4500, quarter)).toEqual([1000, 2000, 3000, 4000])
    for (const start of windowStarts(4500, quarter)) expect(4500 >= start && 4500 < start + 4000).toBe(true)
  })
})

describe('aggregate functions', () => {
  const fold = (fn: AggregateFunction, values: Array<[number, number]>): number | null => {
    const acc = emptyAccumulator()
    for (const [v, t] of values) accumulate(fn, acc, v, t)
    return result(fn, acc)
  }
  const input: Array<[number, number]> = [[4, 30], [-2, 10], [9, 20], [1, 40]]

  it('computes count, sum, avg, min, max over the numbers', () => {
    expect(fold('count', input)).toBe(4)
    expect(fold('sum', input)).toBe(12)
    expect(fold('avg', input)).toBe(3)
    expect(fold('min', input)).toBe(-2)
    expect(fold('max', input)).toBe(9)
  })

  it('takes first and last by event time, not arrival; ties keep the earlier arrival for first and the later for last', () => {
    expect(fold('first', input)).toBe(-2)
    expect(fold('last', input)).toBe(1)
    expect(fold('first', [[1, 5], [2, 5]])).toBe(1)
    expect(fold('last', [[1, 5], [2, 5]])).toBe(2)
  })

  it('gives count 0 and null for every other function when no number was seen', () => {
    expect(fold('count', [])).toBe(0)
    for (const fn of ['sum', 'avg', 'min', 'max', 'first', 'last'] as const) expect(fold(fn, [])).toBeNull()
  })

  it('takes finite JSON numbers only', () => {
    expect(numberOf(3.5)).toBe(3.5)
    expect(numberOf(0)).toBe(0)
    for (const v of ['3', null, undefined, true, NaN, Infinity, [1], { v: 1 }]) expect(numberOf(v)).toBeUndefined()
  })

  it('reads event times as epoch milliseconds or ISO 8601 strings', () => {
    expect(timeOf(1_700_000_000_123)).toBe(1_700_000_000_123)
    expect(timeOf('2026-12-02T10:00:00.500Z')).toBe(Date.parse('2026-12-02T10:00:00.500Z'))
    for (const v of ['yesterday', '2026-12-02', -5, NaN, null, {}, 'x'.repeat(100)]) expect(timeOf(v)).toBeUndefined()
  })
})
