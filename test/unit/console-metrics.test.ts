import { describe, expect, it } from 'vitest'
// The console's own module, as the browser runs it.
import { byLabel, labelsOf, parseMetrics, quantile, total } from '../../ui/metrics.js'

const scrape = (buckets: Record<string, number>, extra = ''): Map<string, number> =>
  parseMetrics(
    [
      '# HELP streamgate_ingest_durable_seconds x',
      '# TYPE streamgate_ingest_durable_seconds histogram',
      ...Object.entries(buckets).map(([le, n]) => `streamgate_ingest_durable_seconds_bucket{le="${le}"} ${n}`),
      extra,
    ].join('\n'),
  )

describe('console metrics (ui/metrics.js)', () => {
  it('reads samples, labels, totals and totals by label', () => {
    const m = parseMetrics('a_total{code="E_X"} 3\na_total{code="E_Y",x="1"} 5\na_total{code="E_X",x="2"} 1\nb 7\n# comment\n')
    expect(labelsOf('a_total{code="E_Y",x="1"}')).toEqual({ code: 'E_Y', x: '1' })
    expect(total(m, 'a_total')).toBe(9)
    expect(total(m, 'a_total', (l) => l.code === 'E_X')).toBe(4)
    expect(total(m, 'b')).toBe(7)
    expect(byLabel(m, 'a_total', 'code')).toEqual([
      ['E_Y', 5],
      ['E_X', 4],
    ])
  })

  it('takes percentiles of what a histogram observed between two scrapes, interpolating inside a bucket', () => {
    const before = scrape({ '0.001': 10, '0.005': 10, '0.01': 10, '+Inf': 10 })
    // 100 new observations: 50 under 1 ms, 40 in 1-5 ms, 9 in 5-10 ms, 1 above.
    const after = scrape({ '0.001': 60, '0.005': 100, '0.01': 109, '+Inf': 110 })
    expect(quantile(before, after, 'streamgate_ingest_durable_seconds', 0.5)).toBeCloseTo(0.001, 6)
    expect(quantile(before, after, 'streamgate_ingest_durable_seconds', 0.7)).toBeCloseTo(0.001 + 0.004 * (20 / 40), 6)
    expect(quantile(before, after, 'streamgate_ingest_durable_seconds', 0.99)).toBeCloseTo(0.01, 6)
    // Above the last finite bucket: its bound is the best that can be said.
    expect(quantile(before, after, 'streamgate_ingest_durable_seconds', 1)).toBeCloseTo(0.01, 6)
    // Nothing observed in between: no figure rather than a made-up one.
    expect(quantile(after, after, 'streamgate_ingest_durable_seconds', 0.5)).toBeNull()
  })
})
